"""The two listings of a sync, taken at once: the local side scanned and hashed while the
remote side's listing pages arrive.

Listing a remote side is mostly waiting (its pages come one round trip apart), and on
local disk scanning and hashing is work done in this process. :func:`list_sides` starts
every side that is not local disk listing on the event loop, then, in the caller's
thread, scans the local side (if any) and hashes its files in scope that a comparison by
MD5 may need, until the other side's listing is in. Against a side whose listing
carries MD5s (S3's ETags...), the local side is listed with the MD5s its hash cache
knows (:meth:`~gens_fs.backends.base.Backend.with_known_md5s`: the walk's own ``stat``
checked against the cache, for the files that have not changed since they were hashed:
:mod:`gens_fs.backends.local_hashes`), so only the changed and new files are hashed.
Two remote sides are listed side by side: the wait is the longer of the two, not their
sum.

What is listed, compared and copied does not change; only when. A file hashed while
waiting may turn out not to need it (the other side lacks it, or has another size): such
hashing only happens while there is nothing else to do, and stops as soon as the other
side's listing is in. :func:`gens_fs.sync.source.fill_hashes` then hashes whatever the
comparison still needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gens_fs.backends import Scan, SyncBackend
from gens_fs.backends.file_table import FileTable
from gens_fs.backends.loop import Pending
from gens_fs.layout import join
from gens_fs.listing import Listing, list_data_root, listing_of, scan_paths
from gens_fs.sync.compare import hash_by_reading
from gens_fs.sync.scope import SyncScope
from gens_fs.sync.source import SourceReads

# Local files hashed between two looks at whether the other side's listing is in.
_CHUNK = 256

_NOTHING = Listing(FileTable.of(()))


@dataclass
class _Side:
    backend: SyncBackend
    folders: tuple[str, ...]
    pending: Pending[Scan] | None = None
    listing: Listing | None = None
    hashes: dict[str, str] = field(default_factory=dict)


def list_sides(
    reads: SourceReads,
    target: SyncBackend,
    scope: SyncScope,
    *,
    follow_symlinks: bool = False,
    checksum: bool = False,
    dst_empty: bool = False,
) -> tuple[Listing, Listing]:
    """The source's listing of the scope and the destination's (wider: the ancestor stages
    outside the scope, for context), as :func:`~gens_fs.listing.list_data_root` gives
    them; local files in scope may carry their MD5 already (see the module).
    ``dst_empty``: the destination was just seen empty (the roots' check): not listed,
    unless a cluster lists (its workers' listing is their first touch of the destination:
    what they cannot reach is one error there, before anything is copied).

    Listed by ``reads``' lister, one side after the other, when that is not this process
    (a cluster lists: nothing here to overlap) or when planning listed some of the
    source's folders already (a selection's stages): those are not listed twice."""
    dst_folders = scope.roots() + scope.context_roots()
    if reads.lister is not list_data_root:
        src_listing = reads.listing(scope.roots(), follow_symlinks=follow_symlinks)
        return src_listing, reads.lister(target, dst_folders, follow_symlinks=follow_symlinks)
    dst_folders = () if dst_empty else dst_folders
    if reads.has_listed(scope.roots()):
        src_listing = reads.listing(scope.roots(), follow_symlinks=follow_symlinks)
        if not dst_folders:
            return src_listing, _NOTHING
        return src_listing, list_data_root(target, dst_folders, follow_symlinks=follow_symlinks)
    sides = (_Side(reads.source, scope.roots()), _Side(target, dst_folders))
    try:
        for side in sides:
            if not side.folders:
                side.listing = _NOTHING
            elif not side.backend.backend.runs_inline:
                paths = scan_paths(side.backend, side.folders)
                side.pending = side.backend.scan_started(paths, follow_symlinks=follow_symlinks)
        for side, other in (sides, sides[::-1]):
            if side.pending is None and side.listing is None:
                side.listing = list_data_root(
                    _lister(side.backend, other.backend, checksum),
                    side.folders,
                    follow_symlinks=follow_symlinks,
                )
                if _compares_by_md5(side.backend, other.backend, checksum):
                    _hash_while_waiting(side, scope, other, checksum)
        for side in sides:
            if side.pending is not None:
                pending, side.pending = side.pending, None
                side.listing = listing_of(side.backend, pending.result())
    finally:
        for side in sides:
            if side.pending is not None:  # an error before it was collected
                side.pending.cancel()
    return _with_hashes(sides[0]), _with_hashes(sides[1])


def _compares_by_md5(side: SyncBackend, other: SyncBackend, checksum: bool) -> bool:
    """Whether ``side``'s files will be hashed for a comparison (as
    :func:`~gens_fs.sync.compare.hashes_needed` decides for files of the same size): it
    hashes by reading and the other side has, or will have, an MD5."""
    if side.capabilities.listing_hash is not None or not hash_by_reading(side.capabilities):
        return False
    theirs = other.capabilities
    return checksum or theirs.listing_hash is not None or hash_by_reading(theirs)


def _lister(side: SyncBackend, other: SyncBackend, checksum: bool) -> SyncBackend:
    """How to list ``side``: with the MD5s it knows without reading (its hash cache's,
    for the files unchanged since they were hashed) when each of its files the other
    side has with the same size will be compared by MD5, because the other side's listing
    carries one; as it is with ``checksum`` (every file is read) or against a side that
    hashes by reading too (only the files of the same size at both sides are hashed)."""
    if checksum or other.capabilities.listing_hash is None:
        return side
    return side.with_known_md5s() if _compares_by_md5(side, other, checksum) else side


def _hash_while_waiting(side: _Side, scope: SyncScope, other: _Side, fresh: bool) -> None:
    """Hash the files in ``scope`` of the local ``side`` that its listing gave no MD5,
    a chunk at a time, while ``other``'s listing is still on its way (none when it is
    local too: then nothing is waited for)."""
    if other.pending is None or side.listing is None:
        return
    relpaths = [r for r in FileTable.of(side.listing.files).unhashed() if scope.contains(r)]
    for start in range(0, len(relpaths), _CHUNK):
        if other.pending is None or other.pending.done():
            return
        paths = {join(side.backend.root, r): r for r in relpaths[start : start + _CHUNK]}
        for path, digest in side.backend.md5_many(list(paths), fresh=fresh).items():
            side.hashes[paths[path]] = digest


def _with_hashes(side: _Side) -> Listing:
    assert side.listing is not None
    if not side.hashes:
        return side.listing
    files = FileTable.of(side.listing.files).with_hashes(side.hashes)
    return Listing(files, side.listing.ignored)
