"""``gens_fs.sync``: mirror one data root onto another, incrementally and in lineage order.

The steps, and what each costs on S3:

0. the roots: not one inside the other (no request); the source must look like a data
   root, the destination must not look like a part of one (one ``ListObjectsV2`` of each
   one's first level; see :func:`gens_fs.inventory.require_data_root`);
1. scope: for ``cohort``, the source's ``membership.csv`` (one LIST, one GET) and the
   ``metadata.json`` of the listed generations and their ancestors (one GET each, batched
   per lineage level; those bytes are reused for the copy);
2. listing: one recursive listing per scope root and side (LIST pages only);
3. comparison (:mod:`gens_fs.sync.compare`): local files hashed where needed, no request;
4. parents: the source ``metadata.json`` of each essay/evaluation about to be committed (one
   GET each, reused for the copy, so no extra request in the end for cross-storage syncs);
   with a stage scope, the parents' stage at the source when a parent is at neither side's
   listing (one listing: is it missing in the source too?);
5. the pure plan (:mod:`gens_fs.sync.plan`); then, when it copies or holds a generation, the
   membership CSVs it copies (one GET each, reused for the copy): one listing a held
   generation is held too, and each knows which generations it needs committed; its
   deletes checked before any write (``max_delete``, or more than half of the
   destination's files in scope), and withheld when anything is held;
6. execution (:mod:`gens_fs.sync.execute`): one request per copied file;
7. ``verify``: the destination listed again and compared (LIST pages only).

A no-op resync therefore costs the listings and nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from gens_fs.backends import Engine, SyncBackend, open_backend
from gens_fs.backends.retry import RetryPolicy, is_transient
from gens_fs.cohorts import DataRoot, parse_membership
from gens_fs.errors import CohortNotFound, GensError, NotADataRoot, StorageError
from gens_fs.inventory import refuse_misplaced_root, require_data_root
from gens_fs.layout import ancestors, join, membership_path, roots_overlap
from gens_fs.sync.compare import FileEntry, hash_by_reading, hashes_needed, unchanged
from gens_fs.sync.execute import (
    DEFAULT_JOBS,
    ExecutionResult,
    ProgressCallback,
    run_plan,
)
from gens_fs.sync.listing import Side, fill_md5, list_files, list_side
from gens_fs.sync.plan import (
    GenKey,
    MembershipKeys,
    SyncPlan,
    SyncScope,
    TooManyDeletes,
    close_over_parents,
    delete_refusal,
    generation_of,
    hold_memberships,
    make_plan,
    memberships_to_read,
    metadata_relpath,
    parents_needed,
    parents_to_probe,
)
from gens_fs.sync.report import IgnoredEntry, PlannedAction, SyncError, SyncReport

log = logging.getLogger(__name__)

_EMPTY_SOURCE_HINT = (
    " (to sync an empty source on purpose, e.g. to empty the destination with --delete, "
    "pass --allow-empty-source)"
)


def sync(
    src: str | os.PathLike[str] | DataRoot,
    dst: str | os.PathLike[str] | DataRoot,
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
) -> SyncReport:
    """Make the data root ``dst`` hold what ``src`` holds, within the scope.

    ``src``/``dst``: data roots (holding ``gens/`` and ``cohorts/``): paths, fsspec URLs, or
    ``DataRoot``s (on a filesystem you built: ``DataRoot(path, fs=my_fs)``). ``engine``
    serves both sides' object stores (``"obstore"``: through obstore; local disk and memory
    are the same under either engine); for a different engine per side, pass
    ``DataRoot(url, engine=...)``s.
    Scope: everything by default; ``stages`` limits ``gens/`` to those stages (and leaves
    ``cohorts/`` out); ``cohort`` takes that cohort's ``membership.csv`` and exactly the
    generations it lists plus all their ancestors.

    Guarantees: unchanged files are not copied again (see :mod:`gens_fs.sync.compare`);
    at every moment, even if killed, a committed generation at ``dst`` (one with its
    ``metadata.json``) has all its files and a committed parent. A generation whose parent
    is neither at ``dst`` nor in the sync is held back (reported), and so is a membership
    CSV listing a held generation. The one exception, on request: ``allow_orphans`` copies
    as it is a generation whose parent is missing in ``src`` itself (a faithful mirror of a
    broken source); without it such an orphan is held, with a reason that says so.
    ``delete`` removes files in scope that ``src`` lacks, after every copy succeeded and
    only when nothing is held, children first. A plan deleting
    more than ``max_delete`` files, or without ``max_delete`` more than half of the
    destination's files in scope, is refused (``TooManyDeletes``, nothing changed). ``dry_run``
    changes nothing, lists the plan in ``SyncReport.actions`` and says in
    ``SyncReport.refused`` whether a real run would be refused. ``retry``: how every
    request of this sync, at either side, is retried after a transient error (default:
    each root's own policy; see :class:`~gens_fs.backends.retry.RetryPolicy`).

    ``src`` must look like a data root (``NotADataRoot`` otherwise, also for a gens root, a
    stage folder, ``cohorts/`` or a file); one that holds nothing at all is accepted only
    with ``allow_empty_source``. ``dst`` may be a data root, or a folder that is empty,
    absent or holds something else, but not a part of a data root (``NotADataRoot``);
    ``src`` and ``dst`` on one storage must not be the same folder nor one inside the other
    (``OverlappingRoots``). Symbolic links are
    not followed (with ``follow_symlinks``, those whose target stays inside the data root
    are); they, FIFOs, sockets and devices, and the source's stray entries are left alone
    and listed in ``SyncReport.ignored``.

    Raises ``StorageError`` for an unusable storage (bad URL, missing bucket or source
    directory, no credentials) and ``CohortNotFound`` for an unknown cohort; files that fail
    are reported in ``SyncReport.errors`` instead.
    """
    started = time.monotonic()
    source = _open(src, src_options, engine, retry)
    target = _open(dst, dst_options, engine, retry)
    _check_roots(source, target)
    require_data_root(
        source, what="source data root", allow_empty=allow_empty_source, if_empty=_EMPTY_SOURCE_HINT
    )

    prefetched: dict[str, bytes] = {}
    scope = _resolve_scope(source, stages, cohort, prefetched)
    src_side = list_side(source, scope.roots(), scope, follow_symlinks=follow_symlinks, strays=True)
    dst_roots = scope.roots() + scope.context_roots()
    dst_side = list_side(target, dst_roots, _everything, follow_symlinks=follow_symlinks)
    src_files, dst_files = _fill_hashes(source, target, src_side.files, dst_side.files, checksum)
    plan = _plan(
        source, scope, src_files, dst_files, prefetched, delete=delete, allow_orphans=allow_orphans
    )
    refused = delete_refusal(plan, max_delete)
    if refused is not None and not dry_run:
        raise TooManyDeletes(refused)
    _check_destination_writable(target, plan)

    report = _report_of_plan(source, target, plan, dry_run=dry_run)
    report.ignored = _ignored(scope, src_side, dst_side)
    if dry_run:
        _fill_dry_run(report, plan, refused)
    else:
        result = run_plan(
            plan,
            source.backend,
            target.backend,
            jobs=jobs or DEFAULT_JOBS,
            prefetched=prefetched,
            progress=progress,
        )
        _fill_result(report, plan, result)
        if verify:
            expected = _expected_at_destination(plan, src_files)
            problems = verify_copy(source, target, scope, expected, checksum=checksum)
            known = {e.path for e in report.errors}
            report.errors += [p for p in problems if p.path not in known]
            report.verified = not problems
    report.seconds = round(time.monotonic() - started, 3)
    return report


class OverlappingRoots(StorageError):
    """The source and destination are one folder, or one is inside the other, on one
    storage: a sync would copy a store into itself, or delete what it reads."""


def _plan(
    source: SyncBackend,
    scope: SyncScope,
    src_files: Mapping[str, FileEntry],
    dst_files: Mapping[str, FileEntry],
    prefetched: dict[str, bytes],
    *,
    delete: bool,
    allow_orphans: bool,
) -> SyncPlan:
    """Everything the sync will do, decided before anything is written (so a dry run shows
    exactly that). Reads, batched, the bytes kept in ``prefetched`` for the copy: the
    ``metadata.json`` of each essay and evaluation to commit (its parent); the stage of
    the parents that are outside the scope and not at the destination (one listing, only
    when there are any: is the parent in the source at all?); the membership CSVs to copy
    when a generation is copied or held (one GET each: which generations they list)."""
    parents = _read_parents(source, parents_needed(src_files, scope.filter(dst_files)), prefetched)
    probed = _committed_at_source(source, parents_to_probe(parents, dst_files, scope))
    plan = make_plan(
        src_files,
        dst_files,
        scope,
        parents=parents,
        delete=delete,
        allow_orphans=allow_orphans,
        probed=probed,
    )
    rows, unreadable = _read_memberships(source, memberships_to_read(plan), prefetched)
    return hold_memberships(plan, rows, unreadable)


def _report_of_plan(
    source: SyncBackend, target: SyncBackend, plan: SyncPlan, *, dry_run: bool
) -> SyncReport:
    """The report's planned part, the same for a dry run and a real one: what is skipped,
    what is held back and why, and the deletes withheld because of it."""
    held = [(h.relpath, h.reason) for h in plan.held]
    held += [(f.relpath, f.reason) for f in plan.held_files]
    return SyncReport(
        src=_display(source),
        dst=_display(target),
        dry_run=dry_run,
        skipped=plan.skipped,
        errors=[SyncError(path=path, error=f"not synced: {why}") for path, why in held],
        held=[f"{h.stage}/{h.gen_id}" for h in plan.held],
        held_memberships=[f.relpath for f in plan.held_files],
        deletes_skipped=bool(plan.withheld_deletes),
        deletes_not_run=len(plan.withheld_deletes),
    )


def _expected_at_destination(
    plan: SyncPlan, src_files: Mapping[str, FileEntry]
) -> dict[str, FileEntry]:
    """The source files a verify looks for at the destination: all but those the plan held
    back (already reported, each with why)."""
    held = {(h.stage, h.gen_id) for h in plan.held}
    held_files = {f.relpath for f in plan.held_files}
    return {
        relpath: entry
        for relpath, entry in src_files.items()
        if relpath not in held_files and generation_of(relpath) not in held
    }


def _fill_result(report: SyncReport, plan: SyncPlan, result: ExecutionResult) -> None:
    report.copied, report.bytes, report.deleted = result.copied, result.bytes, result.deleted
    report.errors += result.errors
    report.uncommitted = sorted(set(result.uncommitted))
    if result.deletes_skipped:
        report.deletes_skipped = True
        report.deletes_not_run += len(plan.delete_paths)


def _open(
    root: str | os.PathLike[str] | DataRoot,
    options: Mapping[str, Any] | None,
    engine: Engine,
    retry: RetryPolicy | None,
) -> SyncBackend:
    if isinstance(root, DataRoot):
        return root.backend if retry is None else root.backend.retried(retry)
    return SyncBackend(open_backend(root, storage_options=options, engine=engine, retry=retry))


class _Everything(SyncScope):
    def contains(self, relpath: str) -> bool:
        return True


_everything = _Everything()


def _ignored(scope: SyncScope, src_side: Side, dst_side: Side) -> list[IgnoredEntry]:
    """What each side's listing left alone, in scope (the destination is listed wider, for
    context: its entries outside the scope do not concern this sync)."""
    sides: tuple[tuple[Literal["source", "destination"], Side], ...] = (
        ("source", src_side),
        ("destination", dst_side),
    )
    return [
        IgnoredEntry(side=name, path=entry.path, reason=entry.reason)
        for name, side in sides
        for entry in side.ignored
        if scope.may_hold(entry.path)
    ]


def _fill_dry_run(report: SyncReport, plan: SyncPlan, refused: str | None) -> None:
    report.copied = len(plan.copies)
    report.bytes = plan.copy_bytes
    report.deleted = len(plan.delete_paths)
    report.actions = planned_actions(plan)
    report.refused = refused


def planned_actions(plan: SyncPlan) -> list[PlannedAction]:
    """The plan as a flat list in execution order (for dry runs)."""
    actions = [PlannedAction(action="copy", path=c.relpath, size=c.size) for c in plan.copies]
    actions += [PlannedAction(action="delete", path=p) for p in plan.delete_paths]
    return actions


def verify_copy(
    source: SyncBackend,
    target: SyncBackend,
    scope: SyncScope,
    src_files: Mapping[str, FileEntry],
    *,
    checksum: bool,
) -> list[SyncError]:
    """List the destination again; every source file in scope must be there with the same
    size and (where comparable) hash. Costs LIST pages (and local hashing)."""
    dst_files = list_files(target, scope.roots(), scope)
    src_checked, dst_checked = _fill_hashes(source, target, src_files, dst_files, checksum)
    problems = []
    for relpath, entry in sorted(src_checked.items()):
        found = dst_checked.get(relpath)
        if found is None:
            problems.append(SyncError(path=relpath, error="verify: missing at the destination"))
        elif not unchanged(entry, found):
            problems.append(SyncError(path=relpath, error="verify: differs at the destination"))
    return problems


def _fill_hashes(
    source: SyncBackend,
    target: SyncBackend,
    src_files: Mapping[str, FileEntry],
    dst_files: Mapping[str, FileEntry],
    checksum: bool,
) -> tuple[dict[str, FileEntry], dict[str, FileEntry]]:
    need_src, need_dst = hashes_needed(
        src_files,
        dst_files,
        src_reads=hash_by_reading(source.capabilities),
        dst_reads=hash_by_reading(target.capabilities),
        checksum=checksum,
    )
    return fill_md5(source, src_files, need_src), fill_md5(target, dst_files, need_dst)


def _check_roots(source: SyncBackend, target: SyncBackend) -> None:
    """Fail fast, before any listing of the stores: the same root twice, or one inside the
    other; a source that is a file; a destination that looks like a part of a data root (a
    gens root, a stage folder, ``cohorts/``, a generation folder). The destination's check
    is one first-level listing: on a remote one it also catches a missing bucket or an
    endpoint that does not answer, bounded in time (the source gets the same from
    ``require_data_root``)."""
    _refuse_overlap(source, target)
    if source.blocked_folder([source.root]) is not None:
        raise NotADataRoot(
            f"source data root {_display(source)} is a file, not a folder: give the folder "
            "that holds gens/ and cohorts/"
        )
    if target.blocked_folder([target.root]) is None:  # else: _check_destination_writable
        refuse_misplaced_root(target, what="destination data root")


def _refuse_overlap(source: SyncBackend, target: SyncBackend) -> None:
    """``OverlappingRoots`` for two roots on one storage that are the same folder once
    normalised (``data/gens/..`` is ``data``; on local disk through symbolic links too) or
    one inside the other."""
    if source.backend.service != target.backend.service:
        return
    src, dst = _display(source), _display(target)
    where = roots_overlap(_resolved(source), _resolved(target))
    if where == "same":
        both = src if src == dst else f"{src} and {dst}"
        raise OverlappingRoots(f"source and destination are the same data root: {both}")
    if where == "inside":
        raise OverlappingRoots(
            f"source data root {src} is inside the destination data root {dst}: a sync could "
            "write over or delete what it reads; choose a source and a destination apart"
        )
    if where == "contains":
        raise OverlappingRoots(
            f"destination data root {dst} is inside the source data root {src}: a sync would "
            "copy the source into itself; choose a destination outside it"
        )


def _resolved(backend: SyncBackend) -> str:
    """The root as the storage resolves it: on local disk through symbolic links."""
    return backend.backend.resolved(backend.root)


def _check_destination_writable(target: SyncBackend, plan: SyncPlan) -> None:
    """Refuse, before anything is written, a destination where a file stands in the place of
    a folder the plan writes into (the destination root, or a folder above it, included):
    every copy below it would fail, one error line per file."""
    folders = {join(target.root, folder) for c in plan.copies for folder in ancestors(c.relpath)}
    blocked = target.blocked_folder({target.root, *folders})
    if blocked is not None:
        raise StorageError(
            f"cannot sync into {_display(target)}: {target.url(blocked)} is a file where a "
            "folder must be; move it away or choose another destination (nothing was written)"
        )


def _resolve_scope(
    source: SyncBackend,
    stages: Iterable[str] | None,
    cohort: str | None,
    prefetched: dict[str, bytes],
) -> SyncScope:
    """The scope; for a cohort, its rows and their ancestors, read from the source."""
    if cohort is None:
        return SyncScope.build(stages)
    relpath = membership_path(cohort)
    path = join(source.root, relpath)
    # The listing first: a missing bucket is a StorageError, not "no such cohort".
    source.listing_info_many([join(source.root, relpath.rsplit("/", 1)[0])])
    data = source.read_many([path])[path]
    if data is None:
        raise CohortNotFound(f"no cohort {cohort!r} in the source: {path} does not exist")
    prefetched[relpath] = data  # copied as read; its rows are known to the plan
    chosen = set(stages or ())
    rows = [
        (row.stage, row.gen_id)
        for row in parse_membership(data, where=path)
        if not chosen or row.stage in chosen
    ]

    def read_parents(keys: list[GenKey]) -> dict[GenKey, str | None]:
        found = _read_parents(source, [metadata_relpath(k) for k in keys], prefetched)
        return {key: found.get(key) for key in keys}

    return SyncScope.build(
        stages, cohort=cohort, generations=close_over_parents(rows, read_parents)
    )


def _prefetch(
    source: SyncBackend, relpaths: list[str], prefetched: dict[str, bytes]
) -> dict[str, str]:
    """Read the files of ``relpaths`` not in ``prefetched`` yet into it (one batched read).
    Returns the ones that could not be read, with why: a transient failure (after the
    backend's retries) is that, not a failure of the whole sync; any other failure raises.
    A missing file stays out of both."""
    paths = {r: join(source.root, r) for r in relpaths if r not in prefetched}
    data = source.read_each(list(paths.values())) if paths else {}
    unreadable: dict[str, str] = {}
    for relpath, path in paths.items():
        blob = data.get(path)
        if isinstance(blob, Exception):
            if not is_transient(blob):
                source.raise_for(blob)
            log.warning("sync: cannot read %s: %s", relpath, blob)
            unreadable[relpath] = f"{type(blob).__name__}: {blob}"
        elif blob is not None:
            prefetched[relpath] = blob
    return unreadable


def _read_parents(
    source: SyncBackend, metadata_relpaths: list[str], prefetched: dict[str, bytes]
) -> dict[GenKey, str | None]:
    """``parent_gen_id`` from each source ``metadata.json`` (one batched read; the bytes are
    kept in ``prefetched`` for the copy): ``""`` when it names none, ``None`` when it could
    not be read (see :data:`gens_fs.sync.plan.ParentIds`)."""
    _prefetch(source, metadata_relpaths, prefetched)
    out: dict[GenKey, str | None] = {}
    for relpath in metadata_relpaths:
        key = generation_of(relpath)
        if key is not None:
            out[key] = _parent_id(prefetched.get(relpath))
    return out


def _parent_id(blob: bytes | None) -> str | None:
    if blob is None:
        return None
    try:
        value = json.loads(blob).get("parent_gen_id")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _committed_at_source(source: SyncBackend, parents: list[GenKey]) -> dict[GenKey, bool]:
    """Whether the source has each of ``parents`` committed: one listing of each of their
    stages (LIST pages on S3, side by side), only when there are any."""
    if not parents:
        return {}
    stages = SyncScope.build(sorted({stage for stage, _gen_id in parents}))
    found = list_files(source, stages.roots(), stages)
    return {parent: metadata_relpath(parent) in found for parent in parents}


def _read_memberships(
    source: SyncBackend, relpaths: list[str], prefetched: dict[str, bytes]
) -> tuple[dict[str, MembershipKeys], dict[str, str]]:
    """The generations each membership CSV lists (``None``: it does not parse), read once
    (the bytes are kept for the copy), and those that could not be read, with why."""
    unreadable = _prefetch(source, relpaths, prefetched)
    rows: dict[str, MembershipKeys] = {}
    for relpath in relpaths:
        blob = prefetched.get(relpath)
        if blob is None:
            continue
        try:
            rows[relpath] = [(r.stage, r.gen_id) for r in parse_membership(blob, where=relpath)]
        except GensError:
            rows[relpath] = None  # not this sync's to judge: copied as it is
    return rows, unreadable


def _display(backend: SyncBackend) -> str:
    return backend.url(backend.root)
