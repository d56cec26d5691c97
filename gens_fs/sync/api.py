"""``gens_fs.sync``: mirror one data root onto another, incrementally and in lineage order.

A sync is :func:`plan_sync` then :func:`apply`; :func:`sync` is both (a dry run stops after
the plan, and shows exactly what :func:`apply` would run).

**Scope.** Everything by default; ``stages`` limits ``gens/`` to those stages (and leaves
``cohorts/`` out); ``cohort`` takes that cohort's ``membership.csv`` and exactly the
generations it lists plus all their ancestors. ``include``/``exclude``/``where`` (see
:mod:`gens_fs.selection`) take the generations they pick plus all their ancestors, and
leave ``cohorts/`` out (a cohort's ``membership.csv`` too).

**Guarantees.** Unchanged files are not copied again (see :mod:`gens_fs.sync.compare`). At
every moment, even if killed, a committed generation at the destination (one with its
``metadata.json``) has all its files and a committed parent. A generation whose parent is
neither at the destination nor in the sync is held back (reported), and so is a membership
CSV listing a held generation. The one exception, on request: ``allow_orphans`` copies as
it is a generation whose parent is missing in the source itself (a faithful mirror of a
broken source). ``delete`` removes files in scope that the source lacks, after every copy
succeeded and only when nothing is held, children first. A plan deleting more than
``max_delete`` files, or without ``max_delete`` more than half of the destination's files
in scope, is refused (``TooManyDeletes``, nothing changed).

**Roots.** The source must look like a data root (``NotADataRoot`` otherwise, also for a
gens root, a stage folder, ``cohorts/`` or a file); one that holds nothing at all is
accepted only with ``allow_empty_source``. The destination may be a data root, or a folder
that is empty, absent or holds something else, but not a part of a data root; the two on
one storage must not be one folder nor one inside the other (``OverlappingRoots``).
Symbolic links are not followed (with ``follow_symlinks``, those whose target stays inside
the data root are); they, FIFOs, sockets and devices, and the source's stray entries are
left alone and listed in ``SyncReport.ignored``.

**Requests on S3.** The roots: one first-level listing of each (a destination found empty
there is not listed again). The scope of a cohort: its
``membership.csv`` and the ``metadata.json`` of its generations and their ancestors (one
batch per lineage level). The listings: one recursive listing per scope root and side (LIST
pages only), both sides at once (:mod:`gens_fs.sync.sides`). Then, only for what changed:
the ``metadata.json`` of each essay and evaluation to commit, the membership CSVs to copy,
local hashing (see :mod:`gens_fs.sync.source`; every byte read is reused by the copy; a
local file unchanged since it was last hashed is not read: the hash cache). :func:`apply`: one
request per copied file (see :mod:`gens_fs.sync.execute`); ``verify`` lists the
destination again. A no-op resync costs the listings and nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gens_fs.backends import Engine, RateLimit, SyncBackend
from gens_fs.backends.file_table import pairs
from gens_fs.backends.retry import RetryPolicy
from gens_fs.data_root import DataRoot, require_data_root
from gens_fs.layout import membership_path
from gens_fs.listing import Files, Lister, Listing, list_data_root
from gens_fs.selection import Selection, selection_of
from gens_fs.sync.compare import unchanged
from gens_fs.sync.execute import (
    DEFAULT_JOBS,
    Executor,
    PlanRunner,
    ProgressCallback,
    RunLedger,
)
from gens_fs.sync.plan import (
    Diff,
    HeldFile,
    SyncPlan,
    TooManyDeletes,
    delete_refusal,
    hold_memberships,
    make_plan,
    memberships_to_read,
    parents_to_probe,
)
from gens_fs.sync.report import IgnoredEntry, PlannedAction, SyncError, SyncReport
from gens_fs.sync.roots import check_destination_writable, check_roots, display, open_root
from gens_fs.sync.scope import SyncScope
from gens_fs.sync.sides import list_sides
from gens_fs.sync.source import SourceReads, fill_hashes, gone_from_source

Root = str | os.PathLike[str] | DataRoot

_EMPTY_SOURCE_HINT = (
    " (to sync an empty source on purpose, e.g. to empty the destination with --delete, "
    "pass --allow-empty-source)"
)


@dataclass(frozen=True)
class PlannedSync:
    """Everything a sync will do, decided before anything is written, and what
    :func:`apply` needs to do it: both roots, the source bytes read while planning (written
    as they are), the source's files in scope (what ``verify`` expects), and ``refused``:
    why :func:`apply` would refuse the plan (too many deletes), or ``None``; ``lister``:
    how the sides were listed (``verify`` lists the destination the same way)."""

    source: SyncBackend
    target: SyncBackend
    scope: SyncScope
    plan: SyncPlan
    src_files: Files
    prefetched: Mapping[str, bytes]
    ignored: tuple[IgnoredEntry, ...]
    refused: str | None
    checksum: bool
    started: float = field(default_factory=time.monotonic)
    lister: Lister = list_data_root
    unhashed: Mapping[str, str] = field(default_factory=dict)

    def report(self, *, dry_run: bool = True) -> SyncReport:
        """The report of the plan: what a run would copy, skip, hold back and delete (with
        ``dry_run``: counted as done, the actions listed), and its refusal if any (without
        ``dry_run``: the report of a run refused, nothing done)."""
        plan = self.plan
        held = [(h.relpath, h.reason) for h in plan.held]
        held += [(f.relpath, f.reason) for f in plan.held_files]
        report = SyncReport(
            src=display(self.source),
            dst=display(self.target),
            dry_run=dry_run,
            skipped=plan.skipped,
            errors=[SyncError(path=path, error=f"not synced: {why}") for path, why in held],
            held=[f"{h.stage}/{h.gen_id}" for h in plan.held],
            held_memberships=[f.relpath for f in plan.held_files],
            deletes_skipped=bool(plan.withheld_deletes),
            deletes_not_run=len(plan.withheld_deletes),
            ignored=list(self.ignored),
            unhashed=[SyncError(path=p, error=why) for p, why in sorted(self.unhashed.items())],
        )
        if dry_run:
            report.copied, report.bytes = len(plan.copies), plan.copy_bytes
            report.deleted = len(plan.delete_paths)
            report.actions = [
                *(PlannedAction(action="copy", path=c.relpath, size=c.size) for c in plan.copies),
                *(PlannedAction(action="delete", path=p) for p in plan.delete_paths),
            ]
            report.seconds = round(time.monotonic() - self.started, 3)
        report.refused = self.refused
        return report


def sync(
    src: Root,
    dst: Root,
    *,
    cohort: str | None = None,
    stages: Iterable[str] | None = None,
    delete: bool = False,
    max_delete: int | None = None,
    dry_run: bool = False,
    checksum: bool = False,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
    verify: bool = False,
    retry: RetryPolicy | None = None,
    allow_empty_source: bool = False,
    follow_symlinks: bool = False,
    allow_orphans: bool = False,
    engine: Engine = "fsspec",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    where: Mapping[str, str] | Iterable[str] | None = None,
    selection: Selection | None = None,
    limit: RateLimit | None = None,
    fsync: bool = False,
) -> SyncReport:
    """Make the data root ``dst`` hold what ``src`` holds, within the scope: :func:`plan_sync`
    then, unless ``dry_run`` (nothing changed, the plan in ``SyncReport.actions``, and in
    ``SyncReport.refused`` whether a real run would be refused), :func:`apply`. ``src``/``dst``:
    paths, URLs, or ``DataRoot``s (your own ``fs=``, or an engine of their own; ``engine``
    serves the others). ``include``/``exclude`` (gen_id globs; an exclude wins over an
    include), ``where`` (metadata ``{key: value}``) or ``selection`` (rules in an order of
    your own): see *Scope*. ``checksum``: compare every file by content. ``retry``: every
    request's policy, both sides (default: each root's own). ``limit``, ``fsync``: see
    :func:`plan_sync`, :func:`apply`. Errors: ``StorageError``, ``NotADataRoot``,
    ``OverlappingRoots``, ``CohortNotFound``, ``AccessDenied``, ``TooManyDeletes`` (see the
    module for scope, guarantees and roots)."""
    planned = plan_sync(
        src,
        dst,
        cohort=cohort,
        stages=stages,
        delete=delete,
        max_delete=max_delete,
        checksum=checksum,
        src_options=src_options,
        dst_options=dst_options,
        allow_empty_source=allow_empty_source,
        follow_symlinks=follow_symlinks,
        allow_orphans=allow_orphans,
        engine=engine,
        retry=retry,
        selection=selection_of(include, exclude, where, selection),
        limit=limit,
    )
    if dry_run:
        return planned.report()
    return apply(planned, jobs=jobs, progress=progress, verify=verify, fsync=fsync)


def plan_sync(
    src: Root,
    dst: Root,
    *,
    cohort: str | None = None,
    stages: Iterable[str] | None = None,
    delete: bool = False,
    max_delete: int | None = None,
    checksum: bool = False,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
    allow_empty_source: bool = False,
    follow_symlinks: bool = False,
    allow_orphans: bool = False,
    engine: Engine = "fsspec",
    retry: RetryPolicy | None = None,
    selection: Selection | None = None,
    lister: Lister = list_data_root,
    limit: RateLimit | None = None,
) -> PlannedSync:
    """Decide everything a sync of ``src`` onto ``dst`` does; write nothing. The roots, the
    errors and the keywords: see the module and :func:`sync`. ``selection``: see *Scope*
    (with ``delete`` it applies to both sides). ``lister``: how each side is listed
    (:class:`Lister`). ``limit``: one ``RateLimit`` for every request, both sides."""
    started = time.monotonic()
    source = open_root(src, src_options, engine, retry, limit)
    target = open_root(dst, dst_options, engine, retry, limit)
    dst_empty = _check_roots(source, target, allow_empty_source=allow_empty_source)
    reads = SourceReads(source, lister)
    scope = reads.scope(stages, cohort, selection, follow_symlinks=follow_symlinks)
    if scope.cohort is not None and membership_path(scope.cohort) in reads.unreadable:
        return _cohort_unreadable(source, target, scope, reads.unreadable, checksum, started)
    if delete and selection is not None and cohort is None:  # a cohort's scope is its rows
        scope = gone_from_source(
            reads, target, scope, stages, selection, follow_symlinks=follow_symlinks
        )
    listed = _list_and_hash(reads, target, scope, follow_symlinks, checksum, dst_empty)
    diff = Diff.within(listed.src_files, listed.dst_files, scope)
    parents = reads.parents(diff.parents_to_read())
    probed = reads.committed(parents_to_probe(parents, listed.dst_files, scope))
    plan = make_plan(
        diff, parents=parents, delete=delete, allow_orphans=allow_orphans, probed=probed
    )
    plan = hold_memberships(plan, *reads.memberships(memberships_to_read(plan)))
    check_destination_writable(target, plan)
    return PlannedSync(
        source=source,
        target=target,
        scope=scope,
        plan=plan,
        src_files=listed.src_files,
        prefetched=reads.prefetched,
        ignored=_ignored(scope, listed.src, listed.src_in, listed.dst),
        refused=delete_refusal(plan, max_delete),
        checksum=checksum,
        started=started,
        lister=lister,
        unhashed=listed.unhashed,
    )


def _check_roots(source: SyncBackend, target: SyncBackend, *, allow_empty_source: bool) -> bool:
    """The roots apart and of the right kinds (see the module), before anything is listed;
    whether the destination is empty (:func:`~gens_fs.sync.roots.check_roots`)."""
    dst_empty = check_roots(source, target)
    require_data_root(
        source, what="source data root", allow_empty=allow_empty_source, if_empty=_EMPTY_SOURCE_HINT
    )
    return dst_empty


class _Listed(NamedTuple):
    """Both sides listed in scope, hashed where the comparison needs it: the listings,
    the source's files in scope, both sides' files to compare, and the files that could
    not be read to hash (relpath -> why)."""

    src: Listing
    dst: Listing
    src_in: Files
    src_files: Files
    dst_files: Files
    unhashed: dict[str, str]


def _list_and_hash(
    reads: SourceReads,
    target: SyncBackend,
    scope: SyncScope,
    follow_symlinks: bool,
    checksum: bool,
    dst_empty: bool,
) -> _Listed:
    """One recursive listing per scope root and side (the destination's ancestor stages
    too, for context; none of an empty destination), then the hashes the comparison
    needs."""
    src_listing, dst_listing = list_sides(
        reads,
        target,
        scope,
        follow_symlinks=follow_symlinks,
        checksum=checksum,
        dst_empty=dst_empty,
    )
    src_in = scope.filter(src_listing.files)
    unhashed: dict[str, str] = {}
    src_files, dst_files = fill_hashes(
        reads.source, target, src_in, dst_listing.files, checksum=checksum, failed=unhashed
    )
    return _Listed(src_listing, dst_listing, src_in, src_files, dst_files, unhashed)


def _cohort_unreadable(
    source: SyncBackend,
    target: SyncBackend,
    scope: SyncScope,
    unreadable: Mapping[str, str],
    checksum: bool,
    started: float,
) -> PlannedSync:
    """The plan of a cohort sync whose ``membership.csv`` could not be read (after the
    retries): nothing to copy, the CSV held back and reported (run again)."""
    assert scope.cohort is not None
    relpath = membership_path(scope.cohort)
    why = f"it could not be read to see which generations it lists ({unreadable[relpath]}); "
    plan = SyncPlan(held_files=(HeldFile(relpath, why + "run again"),))
    return PlannedSync(source, target, scope, plan, {}, {}, (), None, checksum, started)


def apply(
    planned: PlannedSync,
    *,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    verify: bool = False,
    fsync: bool = False,
) -> SyncReport:
    """Run a plan: copies in phases (files, then each stage's commits, parents' first, then
    membership CSVs), then deletes; ``jobs`` transfers in flight (default 128). Files that
    fail are reported in ``SyncReport.errors`` (see :mod:`gens_fs.sync.execute`); a rerun
    converges. ``verify`` lists the destination again and compares. ``TooManyDeletes``
    when the plan was refused, before anything is written; ``AccessDenied`` at the first
    refused request (nothing starts after it; nothing is half-written). ``fsync``: at a
    local destination every file and its folder are on disk before the commits that need
    them (see :meth:`~gens_fs.backends.base.Backend.durable`)."""
    target = planned.target.durable() if fsync else planned.target
    executor = Executor(
        planned.source.backend,
        target.backend,
        jobs=jobs or DEFAULT_JOBS,
        prefetched=planned.prefetched,
    )
    return run_plan(planned, executor, progress=progress, verify=verify)


def run_plan(
    planned: PlannedSync,
    executor: PlanRunner,
    *,
    progress: ProgressCallback | None = None,
    verify: bool = False,
) -> SyncReport:
    """:func:`apply` with any executor (this machine's, or a cluster's: ``gens_fs.dask``):
    the refusal, the report and its ledger (the runtime rules), ``verify``, the time."""
    if planned.refused is not None:
        raise TooManyDeletes(planned.refused)
    report = planned.report(dry_run=False)
    executor.run(RunLedger(report, planned.plan, progress))
    report.uncommitted = sorted(set(report.uncommitted))
    if verify:
        problems = verify_copy(planned)
        known = {e.path for e in report.errors}
        report.errors += [p for p in problems if p.path not in known]
        report.verified = not problems
    report.seconds = round(time.monotonic() - planned.started, 3)
    return report


def verify_copy(planned: PlannedSync) -> list[SyncError]:
    """List the destination again; every source file in scope the plan did not hold back
    must be there with the same size and (where comparable) hash. LIST pages (and local
    hashing), as the plan's sides were listed."""
    plan = planned.plan
    held = {h.relpath + "/" for h in plan.held}
    held_files = {f.relpath for f in plan.held_files}
    expected = {
        r: info
        for r, info in planned.src_files.items()
        if r not in held_files and not any(r.startswith(h) for h in held)
    }
    dst = planned.scope.filter(planned.lister(planned.target, planned.scope.roots()).files)
    unread: dict[str, str] = {}
    src_checked, dst_checked = fill_hashes(
        planned.source, planned.target, expected, dst, checksum=planned.checksum, failed=unread
    )
    problems = []
    for relpath, info, found in pairs(src_checked, dst_checked):
        if info is None:
            continue
        if relpath in unread:
            problems.append(SyncError(path=relpath, error=f"verify: unreadable: {unread[relpath]}"))
        elif found is None:
            problems.append(SyncError(path=relpath, error="verify: missing at the destination"))
        elif not unchanged(info, found):
            problems.append(SyncError(path=relpath, error="verify: differs at the destination"))
    return problems


def _ignored(
    scope: SyncScope, src: Listing, src_in: Files, dst: Listing
) -> tuple[IgnoredEntry, ...]:
    """What each side's listing left alone, in scope (the destination is listed wider, for
    context: its entries outside the scope do not concern this sync); at the source, its
    strays too."""
    found = [IgnoredEntry(side="source", path=i.path, reason=i.reason) for i in src.ignored]
    found += [
        IgnoredEntry(side="source", path=s.path, reason=f"stray: {s.reason}")
        for s in src.strays(fitting=src_in)
        if not s.path.startswith("cohorts/")
    ]
    found += [IgnoredEntry(side="destination", path=i.path, reason=i.reason) for i in dst.ignored]
    return tuple(entry for entry in found if scope.may_hold(entry.path))
