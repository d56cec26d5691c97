"""What a data root holds, read in as few requests as possible, and summaries of it.

Two halves, as everywhere in gens_fs that reasons over many generations:

* :func:`read_snapshot` is the I/O: the data root's :class:`~gens_fs.listing.Listing` (one
  recursive listing per stage it needs), one batch of GETs for the ``metadata.json`` of the
  generations in scope, and the cohort memberships it was asked for (one batch of GETs).
  Nothing else: no per-file existence probes, no text files (sizes come from the listing).
* Everything else here (and in ``gens_fs.check``) is a pure function of the resulting
  :class:`StoreSnapshot`, testable with hand-built data.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel

from gens_fs.backends import Ignored
from gens_fs.cohorts import MembershipRow
from gens_fs.data_root import DataRoot, open_data_root
from gens_fs.errors import InvalidMembership, InvalidMetadata
from gens_fs.layout import (
    COHORTS_DIR,
    PARENT_STAGE,
    STAGES,
    GenKey,
    Stray,
    generation_folder,
    gens_child_stray,
    join,
    pipeline_order,
    stage_folder,
    stage_of,
    validate_stage,
)
from gens_fs.listing import Listing, list_data_root
from gens_fs.models import GenerationMetadata, MetadataResult
from gens_fs.selection import Selection, selection_of

log = logging.getLogger(__name__)

MembershipResult = list[MembershipRow] | InvalidMembership
"""A ``membership.csv`` as read: its rows, or the error it failed with."""


def select_stages(stages: Iterable[str] | None) -> list[str]:
    """Validated stages in pipeline order (all of them for ``None``)."""
    chosen = {validate_stage(s) for s in stages} if stages is not None else set(STAGES)
    return [s for s in STAGES if s in chosen]


@dataclass(frozen=True)
class StoreSnapshot:
    """What a data root holds, as far as reasoning over it needs. Pure data.

    ``listing`` has every stage that was listed (the scope's stages, and for a check their
    parent stages too). ``scope`` is the generations being looked at, all present on disk:
    every one of ``stages``, or with ``cohort`` the cohort's members of those stages.
    ``metadata`` holds each committed scope member's ``metadata.json``. ``memberships``
    holds the cohorts that were read: only ``cohort`` when scoped to one, every cohort when
    asked for all, else none. ``strays`` (when asked for) and ``ignored`` (symbolic links,
    special files), relative to the data root, are those of the stages and cohorts in scope.
    ``selection``: the ``--include``/``--exclude``/``--where`` the scope was narrowed by.
    """

    data_root: str
    stages: tuple[str, ...]
    listing: Listing
    scope: tuple[GenKey, ...]
    metadata: Mapping[GenKey, MetadataResult] = field(default_factory=dict)
    memberships: Mapping[str, MembershipResult] = field(default_factory=dict)
    cohort: str | None = None
    strays: tuple[Stray, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    selection: Selection | None = None

    def selects_absent(self, key: GenKey) -> bool:
        """Whether a generation with no folder (a cohort member) is in the selection: its
        gen_id must be picked, and it has no metadata for a ``--where`` to hold."""
        chosen = self.selection
        return chosen is None or (chosen.picks_id(key[1]) and not chosen.needs_metadata)

    def files_of(self, stage: str, gen_id: str) -> Mapping[str, int] | None:
        """The generation's files with sizes, or ``None`` when it has no directory."""
        files = self.listing.generations.get((stage, gen_id))
        return None if files is None else {name: info.size for name, info in files.items()}

    def is_committed(self, stage: str, gen_id: str) -> bool:
        """True when the listing shows the generation's ``metadata.json``."""
        return self.listing.is_committed((stage, gen_id))


def generations_in_scope(
    listing: Listing, stages: Iterable[str], members: Iterable[MembershipRow] | None = None
) -> tuple[GenKey, ...]:
    """The generations ``listing`` has, of ``stages``, optionally only ``members``; in
    pipeline order."""
    chosen = set(stages)
    listed = listing.generations
    keys = listed if members is None else {(r.stage, r.gen_id) for r in members}
    return tuple(sorted((k for k in keys if k[0] in chosen and k in listed), key=pipeline_order))


def missing_members(snapshot: StoreSnapshot) -> list[GenKey]:
    """The snapshot's cohort members (of its stages) that have no folder at all, in
    pipeline order; none when the snapshot is not scoped to a cohort. Pure."""
    rows = snapshot.memberships.get(snapshot.cohort or "")
    if snapshot.cohort is None or not isinstance(rows, list):
        return []
    listed = snapshot.listing.generations
    keys = {(r.stage, r.gen_id) for r in rows if r.stage in snapshot.stages}
    absent = (k for k in keys if k not in listed and snapshot.selects_absent(k))
    return sorted(absent, key=pipeline_order)


def read_snapshot(
    root: DataRoot,
    *,
    stages: Iterable[str] | None = None,
    cohort: str | None = None,
    all_memberships: bool = False,
    parent_stages: bool = False,
    follow_symlinks: bool = False,
    strays: bool = False,
    selection: Selection | None = None,
) -> StoreSnapshot:
    """Read what reasoning over ``root`` needs, batched.

    Requests: with ``cohort``, one GET of its ``membership.csv`` (``CohortNotFound`` or
    ``InvalidMembership`` raised: the user asked for it). Then one recursive listing per
    stage needed (the scope's stages; with ``parent_stages`` their parents too) and, with
    ``all_memberships`` (and no ``cohort``), of ``cohorts/``, side by side; one GET per
    cohort and one per committed ``metadata.json`` in scope, batched. ``strays`` adds one
    listing of ``gens/`` itself (first level) when every stage is in scope (and nothing
    narrows it). ``selection`` narrows the scope: its globs before the metadata is read
    (fewer GETs), its ``where`` on the metadata read (no extra request).
    ``follow_symlinks``: see :meth:`gens_fs.backends.local.LocalBackend.scan`.
    """
    chosen = select_stages(stages)
    members = None if cohort is None else root.read_membership(cohort)
    used = chosen if members is None else [s for s in chosen if s in {r.stage for r in members}]
    listed = set(used) | {p for s in used if parent_stages and (p := PARENT_STAGE[s])}
    all_cohorts = all_memberships and cohort is None
    folders = [stage_folder(s) for s in STAGES if s in listed]
    listing = list_data_root(
        root.backend, folders + [COHORTS_DIR] * all_cohorts, follow_symlinks=follow_symlinks
    )
    memberships: dict[str, MembershipResult] = {}
    if members is not None and cohort is not None:
        memberships[cohort] = members
    elif all_cohorts:
        memberships = dict(root.read_memberships(listing.cohort_ids))
    scope, metadata = _selected(
        root, listing, generations_in_scope(listing, chosen, members), selection
    )
    wanted = {(r.stage, r.gen_id) for r in members} if members is not None else None
    keep = _concerns(chosen, set(scope) if selection is not None else wanted)
    layout: list[Stray] = []
    if strays and cohort is None and selection is None:
        layout = [s for s in listing.strays() if keep(s.path)]
        layout += _gens_strays(root) if set(chosen) == set(STAGES) else []
    return StoreSnapshot(
        data_root=root.url,
        stages=tuple(chosen),
        listing=listing,
        scope=scope,
        metadata=metadata,
        memberships=memberships,
        cohort=cohort,
        strays=tuple(sorted(layout)),
        ignored=tuple(i for i in listing.ignored if keep(i.path)),
        selection=selection,
    )


def _selected(
    root: DataRoot, listing: Listing, scope: tuple[GenKey, ...], selection: Selection | None
) -> tuple[tuple[GenKey, ...], dict[GenKey, MetadataResult]]:
    """The generations of ``scope`` that ``selection`` picks, and their metadata: one batch
    of GETs, for the committed ones whose gen_id the globs pick."""
    if selection is not None:
        scope = tuple(k for k in scope if selection.picks_id(k[1]))
    metadata = root.store().metadata_many(k for k in scope if listing.is_committed(k))
    if selection is None or not selection.needs_metadata:
        return scope, metadata
    scope = tuple(k for k in scope if selection.holds(_stored_object(metadata.get(k))))
    return scope, {k: metadata[k] for k in scope if k in metadata}


def _stored_object(meta: MetadataResult | None) -> dict[str, Any] | None:
    """The JSON object of a ``metadata.json`` read, or ``None`` when it is absent or does
    not parse (what a ``--where`` condition is judged on)."""
    return meta.to_dict() if isinstance(meta, GenerationMetadata) else None


def _concerns(stages: Iterable[str], members: set[GenKey] | None) -> Callable[[str], bool]:
    """Whether an entry (data-root relpath) concerns the scope: outside ``gens/``, or in a
    chosen stage and, for a cohort, not inside a generation folder the cohort lacks."""
    chosen = set(stages)

    def concerns(relpath: str) -> bool:
        stage = stage_of(relpath)
        if stage is None:
            return True
        key = generation_folder(relpath)
        return stage in chosen and (members is None or key is None or key in members)

    return concerns


def _gens_strays(root: DataRoot) -> list[Stray]:
    """What stands directly in ``gens/`` besides the stage folders: one listing."""
    found = root.backend.children(root.gens_root)
    return [
        stray
        for names, is_dir in ((found.folders, True), (found.files, False))
        for name in names
        if (stray := gens_child_stray(name, is_dir=is_dir)) is not None
    ]


def warn_ignored(snapshot: StoreSnapshot) -> None:
    """Log each entry the listings left out: callers that get rows, not the snapshot,
    learn of them this way."""
    for entry in snapshot.ignored:
        log.warning("ignored %s (%s)", join(snapshot.data_root, entry.path), entry.reason)


# -- ls ------------------------------------------------------------------------------------


EntryState = Literal["ok", "incomplete", "invalid_metadata", "missing"]
"""A listed generation's state: committed with metadata that parses (``ok``), files but no
``metadata.json`` (``incomplete``), a ``metadata.json`` that does not parse
(``invalid_metadata``), or a cohort member with no folder at all (``missing``)."""


class GenerationEntry(BaseModel):
    """One generation as a listing shows it: what is on disk and what its metadata says.
    A ``missing`` one (a cohort member with no folder) is not committed and has no sizes."""

    stage: str
    gen_id: str
    state: EntryState
    committed: bool
    parent_gen_id: str | None = None
    template_id: str | None = None
    model_id: str | None = None
    task_id: str | None = None
    sizes: dict[str, int]
    metadata_error: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def entries(snapshot: StoreSnapshot) -> list[GenerationEntry]:
    """The snapshot's scope as :class:`GenerationEntry` rows and, scoped to a cohort, its
    members that have no folder (state ``missing``), in pipeline order. Pure."""
    out = []
    absent = set(missing_members(snapshot))
    for stage, gen_id in sorted([*snapshot.scope, *absent], key=pipeline_order):
        meta = snapshot.metadata.get((stage, gen_id))
        committed = snapshot.is_committed(stage, gen_id)
        state: EntryState = "ok" if committed else "incomplete"
        fields: dict[str, Any] = {}
        if (stage, gen_id) in absent:
            state = "missing"
        elif isinstance(meta, GenerationMetadata):
            fields = {
                "parent_gen_id": meta.parent_gen_id or None,
                "template_id": meta.template_id,
                "model_id": meta.model_id,
                "task_id": meta.task_id,
            }
        elif isinstance(meta, InvalidMetadata):
            state, fields = "invalid_metadata", {"metadata_error": str(meta)}
        out.append(
            GenerationEntry(
                stage=stage,
                gen_id=gen_id,
                state=state,
                committed=committed,
                sizes=dict(snapshot.files_of(stage, gen_id) or {}),
                **fields,
            )
        )
    return out


def list_generations(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    stages: Iterable[str] | None = None,
    cohort: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    follow_symlinks: bool = False,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    where: Mapping[str, str] | Iterable[str] | None = None,
    selection: Selection | None = None,
) -> list[GenerationEntry]:
    """Every generation of ``stages`` (all by default), or ``cohort``'s members of them
    (those with no folder too, as state ``missing``: the listing tells the whole cohort).

    ``include``/``exclude`` (gen_id globs) and ``where`` (``{key: value}`` or
    ``"KEY=VALUE"`` strings over metadata) narrow it; see :mod:`gens_fs.selection` (with
    separate lists an exclude wins over an include; ``selection`` gives rules in an order of
    your own). Requests: one listing per stage, one GET per committed ``metadata.json`` the
    globs pick (batched), plus one GET of the cohort's ``membership.csv`` with ``cohort``.
    Symbolic links (unless ``follow_symlinks`` and inside the root) and special files are
    left out, each logged as a warning. A root that holds nothing is an empty store: no
    error (the CLI refuses it).
    """
    chosen = selection_of(include, exclude, where, selection)
    root = open_data_root(data_root, storage_options=storage_options)
    snapshot = read_snapshot(
        root, stages=stages, cohort=cohort, follow_symlinks=follow_symlinks, selection=chosen
    )
    warn_ignored(snapshot)
    return entries(snapshot)


# -- stats ---------------------------------------------------------------------------------


NO_VALUE: Final = "(none)"
"""The ``by_model``/``by_template`` key of committed generations whose metadata names no
model (a copy-mode essay of the original pipeline) or no template."""


class StageStats(BaseModel):
    """Counts for one stage. ``generations`` counts directories; ``incomplete`` those without
    ``metadata.json``; ``by_model``/``by_template`` count the committed ones that parse,
    those naming none under ``"(none)"``, so each adds up to ``committed -
    invalid_metadata``."""

    generations: int = 0
    committed: int = 0
    incomplete: int = 0
    invalid_metadata: int = 0
    bytes: int = 0
    by_model: dict[str, int] = {}
    by_template: dict[str, int] = {}


class StoreStats(BaseModel):
    """Per-stage counts for a data root (the stages asked for, in pipeline order)."""

    data_root: str
    stages: dict[str, StageStats]


def summarize(
    data_root: str, rows: Iterable[GenerationEntry], stages: Iterable[str] | None = None
) -> StoreStats:
    """Aggregate listing rows per stage (``stages``: all by default). Rows of other stages
    and ``missing`` ones (no folder) are not counted. Pure."""
    chosen = select_stages(stages)
    per_stage: dict[str, StageStats] = {s: StageStats() for s in chosen}
    models: dict[str, Counter[str]] = {s: Counter() for s in chosen}
    templates: dict[str, Counter[str]] = {s: Counter() for s in chosen}
    for row in rows:
        stat = per_stage.get(row.stage)
        if stat is None or row.state == "missing":
            continue
        stat.generations += 1
        stat.bytes += row.total_bytes
        if not row.committed:
            stat.incomplete += 1
            continue
        stat.committed += 1
        if row.metadata_error is not None:
            stat.invalid_metadata += 1
            continue
        models[row.stage][row.model_id or NO_VALUE] += 1
        templates[row.stage][row.template_id or NO_VALUE] += 1
    for stage, stat in per_stage.items():
        stat.by_model = dict(sorted(models[stage].items()))
        stat.by_template = dict(sorted(templates[stage].items()))
    return StoreStats(data_root=data_root, stages=per_stage)


def stats(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    stages: Iterable[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> StoreStats:
    """Per stage (``stages``, all by default): generations, committed, incomplete, bytes,
    counts per model and template (``"(none)"`` for those naming none).

    Requests: one listing per stage and one GET per committed ``metadata.json`` (batched).
    """
    chosen = select_stages(stages)
    root = open_data_root(data_root, storage_options=storage_options)
    snapshot = read_snapshot(root, stages=chosen)
    warn_ignored(snapshot)
    return summarize(root.url, entries(snapshot), chosen)
