"""The sync planner: two listings and a scope in, an ordered ``SyncPlan`` out.

Pure: no I/O. Everything a sync does is decided here, so ``--dry-run`` prints exactly what a
real run would do and the ordering guarantee is testable without storage.

The plan runs in phases, each finished before the next starts:

1. ``files``: every file to copy except ``metadata.json`` (any order, concurrently);
2. ``commits``: ``metadata.json`` of drafts, then essays, then evaluations (one phase each);
3. ``cohort_files``: membership CSVs, once the generations they list are committed;
4. ``deletes`` (only with ``delete=True``, only after every copy succeeded): evaluations'
   ``metadata.json``, then essays', then drafts' (children uncommitted first), then the rest.

Deletes are refused from the plan alone, before anything runs (:func:`delete_refusal`):
more than ``max_delete`` files, or without it more than half of the destination's files in
scope.

A commit is planned only for a generation whose parent is committed at the destination
already or is committed earlier in the same plan (``FileCopy.after``); otherwise the
generation is *held* (not copied at all, and reported). The executor adds the runtime half of
the rule: no commit for a generation with a failed file, or whose parent's commit did not
happen. So at every instant, even when the process is killed, a committed generation at the
destination has all its files and a committed parent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gens_fs.errors import GensError
from gens_fs.layout import (
    COHORTS_DIR,
    GENS_DIR,
    METADATA_FILE,
    PARENT_STAGE,
    STAGES,
    entry_generation,
    membership_path,
    parse_gens_path,
    validate_stage,
)
from gens_fs.sync.compare import FileEntry, Listing, unchanged

GenKey = tuple[str, str]
"""A generation: ``(stage, gen_id)``."""

_GENS_PREFIX = GENS_DIR + "/"
_COHORTS_PREFIX = COHORTS_DIR + "/"


class TooManyDeletes(GensError):
    """The plan would delete more files than ``max_delete`` allows, or (without it) more
    than half of the destination's files in scope; nothing was changed."""


def generation_of(relpath: str) -> GenKey | None:
    """The generation a data-root relpath belongs to, or ``None`` (cohort or stray files)."""
    if not relpath.startswith(_GENS_PREFIX):
        return None
    found = parse_gens_path(relpath[len(_GENS_PREFIX) :])
    return None if found is None else (found.stage, found.gen_id)


def metadata_relpath(key: GenKey) -> str:
    """``gens/<stage>/<gen_id>/metadata.json``."""
    return f"{GENS_DIR}/{key[0]}/{key[1]}/{METADATA_FILE}"


def visible(relpath: str) -> bool:
    """False for hidden and temporary files (any part starting with ``.``)."""
    return all(part and not part.startswith(".") for part in relpath.split("/"))


@dataclass(frozen=True)
class SyncScope:
    """Which files a sync may copy or delete, relative to the data root.

    ``stages``: the generation stages in scope. ``cohorts``: whether ``cohorts/`` is.
    ``cohort`` + ``generations``: only that cohort's ``membership.csv`` and exactly these
    generations (the cohort's rows and all their ancestors).
    """

    stages: tuple[str, ...] = STAGES
    cohorts: bool = True
    cohort: str | None = None
    generations: frozenset[GenKey] | None = None

    @classmethod
    def build(
        cls,
        stages: Iterable[str] | None = None,
        *,
        cohort: str | None = None,
        generations: Iterable[GenKey] | None = None,
    ) -> SyncScope:
        """Everything by default; ``stages`` alone limits ``gens/`` to those stages and leaves
        ``cohorts/`` out (their rows would name generations not synced)."""
        chosen = tuple(s for s in STAGES if s in {validate_stage(s) for s in stages or ()})
        if cohort is not None:
            membership_path(cohort)  # validates the id
            return cls(STAGES, False, cohort, frozenset(generations or ()))
        return cls(chosen or STAGES, not chosen, None, None)

    def contains(self, relpath: str) -> bool:
        """True when ``relpath`` is inside the scope."""
        key = generation_of(relpath)
        if key is not None:
            if self.generations is not None:
                return key in self.generations
            return key[0] in self.stages
        if self.cohort is not None:
            return relpath == membership_path(self.cohort)
        return self.cohorts and relpath.startswith(_COHORTS_PREFIX) and visible(relpath)

    def may_hold(self, relpath: str) -> bool:
        """False for an entry inside a generation folder outside the scope: what a
        listing left out there (a link, a stray folder) is none of this sync's business."""
        key = entry_generation(relpath)
        if key is None:
            return True
        if self.generations is not None:
            return key in self.generations
        return key[0] in self.stages

    def filter(self, listing: Listing) -> dict[str, FileEntry]:
        return {r: e for r, e in listing.items() if self.contains(r)}

    def _stages_listed(self) -> tuple[str, ...]:
        if self.generations is not None:
            return tuple(s for s in STAGES if any(k[0] == s for k in self.generations))
        return self.stages

    def roots(self) -> tuple[str, ...]:
        """The directories to list on each side (one recursive listing each). One per stage,
        not ``gens/`` whole: on S3 their page chains run side by side, for about the same
        number of pages."""
        stages = self._stages_listed()
        gens = tuple(f"{GENS_DIR}/{s}" for s in stages)
        if self.cohort is not None:
            return (f"{COHORTS_DIR}/{self.cohort}", *gens)
        return (*gens, COHORTS_DIR) if self.cohorts else gens

    def context_roots(self) -> tuple[str, ...]:
        """Extra directories to list on the destination only: the ancestor stages outside
        the scope, to know which parents are committed there."""
        stages = set(self._stages_listed())
        if stages == set(STAGES):
            return ()
        needed: set[str] = set()
        for stage in stages:
            parent = PARENT_STAGE[stage]
            while parent is not None:
                needed.add(parent)
                parent = PARENT_STAGE[parent]
        return tuple(f"{GENS_DIR}/{s}" for s in STAGES if s in needed - stages)


def close_over_parents(
    start: Iterable[GenKey], read_parents: Callable[[list[GenKey]], Mapping[GenKey, str | None]]
) -> frozenset[GenKey]:
    """``start`` plus all its ancestors. ``read_parents`` maps generations (one batch per
    lineage level, children first) to their ``parent_gen_id`` (``None`` when unknown)."""
    found = set(start)
    frontier = [k for k in found if PARENT_STAGE[k[0]] is not None]
    while frontier:
        parents = read_parents(sorted(frontier))
        frontier = []
        for (stage, _gen_id), parent_id in sorted(parents.items()):
            parent_stage = PARENT_STAGE[stage]
            if parent_stage is None or not parent_id:
                continue
            parent = (parent_stage, parent_id)
            if parent not in found:
                found.add(parent)
                if PARENT_STAGE[parent_stage] is not None:
                    frontier.append(parent)
    return frozenset(found)


@dataclass(frozen=True)
class FileCopy:
    """Copy one file (relpath under both data roots). ``generation`` is the generation it
    belongs to; ``after`` the parent whose commit in this plan must have succeeded first."""

    relpath: str
    size: int
    generation: GenKey | None = None
    after: GenKey | None = None


@dataclass(frozen=True)
class HeldGeneration:
    """A source generation the plan does not copy, and why (its parent is missing)."""

    stage: str
    gen_id: str
    reason: str

    @property
    def relpath(self) -> str:
        return f"{GENS_DIR}/{self.stage}/{self.gen_id}"


@dataclass(frozen=True)
class SyncPlan:
    """What a sync does, in order. See the module docstring for the phases."""

    files: tuple[FileCopy, ...] = ()
    commits: tuple[tuple[FileCopy, ...], ...] = ()
    cohort_files: tuple[FileCopy, ...] = ()
    deletes: tuple[tuple[str, ...], ...] = ()
    skipped: int = 0
    held: tuple[HeldGeneration, ...] = field(default=())
    dst_in_scope: int = 0
    """How many files the destination holds in scope (what the deletes are a share of)."""

    @property
    def copy_phases(self) -> tuple[tuple[FileCopy, ...], ...]:
        """Every copy phase in order: files, one commit phase per stage, cohort files."""
        return (self.files, *self.commits, self.cohort_files)

    @property
    def copies(self) -> tuple[FileCopy, ...]:
        return tuple(c for phase in self.copy_phases for c in phase)

    @property
    def copy_bytes(self) -> int:
        return sum(c.size for c in self.copies)

    @property
    def delete_paths(self) -> tuple[str, ...]:
        return tuple(p for phase in self.deletes for p in phase)


def changed_files(src: Listing, dst: Listing) -> tuple[list[str], int]:
    """The source relpaths to copy (missing or different at the destination), sorted, and
    the number of unchanged ones. Both listings already limited to the scope."""
    to_copy = sorted(r for r, e in src.items() if r not in dst or not unchanged(e, dst[r]))
    return to_copy, len(src) - len(to_copy)


def parents_needed(src: Listing, dst: Listing) -> list[str]:
    """The source ``metadata.json`` relpaths to read before planning: those of essays and
    evaluations about to be committed (their ``parent_gen_id`` decides the order). Drafts
    and unchanged generations need no read, so a no-op sync reads nothing."""
    to_copy, _ = changed_files(src, dst)
    return [r for r, key in _commit_keys(to_copy).items() if PARENT_STAGE[key[0]] is not None]


def _commit_keys(relpaths: Iterable[str]) -> dict[str, GenKey]:
    """The ``metadata.json`` relpaths among ``relpaths``, with their generations."""
    return {
        r: key
        for r in relpaths
        if r.endswith("/" + METADATA_FILE) and (key := generation_of(r)) is not None
    }


def make_plan(
    src: Listing,
    dst: Listing,
    scope: SyncScope,
    *,
    parents: Mapping[GenKey, str | None],
    delete: bool = False,
) -> SyncPlan:
    """Plan a sync of ``src`` onto ``dst`` within ``scope``.

    ``src`` and ``dst`` are listings with hashes filled where comparable (see
    :mod:`gens_fs.sync.compare`); ``dst`` may hold more than the scope (ancestor stages),
    used only to see which parents are committed there. ``parents`` gives the
    ``parent_gen_id`` of each essay and evaluation whose ``metadata.json`` is copied
    (:func:`parents_needed`).
    """
    src_in, dst_in = scope.filter(src), scope.filter(dst)
    to_copy, skipped = changed_files(src_in, dst_in)
    to_delete = sorted(r for r in dst_in if r not in src_in) if delete else []
    # Committed at the destination and staying so: the parents a child may rely on.
    deleted = set(_commit_keys(to_delete).values())
    committed = set(_commit_keys(dst).values()) - deleted

    commit_keys = {key: r for r, key in _commit_keys(to_copy).items()}
    held: dict[GenKey, str] = {}
    commits: list[tuple[FileCopy, ...]] = []
    for stage in STAGES:
        phase: list[FileCopy] = []
        for key, relpath in sorted(commit_keys.items()):
            if key[0] != stage:
                continue
            after, reason = _parent_rule(key, parents, committed, deleted, commit_keys, held)
            if reason is not None:
                held[key] = reason
            else:
                phase.append(FileCopy(relpath, src_in[relpath].size, key, after))
        commits.append(tuple(phase))

    commit_relpaths = set(commit_keys.values())
    files = tuple(
        FileCopy(r, src_in[r].size, gen)
        for r in to_copy
        if r not in commit_relpaths and (gen := generation_of(r)) is not None and gen not in held
    )
    cohort_files = tuple(FileCopy(r, src_in[r].size) for r in to_copy if generation_of(r) is None)
    return SyncPlan(
        files=files,
        commits=tuple(commits),
        cohort_files=cohort_files,
        deletes=_delete_phases(to_delete),
        skipped=skipped,
        held=tuple(HeldGeneration(k[0], k[1], reason) for k, reason in sorted(held.items())),
        dst_in_scope=len(dst_in),
    )


def _parent_rule(
    key: GenKey,
    parents: Mapping[GenKey, str | None],
    committed: set[GenKey],
    deleted: set[GenKey],
    commit_keys: Mapping[GenKey, str],
    held: Mapping[GenKey, str],
) -> tuple[GenKey | None, str | None]:
    """``(parent committed in this plan or None, reason to hold or None)``."""
    parent_stage = PARENT_STAGE[key[0]]
    if parent_stage is None:
        return None, None
    parent_id = parents.get(key)
    if not parent_id:
        return None, "its metadata.json could not be read or names no parent_gen_id"
    parent = (parent_stage, parent_id)
    if parent in held:
        return None, f"its parent {parent_stage} {parent_id} is held"
    if parent in commit_keys:
        return (None if parent in committed else parent), None
    if parent in committed:
        return None, None
    if parent in deleted:
        return None, f"its parent {parent_stage} {parent_id} is gone from the source"
    return None, (
        f"its parent {parent_stage} {parent_id} is neither committed at the destination nor "
        "in this sync (sync that stage or cohort too)"
    )


def _delete_phases(to_delete: list[str]) -> tuple[tuple[str, ...], ...]:
    """Uncommit children first (evaluations, essays, drafts), then everything else."""
    if not to_delete:
        return ()
    metadata = _commit_keys(to_delete)
    phases = [tuple(r for r, key in metadata.items() if key[0] == s) for s in reversed(STAGES)]
    phases.append(tuple(r for r in to_delete if r not in metadata))
    return tuple(phases)


def delete_refusal(plan: SyncPlan, max_delete: int | None) -> str | None:
    """Why the plan's deletes must not run, or ``None``: more than ``max_delete`` files, or,
    without an explicit ``max_delete``, more than half of the destination's files in scope
    (a wrong source or scope looks exactly like that)."""
    count = len(plan.delete_paths)
    if max_delete is not None:
        if count <= max_delete:
            return None
        return (
            f"refusing to delete {count} files (--max-delete {max_delete}); nothing was "
            "changed: check the source and scope, or raise --max-delete"
        )
    if 2 * count <= plan.dst_in_scope:
        return None
    return (
        f"refusing to delete {count} of the {plan.dst_in_scope} files the destination holds "
        "in scope (more than half); nothing was changed: check that the source is the data "
        f"root you meant and the scope, or, to delete them, pass --max-delete {count}"
    )


def check_max_delete(plan: SyncPlan, max_delete: int | None) -> None:
    """Raise ``TooManyDeletes`` when :func:`delete_refusal` refuses the plan."""
    refusal = delete_refusal(plan, max_delete)
    if refusal is not None:
        raise TooManyDeletes(refusal)
