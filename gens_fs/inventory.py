"""What a data root holds, read in as few requests as possible, and summaries of it.

Two halves, as everywhere in gens_fs that reasons over many generations:

* :func:`read_snapshot` is the I/O: one recursive listing per stage it needs, one batch of
  GETs for the ``metadata.json`` of the generations in scope, and the cohort memberships it
  was asked for (one listing plus one batch of GETs). Nothing else: no per-file existence
  probes, no text files (sizes come from the listing).
* Everything else here (and in ``gens_fs.check``) is a pure function of the resulting
  :class:`StoreSnapshot`, testable with hand-built data.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from gens_fs.cohorts import DataRoot, MembershipRow, open_data_root
from gens_fs.errors import InvalidMembership, InvalidMetadata
from gens_fs.layout import METADATA_FILE, PARENT_STAGE, STAGES, validate_stage
from gens_fs.models import GenerationMetadata

MetadataResult = GenerationMetadata | InvalidMetadata | None
"""A ``metadata.json`` as read: parsed, the error it failed with, or ``None`` if absent."""
MembershipResult = list[MembershipRow] | InvalidMembership
"""A ``membership.csv`` as read: its rows, or the error it failed with."""
GenKey = tuple[str, str]
"""``(stage, gen_id)``."""


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
    when scoped to one, every cohort when asked for all, else none.
    """

    data_root: str
    stages: tuple[str, ...]
    files: Mapping[str, Mapping[str, Mapping[str, int]]]
    scope: tuple[GenKey, ...]
    metadata: Mapping[GenKey, MetadataResult] = field(default_factory=dict)
    memberships: Mapping[str, MembershipResult] = field(default_factory=dict)
    cohort: str | None = None

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
    order = {s: i for i, s in enumerate(STAGES)}
    return tuple(sorted({k for k in keys if k[0] in stages}, key=lambda k: (order[k[0]], k[1])))


def read_snapshot(
    root: DataRoot,
    *,
    stages: Iterable[str] | None = None,
    cohort: str | None = None,
    all_memberships: bool = False,
    parent_stages: bool = False,
) -> StoreSnapshot:
    """Read what reasoning over ``root`` needs, batched.

    Requests: with ``cohort``, one GET of its ``membership.csv`` (``CohortNotFound`` or
    ``InvalidMembership`` raised: the user asked for it); else with ``all_memberships``
    one listing of ``cohorts/`` and one GET per cohort, all in flight at once. Then one
    recursive listing per stage needed (the scope's stages; with ``parent_stages`` their
    parents too) and one batch of GETs, one per committed ``metadata.json`` in scope.
    """
    chosen = select_stages(stages)
    memberships: dict[str, MembershipResult] = {}
    members: list[MembershipRow] | None = None
    if cohort is not None:
        members = root.read_membership(cohort)
        memberships[cohort] = members
        used = {r.stage for r in members}
        chosen_listed = [s for s in chosen if s in used]
    else:
        if all_memberships:
            memberships = dict(root.read_memberships())
        chosen_listed = chosen
    listed = set(chosen_listed)
    if parent_stages:
        listed |= {p for s in chosen_listed if (p := PARENT_STAGE[s]) is not None}
    store = root.store()
    files = store.files_by_stage(s for s in STAGES if s in listed)
    scope = generations_in_scope(files, chosen, members)
    committed = [k for k in scope if METADATA_FILE in files[k[0]][k[1]]]
    return StoreSnapshot(
        data_root=root.url,
        stages=tuple(chosen),
        files=files,
        scope=scope,
        metadata=store.metadata_many(committed),
        memberships=memberships,
        cohort=cohort,
    )


# -- ls ------------------------------------------------------------------------------------


class GenerationEntry(BaseModel):
    """One generation as a listing shows it: what is on disk and what its metadata says."""

    stage: str
    gen_id: str
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
    """The snapshot's scope as :class:`GenerationEntry` rows. Pure."""
    out = []
    for stage, gen_id in snapshot.scope:
        meta = snapshot.metadata.get((stage, gen_id))
        fields: dict[str, Any] = {}
        if isinstance(meta, GenerationMetadata):
            fields = {
                "parent_gen_id": meta.parent_gen_id or None,
                "template_id": meta.template_id,
                "model_id": meta.model_id,
                "task_id": meta.task_id,
            }
        elif isinstance(meta, InvalidMetadata):
            fields = {"metadata_error": str(meta)}
        out.append(
            GenerationEntry(
                stage=stage,
                gen_id=gen_id,
                committed=snapshot.is_committed(stage, gen_id),
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
) -> list[GenerationEntry]:
    """Every generation of ``stages`` (all by default), or ``cohort``'s members of them.

    Requests: one listing per stage, one GET per committed ``metadata.json`` (batched),
    plus one GET of the cohort's ``membership.csv`` with ``cohort``.
    """
    root = open_data_root(data_root, storage_options=storage_options)
    return entries(read_snapshot(root, stages=stages, cohort=cohort))


# -- stats ---------------------------------------------------------------------------------


class StageStats(BaseModel):
    """Counts for one stage. ``generations`` counts directories; ``incomplete`` those without
    ``metadata.json``; ``by_model``/``by_template`` count the committed ones that parse."""

    generations: int = 0
    committed: int = 0
    incomplete: int = 0
    invalid_metadata: int = 0
    bytes: int = 0
    by_model: dict[str, int] = {}
    by_template: dict[str, int] = {}


class StoreStats(BaseModel):
    """Per-stage counts for a data root."""

    data_root: str
    stages: dict[str, StageStats]


def summarize(data_root: str, rows: Iterable[GenerationEntry]) -> StoreStats:
    """Aggregate listing rows per stage. Pure."""
    stages: dict[str, StageStats] = {s: StageStats() for s in STAGES}
    models: dict[str, Counter[str]] = {s: Counter() for s in STAGES}
    templates: dict[str, Counter[str]] = {s: Counter() for s in STAGES}
    for row in rows:
        stat = stages[row.stage]
        stat.generations += 1
        stat.bytes += row.total_bytes
        if not row.committed:
            stat.incomplete += 1
            continue
        stat.committed += 1
        if row.metadata_error is not None:
            stat.invalid_metadata += 1
        if row.model_id is not None:
            models[row.stage][row.model_id] += 1
        if row.template_id is not None:
            templates[row.stage][row.template_id] += 1
    for stage, stat in stages.items():
        stat.by_model = dict(sorted(models[stage].items()))
        stat.by_template = dict(sorted(templates[stage].items()))
    return StoreStats(data_root=data_root, stages=stages)


def stats(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> StoreStats:
    """Per stage: generations, committed, incomplete, bytes, counts per model and template.

    Requests: one listing per stage and one GET per committed ``metadata.json`` (batched).
    """
    root = open_data_root(data_root, storage_options=storage_options)
    return summarize(root.url, entries(read_snapshot(root)))
