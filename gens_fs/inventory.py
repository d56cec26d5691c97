"""What a data root holds, read in as few requests as possible, and summaries of it.

Two halves, as everywhere in gens_fs that reasons over many generations:

* :func:`read_snapshot` is the I/O: one recursive listing per stage it needs, one batch of
  GETs for the ``metadata.json`` of the generations in scope, and the cohort memberships it
  was asked for (one listing plus one batch of GETs). Nothing else: no per-file existence
  probes, no text files (sizes come from the listing). Listings leave symbolic links and
  special files out (``StoreSnapshot.ignored``) and keep what does not fit the layout
  apart (``StoreSnapshot.strays``).
* :func:`require_data_root` is the one cheap request that tells a data root from a typo.
* Everything else here (and in ``gens_fs.check``) is a pure function of the resulting
  :class:`StoreSnapshot`, testable with hand-built data.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel

from gens_fs.backends import Children, Ignored, SyncBackend
from gens_fs.cohorts import MembershipRow
from gens_fs.data_root import DataRoot, open_data_root
from gens_fs.errors import InvalidMembership, InvalidMetadata, NotADataRoot
from gens_fs.layout import (
    COHORTS_DIR,
    DATA_ROOT_ABOVE,
    GENS_DIR,
    METADATA_FILE,
    PARENT_STAGE,
    STAGES,
    GensFile,
    RootKind,
    Stray,
    ancestor_path,
    base_name,
    classify_gens_file,
    cohort_strays,
    entry_generation,
    gens_child_stray,
    inner_folder_kind,
    is_hidden,
    is_valid_gen_id,
    join,
    membership_cohort,
    relpath_under,
    root_kind,
    stage_of,
    validate_stage,
)
from gens_fs.models import GenerationMetadata

log = logging.getLogger(__name__)

MetadataResult = GenerationMetadata | InvalidMetadata | None
"""A ``metadata.json`` as read: parsed, the error it failed with, or ``None`` if absent."""
MembershipResult = list[MembershipRow] | InvalidMembership
"""A ``membership.csv`` as read: its rows, or the error it failed with."""
GenKey = tuple[str, str]
"""``(stage, gen_id)``."""


_ROOT_ADVICE = "give the folder that holds gens/ and cohorts/"
# How many names a refusal quotes from what a root holds.
_NAMES_QUOTED = 3


def require_data_root(
    backend: SyncBackend, *, what: str = "data root", allow_empty: bool = False, if_empty: str = ""
) -> None:
    """Raise ``NotADataRoot`` unless ``backend.root`` looks like a data root: it holds
    ``gens/`` or ``cohorts/`` (on S3: something is stored under one of them). One listing of
    the root's first level (one ``ListObjectsV2``, which also fails on a missing bucket).

    A part of a data root (a gens root, a stage folder, ``cohorts/``, a generation folder;
    see :func:`refuse_misplaced_root`) is always refused, with the data root above it as
    the hint, and so is an absent folder and one that holds something else. A root that
    holds nothing at all (an empty folder, an S3 prefix with nothing under it: a mistyped
    one) passes only with ``allow_empty``; ``if_empty`` ends its refusal, to say how to
    proceed.
    """
    found = backend.children(backend.root, stop_at=(GENS_DIR, COHORTS_DIR))
    kind = _root_kind(backend, found)
    if kind == "data":
        return
    url = backend.url(backend.root)
    if kind != "other":
        raise NotADataRoot(f"{what} {url} {_misplaced(backend, kind, found)}")
    if found.exists is False:
        raise NotADataRoot(f"{what} {url} does not exist: {_ROOT_ADVICE}")
    held = sorted(f"{n}/" for n in found.folders if not n.startswith("."))
    held += sorted(n for n in found.files if not n.startswith("."))
    if held:
        raise NotADataRoot(
            f"{what} {url} holds neither gens/ nor cohorts/ (it holds {_quoted(held)}): "
            f"{_ROOT_ADVICE}"
        )
    if not allow_empty:
        state = "holds nothing" if found.exists is None else "holds neither gens/ nor cohorts/"
        raise NotADataRoot(f"{what} {url} {state}: {_ROOT_ADVICE}{if_empty}")


def refuse_misplaced_root(backend: SyncBackend, *, what: str = "data root") -> None:
    """Raise ``NotADataRoot`` when ``backend.root`` looks like a part of a data root rather
    than one: a gens root (it holds stage folders), a stage folder (named after a stage and
    holding gen_id folders, or holding folders with a generation's files: one of them is
    looked into to be sure), the ``cohorts/`` folder (one holding ``membership.csv`` is
    looked for), a generation folder (it holds ``metadata.json`` and a text). A data root,
    an empty or absent folder, or one holding something else passes: what a destination
    may be. One listing of the root's first level (two when a folder inside must tell)."""
    found = backend.children(backend.root, stop_at=(GENS_DIR, COHORTS_DIR))
    kind = _root_kind(backend, found, confirm=True)
    if kind not in ("data", "other"):
        raise NotADataRoot(f"{what} {backend.url(backend.root)} {_misplaced(backend, kind, found)}")


def _root_kind(backend: SyncBackend, found: Children, *, confirm: bool = False) -> RootKind:
    """:func:`gens_fs.layout.root_kind`, and for a root holding folders named like gen_ids
    one more listing, of the first of them, when the name does not tell (or, ``confirm``,
    to be sure of what the name tells: a folder named ``essay`` may be anything)."""
    kind = root_kind(found.folders, name=base_name(backend.root), files=found.files)
    named_like_ids = sorted(f for f in found.folders if is_valid_gen_id(f))
    if named_like_ids and (kind == "other" or (confirm and kind in ("stage", "cohorts"))):
        inner = backend.children(join(backend.root, named_like_ids[0]))
        kind = inner_folder_kind(inner.files)
    return kind


def _misplaced(backend: SyncBackend, kind: RootKind, found: Children) -> str:
    """What a part of a data root given as a root looks like, and the data root above it."""
    name = base_name(backend.root)
    folders = _quoted([f"{f}/" for f in sorted(found.folders) if is_valid_gen_id(f)])
    if kind == "gens":
        looks = f"a gens root (it holds {', '.join(f'{s}/' for s in STAGES if s in found.folders)})"
    elif kind == "stage":
        stage = f"the {name} stage folder" if name in STAGES else "a stage folder"
        looks = f"{stage} of a gens root (it holds generation folders: {folders})"
    elif kind == "cohorts":
        looks = f"the cohorts/ folder of a data root (it holds {folders})"
    else:
        files = _quoted(sorted(f for f in found.files if not f.startswith(".")))
        looks = f"a generation folder (it holds {files})"
    above = ancestor_path(backend.root, DATA_ROOT_ABOVE[kind])
    hint = f"did you mean {backend.url(above)}?" if above else "give the data root above it"
    return f"looks like {looks}; {hint}"


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMES_QUOTED])
    return shown if len(names) <= _NAMES_QUOTED else f"{shown}, ..."


def select_stages(stages: Iterable[str] | None) -> list[str]:
    """Validated stages in pipeline order (all of them for ``None``)."""
    chosen = {validate_stage(s) for s in stages} if stages is not None else set(STAGES)
    return [s for s in STAGES if s in chosen]


@dataclass(frozen=True)
class StoreSnapshot:
    """What a data root holds, as far as reasoning over it needs. Pure data.

    ``files`` has every stage that was listed (the scope's stages, and for a check their
    parent stages too): stage -> gen_id -> {file name: size}. ``scope`` is the generations
    being looked at, all present on disk: every one of ``stages``, or with ``cohort`` the
    cohort's members of those stages. ``metadata`` holds each committed scope member's
    ``metadata.json``. ``memberships`` holds the cohorts that were read: only ``cohort``
    when scoped to one, every cohort when asked for all, else none. ``strays`` (when asked
    for) and ``ignored`` (symbolic links, special files), relative to the data root, are
    those of the stages and cohorts in scope.
    """

    data_root: str
    stages: tuple[str, ...]
    files: Mapping[str, Mapping[str, Mapping[str, int]]]
    scope: tuple[GenKey, ...]
    metadata: Mapping[GenKey, MetadataResult] = field(default_factory=dict)
    memberships: Mapping[str, MembershipResult] = field(default_factory=dict)
    cohort: str | None = None
    strays: tuple[Stray, ...] = ()
    ignored: tuple[Ignored, ...] = ()

    def files_of(self, stage: str, gen_id: str) -> Mapping[str, int] | None:
        """The generation's files with sizes, or ``None`` when it has no directory."""
        return self.files.get(stage, {}).get(gen_id)

    def is_committed(self, stage: str, gen_id: str) -> bool:
        """True when the listing shows the generation's ``metadata.json``."""
        return METADATA_FILE in (self.files_of(stage, gen_id) or {})


def generations_in_scope(
    files: Mapping[str, Mapping[str, Mapping[str, int]]],
    stages: Sequence[str],
    members: Sequence[MembershipRow] | None = None,
) -> tuple[GenKey, ...]:
    """The ``(stage, gen_id)`` pairs present in ``files``, of ``stages``, optionally only
    ``members``; sorted by stage (pipeline order), then gen_id."""
    if members is None:
        keys: Iterable[GenKey] = ((s, g) for s in stages for g in files.get(s, {}))
    else:
        keys = ((r.stage, r.gen_id) for r in members if r.gen_id in files.get(r.stage, {}))
    return tuple(sorted({k for k in keys if k[0] in stages}, key=pipeline_order))


def pipeline_order(key: GenKey) -> tuple[int, str]:
    """Sort key of a ``(stage, gen_id)``: stage in pipeline order, then gen_id."""
    return STAGES.index(key[0]), key[1]


def missing_members(snapshot: StoreSnapshot) -> list[GenKey]:
    """The snapshot's cohort members (of its stages) that have no folder at all, in
    pipeline order; none when the snapshot is not scoped to a cohort. Pure."""
    rows = snapshot.memberships.get(snapshot.cohort or "")
    if snapshot.cohort is None or not isinstance(rows, list):
        return []
    return sorted(
        (
            (r.stage, r.gen_id)
            for r in rows
            if r.stage in snapshot.stages and snapshot.files_of(r.stage, r.gen_id) is None
        ),
        key=pipeline_order,
    )


def read_snapshot(
    root: DataRoot,
    *,
    stages: Iterable[str] | None = None,
    cohort: str | None = None,
    all_memberships: bool = False,
    parent_stages: bool = False,
    follow_symlinks: bool = False,
    strays: bool = False,
) -> StoreSnapshot:
    """Read what reasoning over ``root`` needs, batched.

    Requests: with ``cohort``, one GET of its ``membership.csv`` (``CohortNotFound`` or
    ``InvalidMembership`` raised: the user asked for it). Then one recursive listing per
    stage needed (the scope's stages; with ``parent_stages`` their parents too) and, with
    ``all_memberships`` (and no ``cohort``), of ``cohorts/``, side by side; one GET per
    cohort and one per committed ``metadata.json`` in scope, batched. ``strays`` adds one
    listing of ``gens/`` itself (first level) when every stage is in scope.
    ``follow_symlinks``: see :meth:`gens_fs.backends.local.LocalBackend.scan`.
    """
    chosen = select_stages(stages)
    members = None if cohort is None else root.read_membership(cohort)
    used = chosen if members is None else [s for s in chosen if s in {r.stage for r in members}]
    listed = set(used)
    if parent_stages:
        listed |= {p for s in used if (p := PARENT_STAGE[s]) is not None}
    all_cohorts = all_memberships and cohort is None
    found = _list_data_root(
        root, [s for s in STAGES if s in listed], cohorts=all_cohorts, follow=follow_symlinks
    )
    memberships: dict[str, MembershipResult] = {}
    if members is not None and cohort is not None:
        memberships[cohort] = members
    elif all_cohorts:
        memberships = dict(root.read_memberships(found.cohort_ids))
    scope = generations_in_scope(found.files, chosen, members)
    committed = [k for k in scope if METADATA_FILE in found.files[k[0]][k[1]]]
    keep = _Relevant(chosen, None if members is None else {(r.stage, r.gen_id) for r in members})
    layout: list[Stray] = []
    if strays and cohort is None:
        layout = [s for s in found.strays if keep(s.path)]
        layout += _gens_strays(root) if set(chosen) == set(STAGES) else []
    return StoreSnapshot(
        data_root=root.url,
        stages=tuple(chosen),
        files=found.files,
        scope=scope,
        metadata=root.store().metadata_many(committed),
        memberships=memberships,
        cohort=cohort,
        strays=tuple(sorted(layout)),
        ignored=tuple(i for i in found.ignored if keep(i.path)),
    )


@dataclass(frozen=True)
class _Relevant:
    """Whether an entry (data-root relpath) concerns the scope: outside ``gens/``, or in a
    chosen stage and, for a cohort, not inside a generation folder the cohort lacks."""

    stages: Collection[str]
    members: Collection[tuple[str, str]] | None

    def __call__(self, relpath: str) -> bool:
        stage = stage_of(relpath)
        if stage is None:
            return True
        key = entry_generation(relpath)
        in_cohort = self.members is None or key is None or key in self.members
        return stage in self.stages and in_cohort


@dataclass(frozen=True)
class _DataRootListing:
    files: dict[str, dict[str, dict[str, int]]]
    cohort_ids: list[str]
    strays: list[Stray]
    ignored: list[Ignored]


def _list_data_root(
    root: DataRoot, stages: list[str], *, cohorts: bool, follow: bool
) -> _DataRootListing:
    """One listing per stage (and of ``cohorts/``), side by side on S3: generation files by
    stage (``stage -> gen_id -> {name: size}``), cohort ids, strays, entries left out."""
    prefixes = [join(root.gens_root, s) for s in stages]
    scan = root.backend.scan(
        prefixes + ([join(root.root, COHORTS_DIR)] if cohorts else []), follow_symlinks=follow
    )
    files: dict[str, dict[str, dict[str, int]]] = {s: {} for s in stages}
    strays: dict[str, str] = {}  # a stray folder once, however many files it holds
    others: list[str] = []
    for path, info in scan.files.items():
        relpath = relpath_under(root.root, path)
        found = None if relpath is None else classify_gens_file(relpath)
        if isinstance(found, GensFile):
            files[found.stage].setdefault(found.gen_id, {})[found.name] = info.size
        elif isinstance(found, Stray):
            strays.setdefault(found.path, found.reason)
        elif relpath is not None:
            others.append(relpath)
    return _DataRootListing(
        files={stage: dict(sorted(gens.items())) for stage, gens in files.items()},
        cohort_ids=sorted({c for r in others if (c := membership_cohort(r)) is not None}),
        strays=[Stray(p, r) for p, r in strays.items()] + cohort_strays(others),
        ignored=[
            Ignored(relpath, entry.reason)
            for entry in scan.ignored
            if (relpath := relpath_under(root.root, entry.path)) is not None
            and not is_hidden(relpath)
        ],
    )


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
) -> list[GenerationEntry]:
    """Every generation of ``stages`` (all by default), or ``cohort``'s members of them
    (those with no folder too, as state ``missing``: the listing tells the whole cohort).

    Requests: one listing per stage, one GET per committed ``metadata.json`` (batched),
    plus one GET of the cohort's ``membership.csv`` with ``cohort``. Symbolic links (unless
    ``follow_symlinks`` and inside the root) and special files are left out, each logged as
    a warning. A root that holds nothing is an empty store: no error (the CLI refuses it).
    """
    root = open_data_root(data_root, storage_options=storage_options)
    snapshot = read_snapshot(root, stages=stages, cohort=cohort, follow_symlinks=follow_symlinks)
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
