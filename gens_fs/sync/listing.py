"""Listing both sides of a sync: one recursive listing per scope root, no request per file.

``list_files`` gives ``{relpath: FileEntry}`` relative to the data root, with the S3 ETag
when the backend is S3 (ListObjectsV2 pages only: no HEAD, no GET). ``fill_md5`` then hashes
the few files the comparison needs (see :func:`gens_fs.sync.compare.hashes_needed`): on local
disk and in memory that reads the file, costing no request; on S3 (only with ``checksum``) it
is one GET per file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from gens_fs.backend import Backend, LocalBackend
from gens_fs.layout import join
from gens_fs.sync.compare import FileEntry
from gens_fs.sync.plan import SyncScope, visible

_HASH_BATCH = 256
_CHUNK = 1 << 20


def list_files(backend: Backend, roots: Iterable[str], scope: SyncScope) -> dict[str, FileEntry]:
    """Every file in ``scope`` under the ``roots`` (relpaths of the data root), by relpath.
    Hidden and temporary files (a leading ``.``) and stray files are left out."""
    base = join(backend.root, "")
    out: dict[str, FileEntry] = {}
    for root in roots:
        for path, info in backend.listing_info(join(backend.root, root)).items():
            if path.startswith(base):
                relpath = path[len(base) :]
                if visible(relpath) and scope.contains(relpath):
                    out[relpath] = FileEntry(info.size, info.etag)
    return out


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
            except FileNotFoundError:
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
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
