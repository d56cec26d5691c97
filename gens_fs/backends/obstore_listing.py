"""Listing a prefix through obstore: one chain of pages, or one page per shard.

A shard of :mod:`gens_fs.backends.sharded` is asked for with a ``Prefix`` and a
``StartAfter``. obstore's ``list(store, prefix, offset=...)`` maps to both, with two
differences this module bridges:

* obstore's ``prefix`` is a whole path segment (``gens/essay`` lists ``gens/essay/...``,
  never ``gens/essay1``), so a shard's prefix (``gens/essay/1``) is asked for as its folder
  with an ``offset`` just before it, and what the page holds beyond it is dropped;
* the ``offset`` must parse as an object_store path (no empty, ``.`` or ``..`` segment, no
  ASCII control character), which a ``StartAfter`` such as ``gens/essay//\\U0010ffff`` does
  not: such an offset is cut back to the longest start of it that parses. A start sorts
  before the string, so the listing holds every key after it, and some before, dropped
  here (a page of nothing but those: the next page, after its last key).

One page is one request: obstore fetches a page when the stream is polled for more items
than it holds, so the first chunk of :data:`LIST_CHUNK` (S3's and GCS's page size) is the
first ListObjectsV2 page, and dropping the stream sends nothing more (both counted against
the middleware in front of moto, ``tests/test_sharded_listing.py``). A full chunk is
"maybe more": at worst one extra, empty listing, never a key missed.

Only stores whose listing takes a ``StartAfter`` are sharded (:data:`SHARDED_KINDS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import obstore

from gens_fs.backends.base import FileInfo
from gens_fs.backends.file_table import FileTable, FileTableBuilder
from gens_fs.backends.sharded import Page, Shard, key_before

# A listing page: S3 and GCS answer at most 1,000 keys per request.
LIST_CHUNK: Final = 1000
# Stores listed in shards: object_store sends ``offset`` to S3 and to GCS (its XML API) as
# ``start-after``. Azure's List Blobs has no start-after (only an opaque marker):
# object_store lists the whole container prefix there and drops the keys before the offset
# client side, so a shard would cost the chain it replaces: an Azure prefix stays one chain.
SHARDED_KINDS: Final = frozenset({"s3", "gcs"})


def list_chain(store: Any, folder: str, bucket: str, with_etag: bool) -> FileTable:
    """Every object under ``folder`` (all for ``""``), page by page in one chain, as
    ``bucket`` + its path. Blocking."""
    out = FileTableBuilder()
    for chunk in obstore.list(store, folder or None, chunk_size=LIST_CHUNK):
        for meta in chunk:
            out.add(bucket + meta["path"], _info(meta, with_etag))
    return out.build()


def first_page(store: Any, folder: str, shard: Shard, with_etag: bool) -> Page[FileInfo]:
    """The first page of ``shard`` (its keys under ``folder``): one listing request, more
    only while a page holds nothing but keys before the shard (an offset cut back, see the
    module docstring). Keys are the store's paths, without the bucket. Blocking."""
    lower = shard.start_after
    if lower is None and shard.prefix != (f"{folder}/" if folder else ""):
        lower = key_before(shard.prefix)  # a deeper prefix: from its first key on
    offset = None if lower is None else path_at_most(lower)
    while True:
        chunk: Sequence[Any] = next(
            iter(obstore.list(store, folder or None, offset=offset, chunk_size=LIST_CHUNK)), []
        )
        entries = [
            (meta["path"], _info(meta, with_etag))
            for meta in chunk
            if meta["path"].startswith(shard.prefix) and (lower is None or meta["path"] > lower)
        ]
        if len(chunk) < LIST_CHUNK:
            return Page(entries, False)
        last: str = chunk[-1]["path"]
        if last >= shard.prefix and (lower is None or last > lower):
            return Page(entries, last.startswith(shard.prefix))
        # A full page of keys before the shard (none kept): on after its last key, a
        # listed key, so a path object_store parses.
        offset = last


def path_at_most(key: str) -> str | None:
    """``key``, or the longest start of it that object_store accepts as a path (``None``
    when none is): ASCII control characters and empty, ``.`` and ``..`` segments are
    refused, and a trailing ``/`` is dropped (which keeps it a start of ``key``)."""
    cut = next((i for i, c in enumerate(key) if ord(c) < 0x20 or ord(c) == 0x7F), len(key))
    kept: list[str] = []
    for segment in key[:cut].split("/"):
        if segment in ("", ".", ".."):
            break
        kept.append(segment)
    return "/".join(kept) or None


def _info(meta: Any, with_etag: bool) -> FileInfo:
    return FileInfo(int(meta["size"]), _unquote(meta["e_tag"]) if with_etag else None)


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') or None if etag else None
