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
scope. They are withheld (not run, and said so) when anything is held.

A commit is planned only for a generation whose parent is committed at the destination
already or is committed earlier in the same plan (``FileCopy.after``); otherwise the
generation is *held* (not copied at all, and reported with why: the parent is out of the
sync's scope, or missing in the source too, or the ``metadata.json`` could not be read).
The one exception is asked for: ``allow_orphans`` copies a generation whose parent is
missing in the source itself as it is. A membership CSV listing a held generation is held
too (:func:`hold_memberships`, once the CSVs' rows are read); the others carry the
generations they need committed (``FileCopy.needs``).

The executor adds the runtime half of the rule: no commit for a generation with a failed
file, or whose parent's commit did not happen, and no membership CSV that needs such a
generation. So at every instant, even when the process is killed, a committed generation
at the destination has all its files and a committed parent (with ``allow_orphans``, an
orphan of the source stays one), and no membership CSV the sync writes lists a generation
the sync left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from gens_fs.errors import GensError
from gens_fs.layout import (
    COHORTS_DIR,
    GENS_DIR,
    METADATA_FILE,
    PARENT_STAGE,
    STAGES,
    generation_folder,
    is_valid_gen_id,
    membership_cohort,
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
        key = generation_folder(relpath)
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
    belongs to; ``after`` the parent whose commit in this plan must have succeeded first.
    ``needs``, for a membership CSV: the generations it lists that this plan copies; one
    left uncommitted at run time (a file failed) holds the CSV back."""

    relpath: str
    size: int
    generation: GenKey | None = None
    after: GenKey | None = None
    needs: frozenset[GenKey] = frozenset()


@dataclass(frozen=True)
class HeldGeneration:
    """A source generation the plan does not copy, and why (its parent is missing, or its
    ``metadata.json`` could not be read)."""

    stage: str
    gen_id: str
    reason: str

    @property
    def relpath(self) -> str:
        return f"{GENS_DIR}/{self.stage}/{self.gen_id}"


@dataclass(frozen=True)
class HeldFile:
    """A file outside ``gens/`` (a membership CSV) the plan does not copy, and why: it lists
    a held generation, so at the destination its cohort would name one it lacks."""

    relpath: str
    reason: str


@dataclass(frozen=True)
class SyncPlan:
    """What a sync does, in order. See the module docstring for the phases."""

    files: tuple[FileCopy, ...] = ()
    commits: tuple[tuple[FileCopy, ...], ...] = ()
    cohort_files: tuple[FileCopy, ...] = ()
    deletes: tuple[tuple[str, ...], ...] = ()
    skipped: int = 0
    held: tuple[HeldGeneration, ...] = field(default=())
    held_files: tuple[HeldFile, ...] = field(default=())
    withheld_deletes: tuple[str, ...] = ()
    """The deletes the plan would make but does not, because something is held: a delete
    could uncommit the parent of a generation that stays, or leave a held-back membership
    naming a deleted generation. They run on a later sync that holds nothing."""
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

    @property
    def generations_copied(self) -> frozenset[GenKey]:
        """Every generation with a file in this plan (each may fail at run time)."""
        return frozenset(c.generation for c in self.copies if c.generation is not None)


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


ParentIds = Mapping[GenKey, str | None]
"""The ``parent_gen_id`` of each essay and evaluation about to be committed: ``""`` when its
``metadata.json`` names none (or is not a JSON object), ``None`` when it could not be read."""


def make_plan(
    src: Listing,
    dst: Listing,
    scope: SyncScope,
    *,
    parents: ParentIds,
    delete: bool = False,
    allow_orphans: bool = False,
    probed: Mapping[GenKey, bool] | None = None,
) -> SyncPlan:
    """Plan a sync of ``src`` onto ``dst`` within ``scope``.

    ``src`` and ``dst`` are listings with hashes filled where comparable (see
    :mod:`gens_fs.sync.compare`); ``dst`` may hold more than the scope (ancestor stages),
    used only to see which parents are committed there. ``parents`` gives the
    ``parent_gen_id`` of each essay and evaluation whose ``metadata.json`` is copied
    (:func:`parents_needed`). ``probed`` says whether the source has each parent that is
    outside the scope and not at the destination (:func:`parents_to_probe`; one it does not
    name counts as there). A generation whose parent is missing in the source itself (an
    orphan at the source) is held, or with ``allow_orphans`` copied as it is. When anything
    is held the deletes are withheld (``SyncPlan.withheld_deletes``). The membership CSVs
    are settled by :func:`hold_memberships`, once their rows are read.
    """
    src_in, dst_in = scope.filter(src), scope.filter(dst)
    to_copy, skipped = changed_files(src_in, dst_in)
    to_delete = sorted(r for r in dst_in if r not in src_in) if delete else []
    deleted = set(_commit_keys(to_delete).values())
    lineage = _Lineage(
        src=src_in,
        scope=scope,
        parents=parents,
        probed=probed or {},
        allow_orphans=allow_orphans,
        committed=set(_commit_keys(dst).values()) - deleted,
        commit_keys={key: r for r, key in _commit_keys(to_copy).items()},
    )
    commits = lineage.commit_phases()
    commit_relpaths = set(lineage.commit_keys.values())
    files = tuple(
        FileCopy(r, src_in[r].size, gen)
        for r in to_copy
        if r not in commit_relpaths
        and (gen := generation_of(r)) is not None
        and gen not in lineage.held
    )
    cohort_files = tuple(FileCopy(r, src_in[r].size) for r in to_copy if generation_of(r) is None)
    plan = SyncPlan(
        files=files,
        commits=commits,
        cohort_files=cohort_files,
        deletes=_delete_phases(to_delete),
        skipped=skipped,
        held=tuple(HeldGeneration(k[0], k[1], why) for k, why in sorted(lineage.held.items())),
        dst_in_scope=len(dst_in),
    )
    return _withhold_deletes(plan)


_ORPHAN_ADVICE = "fix the source (gens-fs check SRC) or pass --allow-orphans to copy it as it is"


@dataclass
class _Lineage:
    """The parent rule over one plan's commits. ``committed``: the generations committed at
    the destination that stay so; ``commit_keys``: those whose ``metadata.json`` the plan
    copies; ``held`` fills up, parents' stage first, with the ones it holds and why."""

    src: Listing
    scope: SyncScope
    parents: ParentIds
    probed: Mapping[GenKey, bool]
    allow_orphans: bool
    committed: set[GenKey]
    commit_keys: dict[GenKey, str]
    held: dict[GenKey, str] = field(default_factory=dict)

    def commit_phases(self) -> tuple[tuple[FileCopy, ...], ...]:
        """One phase per stage, parents' first, of the commits not held."""
        phases: list[tuple[FileCopy, ...]] = []
        for stage in STAGES:
            phase: list[FileCopy] = []
            for key, relpath in sorted(self.commit_keys.items()):
                if key[0] != stage:
                    continue
                after, reason = self._rule(key)
                if reason is not None:
                    self.held[key] = reason
                else:
                    phase.append(FileCopy(relpath, self.src[relpath].size, key, after))
            phases.append(tuple(phase))
        return tuple(phases)

    def _rule(self, key: GenKey) -> tuple[GenKey | None, str | None]:
        """``(parent committed earlier in this plan or None, reason to hold or None)``."""
        parent_stage = PARENT_STAGE[key[0]]
        if parent_stage is None:
            return None, None
        parent_id = self.parents.get(key)
        if parent_id is None:
            return None, "its metadata.json could not be read (run again to retry)"
        if not parent_id:
            return self._orphan("its metadata.json names no parent_gen_id")
        if not is_valid_gen_id(parent_id):
            return self._orphan(f"its parent_gen_id {parent_id!r} is not a valid gen_id")
        parent = (parent_stage, parent_id)
        if parent in self.held:
            return None, f"its parent {parent_stage} {parent_id} is held back too"
        if parent in self.commit_keys:
            return (None if parent in self.committed else parent), None
        if parent in self.committed:
            return None, None
        if not self._at_source(parent):
            return self._orphan(
                f"its parent {parent_stage} {parent_id} is missing in the source too"
            )
        return None, (
            f"its parent {parent_stage} {parent_id} is neither committed at the destination nor "
            "in this sync (sync that stage or cohort too)"
        )

    def _at_source(self, parent: GenKey) -> bool:
        """Whether the source has ``parent`` committed: its listing tells for a parent in
        scope, the probe for one outside it (not probed: taken to be there)."""
        relpath = metadata_relpath(parent)
        if self.scope.contains(relpath):
            return relpath in self.src
        return self.probed.get(parent, True)

    def _orphan(self, why: str) -> tuple[GenKey | None, str | None]:
        """A generation the source itself has without a usable parent: copied as it is with
        ``allow_orphans`` (a faithful mirror of a broken source), held otherwise."""
        return (None, None) if self.allow_orphans else (None, f"{why}: {_ORPHAN_ADVICE}")


def parents_to_probe(parents: ParentIds, dst: Listing, scope: SyncScope) -> list[GenKey]:
    """The parents to look for at the source before planning: named by a generation about to
    be committed, outside the scope (so not in the source's listing) and not committed at
    the destination. Only a stage scope has them: a cohort's holds every ancestor."""
    found: set[GenKey] = set()
    for (stage, _gen_id), parent_id in parents.items():
        parent_stage = PARENT_STAGE[stage]
        if parent_stage is None or not parent_id or not is_valid_gen_id(parent_id):
            continue
        relpath = metadata_relpath((parent_stage, parent_id))
        if not scope.contains(relpath) and relpath not in dst:
            found.add((parent_stage, parent_id))
    return sorted(found)


def memberships_to_read(plan: SyncPlan) -> list[str]:
    """The membership CSVs the plan copies whose rows it must know before it runs: every one
    when it copies or holds a generation (a CSV listing a held one is held back; one
    listing a generation that fails at run time waits for a rerun), none otherwise."""
    if not plan.held and not plan.generations_copied:
        return []
    return [c.relpath for c in plan.cohort_files if membership_cohort(c.relpath) is not None]


MembershipKeys = Collection[GenKey] | None
"""The generations a membership CSV lists, or ``None`` when it does not parse (it is copied
as it is: not this sync's to judge)."""


def hold_memberships(
    plan: SyncPlan,
    rows: Mapping[str, MembershipKeys],
    unreadable: Mapping[str, str] | None = None,
) -> SyncPlan:
    """``plan`` with each membership CSV of ``rows`` settled: held back when it lists a held
    generation (or, ``unreadable``, could not be read to tell), else marked with the
    generations it needs committed (``FileCopy.needs``). Deletes are withheld when a CSV is
    held: the destination's old one may list a generation they remove."""
    held = {(h.stage, h.gen_id) for h in plan.held}
    copied = plan.generations_copied
    kept: list[FileCopy] = []
    held_files = list(plan.held_files)
    for copy in plan.cohort_files:
        listed = frozenset(rows.get(copy.relpath) or ())
        why = _membership_hold(listed & held, (unreadable or {}).get(copy.relpath))
        if why is not None:
            held_files.append(HeldFile(copy.relpath, why))
        else:
            kept.append(replace(copy, needs=listed & copied))
    settled = replace(plan, cohort_files=tuple(kept), held_files=tuple(held_files))
    return _withhold_deletes(settled)


def _membership_hold(held_listed: Collection[GenKey], unreadable: str | None) -> str | None:
    """Why a membership CSV is held back, or ``None``."""
    if unreadable is not None:
        return f"it could not be read to see which generations it lists ({unreadable}); run again"
    if held_listed:
        return (
            f"it lists generations held back ({generation_names(sorted(held_listed))}); "
            "it follows them once they are synced"
        )
    return None


def generation_names(keys: Iterable[GenKey], shown: int = 3) -> str:
    """``essay/e1, essay/e2, ...``: the first ``shown`` of ``keys``, for a message."""
    names = [f"{stage}/{gen_id}" for stage, gen_id in keys]
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _withhold_deletes(plan: SyncPlan) -> SyncPlan:
    """No deletes while anything is held: a delete could uncommit the parent of a generation
    that stays, or remove one a held-back membership still lists."""
    if not (plan.held or plan.held_files) or not plan.deletes:
        return plan
    return replace(plan, deletes=(), withheld_deletes=plan.withheld_deletes + plan.delete_paths)


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
