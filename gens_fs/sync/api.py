"""``gens_fs.sync``: mirror one data root onto another, incrementally and in lineage order.

The steps, and what each costs on S3:

0. the source must look like a data root (one ``ListObjectsV2`` of its first level; see
   :func:`gens_fs.inventory.require_data_root`);
1. scope: for ``cohort``, the source's ``membership.csv`` (one LIST, one GET) and the
   ``metadata.json`` of the listed generations and their ancestors (one GET each, batched
   per lineage level; those bytes are reused for the copy);
2. listing: one recursive listing per scope root and side (LIST pages only);
3. comparison (:mod:`gens_fs.sync.compare`): local files hashed where needed, no request;
4. parents: the source ``metadata.json`` of each essay/evaluation about to be committed (one
   GET each, reused for the copy, so no extra request in the end for cross-storage syncs);
5. the pure plan (:mod:`gens_fs.sync.plan`), its deletes checked before any write
   (``max_delete``, or more than half of the destination's files in scope);
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
from gens_fs.cohorts import DataRoot, parse_membership
from gens_fs.errors import CohortNotFound, StorageError
from gens_fs.inventory import require_data_root
from gens_fs.layout import COHORTS_DIR, GENS_DIR, ancestors, join, membership_path
from gens_fs.sync.compare import FileEntry, hash_by_reading, hashes_needed, unchanged
from gens_fs.sync.execute import (
    DEFAULT_JOBS,
    ProgressCallback,
    RetryPolicy,
    is_transient,
    run_plan,
)
from gens_fs.sync.listing import Side, fill_md5, list_files, list_side
from gens_fs.sync.plan import (
    GenKey,
    SyncPlan,
    SyncScope,
    TooManyDeletes,
    close_over_parents,
    delete_refusal,
    generation_of,
    make_plan,
    metadata_relpath,
    parents_needed,
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
    ``metadata.json``) has all its files and a committed parent. ``delete`` removes files in
    scope that ``src`` lacks, after every copy succeeded, children first. A plan deleting
    more than ``max_delete`` files, or without ``max_delete`` more than half of the
    destination's files in scope, is refused (``TooManyDeletes``, nothing changed). ``dry_run``
    changes nothing, lists the plan in ``SyncReport.actions`` and says in
    ``SyncReport.refused`` whether a real run would be refused. ``retry`` sets the
    file-level retries of transient errors (on top of the storage client's own retries).

    ``src`` must look like a data root (``NotADataRoot`` otherwise, also for a gens root);
    one that holds nothing is accepted only with ``allow_empty_source``. Symbolic links are
    not followed (with ``follow_symlinks``, those whose target stays inside the data root
    are); they, FIFOs, sockets and devices, and the source's stray entries are left alone
    and listed in ``SyncReport.ignored``.

    Raises ``StorageError`` for an unusable storage (bad URL, missing bucket or source
    directory, no credentials) and ``CohortNotFound`` for an unknown cohort; files that fail
    are reported in ``SyncReport.errors`` instead.
    """
    started = time.monotonic()
    source = _open(src, src_options, engine)
    target = _open(dst, dst_options, engine)
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

    parents = _read_parents(source, parents_needed(src_files, scope.filter(dst_files)), prefetched)
    plan = make_plan(src_files, dst_files, scope, parents=parents, delete=delete)
    refused = delete_refusal(plan, max_delete)
    if refused is not None and not dry_run:
        raise TooManyDeletes(refused)
    _check_destination_writable(target, plan)

    report = SyncReport(src=_display(source), dst=_display(target), dry_run=dry_run)
    report.ignored = _ignored(scope, src_side, dst_side)
    report.skipped = plan.skipped
    report.errors = [SyncError(path=h.relpath, error=f"not synced: {h.reason}") for h in plan.held]
    report.held = [f"{h.stage}/{h.gen_id}" for h in plan.held]
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
            retry=retry,
        )
        report.copied, report.bytes, report.deleted = result.copied, result.bytes, result.deleted
        report.errors += result.errors
        report.uncommitted = sorted(set(result.uncommitted))
        report.deletes_skipped = result.deletes_skipped
        if verify:
            problems = verify_copy(source, target, scope, src_files, checksum=checksum)
            known = {e.path for e in report.errors}
            report.errors += [p for p in problems if p.path not in known]
            report.verified = not problems
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _open(
    root: str | os.PathLike[str] | DataRoot, options: Mapping[str, Any] | None, engine: Engine
) -> SyncBackend:
    if isinstance(root, DataRoot):
        return root.backend
    return SyncBackend(open_backend(root, storage_options=options, engine=engine))


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
    """Fail fast, before any listing: the same root twice; on a remote destination a missing
    bucket or an endpoint that does not answer (one first-level listing, bounded in time;
    the source gets the same, and an absent source folder, from ``require_data_root``)."""
    if source.same_root(target):
        raise StorageError(f"source and destination are the same data root: {source.root}")
    if target.costs_requests:
        target.children(target.root, stop_at=(GENS_DIR, COHORTS_DIR))


def _check_destination_writable(target: SyncBackend, plan: SyncPlan) -> None:
    """Refuse, before anything is written, a destination where a file stands in the place of
    a folder the plan writes into (the destination root itself included): every copy below
    it would fail, one error line per file."""
    folders = {join(target.root, folder) for c in plan.copies for folder in ancestors(c.relpath)}
    blocked = target.file_in_the_way({target.root, *folders})
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


def _read_parents(
    source: SyncBackend, metadata_relpaths: list[str], prefetched: dict[str, bytes]
) -> dict[GenKey, str | None]:
    """``parent_gen_id`` from each source ``metadata.json`` (one batched read; the bytes are
    kept in ``prefetched`` for the copy). Unreadable or missing ones map to ``None`` (so the
    plan holds their generation back and reports it); a transient read failure is one of
    those, not a failure of the whole sync."""
    wanted = [r for r in metadata_relpaths if r not in prefetched]
    paths = {r: join(source.root, r) for r in wanted}
    data = source.read_each(list(paths.values())) if paths else {}
    for relpath, path in paths.items():
        blob = data.get(path)
        if isinstance(blob, Exception):
            if not is_transient(blob):
                source.raise_for(blob)
            log.warning("sync: cannot read %s: %s", relpath, blob)
        elif blob is not None:
            prefetched[relpath] = blob
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
        return None
    return value if isinstance(value, str) and value else None


def _display(backend: SyncBackend) -> str:
    return backend.url(backend.root)
