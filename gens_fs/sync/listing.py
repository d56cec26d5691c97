"""Listing both sides of a sync: one recursive listing per scope root (concurrent on S3),
no request per file.

``list_files`` gives ``{relpath: FileEntry}`` relative to the data root, with the hash the
listing carries, as the backend declares it (``Capabilities.listing_hash``: the S3 ETag,
the Azure Content-MD5; ListObjectsV2 / List Blobs pages only, no request per file);
``list_side`` also what the listing left out: symbolic links and special files (never read,
see :meth:`gens_fs.backends.local.LocalBackend.scan`) and, when asked, the stray entries
under ``gens/`` that are outside every scope. ``fill_md5`` then hashes the few files the
comparison needs (see :func:`gens_fs.sync.compare.hashes_needed`), each streamed: on local
disk and in memory that costs no request; elsewhere one GET per file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gens_fs.backends import Ignored, SyncBackend
from gens_fs.layout import Stray, classify_gens_file, join, relpath_under
from gens_fs.sync.compare import FileEntry, listed_entry
from gens_fs.sync.plan import SyncScope, visible

_HASH_BATCH = 256


@dataclass(frozen=True)
class Side:
    """One side's listing: files in scope by relpath, and the entries left out (relpaths)."""

    files: dict[str, FileEntry]
    ignored: list[Ignored]


def list_side(
    backend: SyncBackend,
    roots: Iterable[str],
    scope: SyncScope,
    *,
    follow_symlinks: bool = False,
    strays: bool = False,
) -> Side:
    """Every file in ``scope`` under the ``roots`` (relpaths of the data root), by relpath.
    Hidden and temporary files (a leading ``.``) are left out silently; symbolic links and
    special files with a reason, and with ``strays`` each stray entry (once per folder)."""
    files: dict[str, FileEntry] = {}
    found_strays: dict[str, str] = {}
    scan = backend.scan([join(backend.root, r) for r in roots], follow_symlinks=follow_symlinks)
    found = scan.files
    kind = backend.capabilities.listing_hash
    while found:
        # popitem frees each full-path key as its relpath replaces it: a million-file
        # listing never holds both spellings at once.
        path, info = found.popitem()
        relpath = relpath_under(backend.root, path)
        if relpath is None or not visible(relpath):
            continue
        if scope.contains(relpath):
            files[relpath] = listed_entry(info.size, info.hash, kind)
        elif strays and isinstance(stray := classify_gens_file(relpath), Stray):
            found_strays.setdefault(stray.path, stray.reason)
    ignored = [
        Ignored(relpath, entry.reason)
        for entry in scan.ignored
        if (relpath := relpath_under(backend.root, entry.path)) is not None and visible(relpath)
    ]
    ignored += [Ignored(p, f"stray: {reason}") for p, reason in sorted(found_strays.items())]
    return Side(files, [entry for entry in ignored if scope.may_hold(entry.path)])


def list_files(
    backend: SyncBackend, roots: Iterable[str], scope: SyncScope
) -> dict[str, FileEntry]:
    """The files of :func:`list_side`."""
    return list_side(backend, roots, scope).files


def fill_md5(
    backend: SyncBackend, listing: Mapping[str, FileEntry], relpaths: Iterable[str]
) -> dict[str, FileEntry]:
    """``listing`` with the MD5 of each of ``relpaths`` filled in (files that vanished since
    the listing keep no hash, so they compare by size)."""
    out = dict(listing)
    wanted = [r for r in relpaths if r in out]
    for start in range(0, len(wanted), _HASH_BATCH):
        batch = wanted[start : start + _HASH_BATCH]
        for relpath, digest in _md5_many(backend, batch).items():
            out[relpath] = FileEntry(out[relpath].size, out[relpath].etag, digest)
    return out


def _md5_many(backend: SyncBackend, relpaths: list[str]) -> dict[str, str]:
    paths = {join(backend.root, r): r for r in relpaths}
    return {paths[path]: digest for path, digest in backend.md5_many(list(paths)).items()}
