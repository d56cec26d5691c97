"""The sync planner: two listings and a scope in, an ordered ``SyncPlan`` out.

Pure: no I/O. Everything a sync does is decided here, so ``--dry-run`` prints exactly what a
real run would do and the ordering guarantee is testable without storage.

The plan runs in phases, each finished before the next starts:

1. ``files``: every file to copy except ``metadata.json`` (any order, concurrently);
2. ``commits``: ``metadata.json`` in lineage order: first the commits that wait for no
   other (drafts, and generations whose parent is committed at the destination already),
   then their children's, then their grandchildren's (an upload: drafts, essays,
   evaluations; a resync of edits: one phase);
3. ``cohort_files``: membership CSVs, once the generations they list are committed;
4. ``deletes`` (only with ``delete=True``, only after every copy succeeded): evaluations'
   ``metadata.json``, then essays', then drafts' (children uncommitted first), then the rest.

Deletes are refused from the plan alone, before anything runs (:func:`delete_refusal`):
more than ``max_delete`` files, or without it more than half of the destination's files in
scope. They are withheld (not run, and said so) when anything is held.

A commit is planned only for a generation whose parent is committed at the destination
already or is committed earlier in the same plan (``FileCopy.after``); otherwise the
generation is *held* (not copied at all, and reported with why: the parent is out of the
sync's scope, or not committed in the source either, or the ``metadata.json`` could not be read).
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

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from gens_fs.backends.file_table import pairs
from gens_fs.errors import GensError
from gens_fs.layout import (
    METADATA_FILE,
    PARENT_STAGE,
    STAGES,
    GenKey,
    generation_of,
    generation_relpath,
    is_valid_gen_id,
    membership_cohort,
    metadata_relpath,
)
from gens_fs.listing import Files
from gens_fs.sync.compare import unchanged
from gens_fs.sync.scope import SyncScope


class TooManyDeletes(GensError):
    """The plan would delete more files than ``max_delete`` allows, or (without it) more
    than half of the destination's files in scope; nothing was changed."""


@dataclass(frozen=True)
class Diff:
    """Two listings compared within a scope, once. ``src``: the source's files in scope;
    ``dst``: the destination's, possibly wider (ancestor stages, to see which parents are
    committed there); ``copy``: the source relpaths missing or different at the
    destination, sorted; ``extra``: those in scope only the destination has."""

    src: Files
    dst: Files
    scope: SyncScope
    copy: tuple[str, ...]
    skipped: int
    extra: tuple[str, ...]
    dst_in_scope: int

    @classmethod
    def of(cls, src: Files, dst: Files, scope: SyncScope) -> Diff:
        """Compare ``src`` and ``dst`` (hashes filled where comparable: see
        :mod:`gens_fs.sync.compare`) within ``scope``."""
        return cls.within(scope.filter(src), dst, scope)

    @classmethod
    def within(cls, src_in: Files, dst: Files, scope: SyncScope) -> Diff:
        """:meth:`of` for a source listing already limited to ``scope``."""
        dst_in = scope.filter(dst)
        copy: list[str] = []
        extra: list[str] = []
        for relpath, mine, theirs in pairs(src_in, dst_in):  # one pass, both in path order
            if mine is None:
                extra.append(relpath)
            elif theirs is None or not unchanged(mine, theirs):
                copy.append(relpath)
        skipped = len(src_in) - len(copy)
        return cls(src_in, dst, scope, tuple(copy), skipped, tuple(extra), len(dst_in))

    def parents_to_read(self) -> list[str]:
        """The source ``metadata.json`` relpaths to read before planning: those of essays and
        evaluations about to be committed (their ``parent_gen_id`` decides the order).
        Drafts and unchanged generations need no read, so a no-op sync reads nothing."""
        return [r for r, key in _commit_keys(self.copy).items() if PARENT_STAGE[key[0]]]


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
        return generation_relpath((self.stage, self.gen_id))


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
        """Every copy phase in order: files, the commit phases, cohort files."""
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


def _commit_keys(relpaths: Iterable[str]) -> dict[str, GenKey]:
    """The ``metadata.json`` relpaths among ``relpaths``, with their generations."""
    return {
        r: key
        for r in relpaths
        if r.endswith("/" + METADATA_FILE) and (key := generation_of(r)) is not None
    }


ParentIds = Mapping[GenKey, str | GensError | None]
"""The ``parent_gen_id`` of each essay and evaluation about to be committed: ``""`` when its
``metadata.json`` names none, its ``InvalidMetadata`` when it does not parse, ``None`` when
it could not be read."""


def make_plan(
    diff: Diff,
    *,
    parents: ParentIds,
    delete: bool = False,
    allow_orphans: bool = False,
    probed: Mapping[GenKey, bool] | None = None,
) -> SyncPlan:
    """Plan a sync from ``diff``.

    ``parents`` gives the ``parent_gen_id`` of each essay and evaluation whose
    ``metadata.json`` is copied (:meth:`Diff.parents_to_read`). ``probed`` says whether the
    source has each parent that is outside the scope and not at the destination
    (:func:`parents_to_probe`; one it does not name counts as there). A generation whose
    parent is missing in the source itself (an orphan at the source) is held, or with
    ``allow_orphans`` copied as it is. When anything is held the deletes are withheld
    (``SyncPlan.withheld_deletes``). The membership CSVs are settled by
    :func:`hold_memberships`, once their rows are read.
    """
    to_delete = list(diff.extra) if delete else []
    lineage = _Lineage(
        src=diff.src,
        scope=diff.scope,
        parents=parents,
        probed=probed or {},
        allow_orphans=allow_orphans,
        dst=diff.dst,
        deleting=frozenset(to_delete),
        commit_keys={key: r for r, key in _commit_keys(diff.copy).items()},
    )
    commits = lineage.commit_phases()
    commit_relpaths = set(lineage.commit_keys.values())
    files = tuple(
        FileCopy(r, diff.src[r].size, gen)
        for r in diff.copy
        if r not in commit_relpaths
        and (gen := generation_of(r)) is not None
        and gen not in lineage.held
    )
    cohort_files = tuple(
        FileCopy(r, diff.src[r].size) for r in diff.copy if generation_of(r) is None
    )
    plan = SyncPlan(
        files=files,
        commits=commits,
        cohort_files=cohort_files,
        deletes=_delete_phases(to_delete),
        skipped=diff.skipped,
        held=tuple(HeldGeneration(k[0], k[1], why) for k, why in sorted(lineage.held.items())),
        dst_in_scope=diff.dst_in_scope,
    )
    return _withhold_deletes(plan)


_ORPHAN_ADVICE = "fix the source (gens-fs check SRC) or pass --allow-orphans to copy it as it is"


@dataclass
class _Lineage:
    """The parent rule over one plan's commits. ``dst``: the destination's listing, less
    ``deleting`` (its files this plan deletes); ``commit_keys``: the generations whose
    ``metadata.json`` the plan copies; ``held`` fills up, parents' stage first, with the
    ones it holds and why."""

    src: Files
    scope: SyncScope
    parents: ParentIds
    probed: Mapping[GenKey, bool]
    allow_orphans: bool
    dst: Files
    deleting: frozenset[str]
    commit_keys: dict[GenKey, str]
    held: dict[GenKey, str] = field(default_factory=dict)

    def commit_phases(self) -> tuple[tuple[FileCopy, ...], ...]:
        """The commits not held, in phases by how many commits of this plan they wait
        for: first those that wait for none (drafts, and generations whose parent is
        committed at the destination already and stays so), then those whose parent is
        committed in the first phase, and so on. An upload is a phase per stage; a resync
        of edits to committed generations, one phase (one round trip, not three)."""
        depth: dict[GenKey, int] = {}
        phases: list[list[FileCopy]] = []
        for stage in STAGES:  # parents' stage first: an ``after`` has its depth already
            for key, relpath in sorted(self.commit_keys.items()):
                if key[0] != stage:
                    continue
                after, reason = self._rule(key)
                if reason is not None:
                    self.held[key] = reason
                    continue
                depth[key] = 0 if after is None else depth[after] + 1
                if depth[key] == len(phases):
                    phases.append([])
                phases[depth[key]].append(FileCopy(relpath, self.src[relpath].size, key, after))
        return tuple(tuple(phase) for phase in phases)

    def _rule(self, key: GenKey) -> tuple[GenKey | None, str | None]:
        """``(parent committed earlier in this plan or None, reason to hold or None)``."""
        parent_stage = PARENT_STAGE[key[0]]
        if parent_stage is None:
            return None, None
        parent_id = self.parents.get(key)
        if parent_id is None:
            return None, "its metadata.json could not be read (run again to retry)"
        if isinstance(parent_id, GensError):
            return self._orphan(f"its metadata.json does not parse ({parent_id})")
        if not parent_id:
            return self._orphan("its metadata.json names no parent_gen_id")
        if not is_valid_gen_id(parent_id):
            return self._orphan(f"its parent_gen_id {parent_id!r} is not a valid gen_id")
        parent = (parent_stage, parent_id)
        if parent in self.held:
            return None, f"its parent {parent_stage} {parent_id} is held back too"
        if parent in self.commit_keys:
            return (None if self._committed(parent) else parent), None
        if self._committed(parent):
            return None, None
        if not self._at_source(parent):
            return self._orphan(
                f"its parent {parent_stage} {parent_id} is not committed in the source either "
                "(no metadata.json there)"
            )
        return None, (
            f"its parent {parent_stage} {parent_id} is neither committed at the destination nor "
            "in this sync (sync that stage or cohort too)"
        )

    def _committed(self, key: GenKey) -> bool:
        """Whether ``key`` is committed at the destination and stays so (not deleted)."""
        relpath = metadata_relpath(key)
        return relpath in self.dst and relpath not in self.deleting

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


def parents_to_probe(parents: ParentIds, dst: Files, scope: SyncScope) -> list[GenKey]:
    """The parents to look for at the source before planning: named by a generation about to
    be committed, outside the scope (so not in the source's listing) and not committed at
    the destination. Only a stage scope has them: a cohort's holds every ancestor."""
    found: set[GenKey] = set()
    for (stage, _gen_id), parent_id in parents.items():
        parent_stage = PARENT_STAGE[stage]
        if parent_stage is None or not isinstance(parent_id, str):
            continue
        if not is_valid_gen_id(parent_id):
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
