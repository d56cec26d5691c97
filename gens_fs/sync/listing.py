"""Listing both sides of a sync: one recursive listing per scope root (concurrent on S3),
no request per file.

``list_files`` gives ``{relpath: FileEntry}`` relative to the data root, with the S3 ETag
when the backend is S3 (ListObjectsV2 pages only: no HEAD, no GET); ``list_side`` also what
the listing left out: symbolic links and special files (never read, see
:meth:`gens_fs.backend.LocalBackend.scan`) and, when asked, the stray entries under
``gens/`` that are outside every scope. ``fill_md5`` then hashes
the few files the comparison needs (see :func:`gens_fs.sync.compare.hashes_needed`): on local
disk and in memory that reads the file, costing no request; on S3 (only with ``checksum``) it
is one GET per file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gens_fs.backend import Backend, Ignored, LocalBackend, open_regular
from gens_fs.errors import SpecialFile
from gens_fs.layout import Stray, classify_gens_file, join, relpath_under
from gens_fs.sync.compare import FileEntry
from gens_fs.sync.plan import SyncScope, visible

_HASH_BATCH = 256
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Side:
    """One side's listing: files in scope by relpath, and the entries left out (relpaths)."""

    files: dict[str, FileEntry]
    ignored: list[Ignored]


def list_side(
    backend: Backend,
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
    while found:
        # popitem frees each full-path key as its relpath replaces it: a million-file
        # listing never holds both spellings at once.
        path, info = found.popitem()
        relpath = relpath_under(backend.root, path)
        if relpath is None or not visible(relpath):
            continue
        if scope.contains(relpath):
            files[relpath] = FileEntry(info.size, info.etag)
        elif strays and isinstance(stray := classify_gens_file(relpath), Stray):
            found_strays.setdefault(stray.path, stray.reason)
    ignored = [
        Ignored(relpath, entry.reason)
        for entry in scan.ignored
        if (relpath := relpath_under(backend.root, entry.path)) is not None and visible(relpath)
    ]
    ignored += [Ignored(p, f"stray: {reason}") for p, reason in sorted(found_strays.items())]
    return Side(files, [entry for entry in ignored if scope.may_hold(entry.path)])


def list_files(backend: Backend, roots: Iterable[str], scope: SyncScope) -> dict[str, FileEntry]:
    """The files of :func:`list_side`."""
    return list_side(backend, roots, scope).files


def fill_md5(
    backend: Backend, listing: Mapping[str, FileEntry], relpaths: Iterable[str]
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


def _md5_many(backend: Backend, relpaths: list[str]) -> dict[str, str]:
    paths = {r: join(backend.root, r) for r in relpaths}
    if isinstance(backend, LocalBackend):
        out = {}
        for relpath, path in paths.items():
            try:
                out[relpath] = _md5_local(path)
            except (FileNotFoundError, SpecialFile):  # changed since the listing
                continue
        return out
    data = backend.read_many(list(paths.values()))
    return {
        relpath: hashlib.md5(blob).hexdigest()
        for relpath, path in paths.items()
        if (blob := data[path]) is not None
    }


def _md5_local(path: str) -> str:
    digest = hashlib.md5()
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
