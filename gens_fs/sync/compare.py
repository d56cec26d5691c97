"""What "unchanged" means: comparing a source file with its destination copy from listings.

Pure. A file is copied unless both sides have it with the same size *and*, where a content
hash is known on both sides, the same hash. Modification times are never trusted: a
same-size edit that kept an old mtime is still caught.

Which hash, is decided from what each backend declares, never from its type
(``Capabilities.listing_hash``, and whether reading costs a request), as rclone picks the
overlap of two backends' hashes. Both declared listing hashes are MD5s of the bytes: an S3
ETag (``"md5"``) for a single-part upload, an Azure Content-MD5 (``"content-md5"``) where the
blob has one. A side without one gets it by hashing the file where reading costs no request
(local disk, memory). So:

======================  ===================================================================
source / destination    compared (default)
======================  ===================================================================
local/memory - S3       size + local MD5 against the ETag (single-part objects)
local/memory - Azure    size + local MD5 against the Content-MD5
S3 - S3                 size + ETag equality (single-part, or identical multipart ETags)
S3 - Azure              size + ETag against the Content-MD5
local - local/memory    size + MD5 of both sides
multipart ETag ("-")    size only: such an ETag is not the MD5 of the bytes
Azure blob, no MD5      read and hashed (one GET): nothing else in its listing tells a change
other fsspec backends   size only (their listings carry no hash we trust)
======================  ===================================================================

``checksum=True`` ("--checksum") makes every comparison a content comparison: files whose
listing has no usable hash (multipart objects, other backends) are read and hashed (one GET
each on S3). Caveat: objects encrypted with SSE-KMS have single-part ETags that are not MD5s,
so against local files they look changed and are copied again on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gens_fs.backends import Capabilities, ListingHash


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file in a listing: its size, the S3 ETag (unquoted) when the listing had one, and
    its MD5 (hex) when known (from an Azure listing's Content-MD5, or hashed)."""

    size: int
    etag: str | None = None
    md5: str | None = None


Listing = Mapping[str, FileEntry]
"""Files under a data root by relative path (``gens/essay/e1/raw.txt``)."""


def listed_entry(size: int, listed: str | None, kind: ListingHash | None) -> FileEntry:
    """A listed file as compared: what its listing's hash is depends on ``kind``."""
    if kind == "md5":
        return FileEntry(size, etag=listed)  # an MD5 only for a single-part upload
    if kind == "content-md5":
        return FileEntry(size, md5=listed)
    return FileEntry(size)


def hash_by_reading(capabilities: Capabilities) -> bool:
    """Whether a file of this side whose listing gives no MD5 is read and hashed when the
    other side has one to compare with: where reading costs no request (local disk,
    memory), and where the listing declares a Content-MD5 (an Azure blob uploaded without
    one: nothing else tells a change). Not for an S3 multipart ETag (size only, as for
    other fsspec backends; ``--checksum`` reads them)."""
    return not capabilities.costs_requests or capabilities.listing_hash == "content-md5"


def is_multipart(entry: FileEntry) -> bool:
    """True for an S3 ETag of a multipart upload (``<md5 of part md5s>-<parts>``)."""
    return entry.etag is not None and "-" in entry.etag


def content_hash(entry: FileEntry) -> str | None:
    """The MD5 of the bytes, when known: hashed, or a single-part ETag."""
    if entry.md5 is not None:
        return entry.md5
    if entry.etag is not None and not is_multipart(entry):
        return entry.etag.lower()
    return None


def unchanged(src: FileEntry, dst: FileEntry) -> bool:
    """True when ``dst`` may be taken for a copy of ``src`` (see the module table)."""
    if src.size != dst.size:
        return False
    src_hash, dst_hash = content_hash(src), content_hash(dst)
    if src_hash is not None and dst_hash is not None:
        return src_hash == dst_hash
    if src.etag is not None and dst.etag is not None and src.etag == dst.etag:
        return True  # the same multipart ETag: same parts, same bytes
    return True  # no comparable hash: size only


def hashes_needed(
    src: Listing,
    dst: Listing,
    *,
    src_reads: bool,
    dst_reads: bool,
    checksum: bool,
) -> tuple[list[str], list[str]]:
    """The relpaths to hash on each side before comparing: only files both sides have with
    the same size (a size difference decides alone) and whose listing gives no hash.

    A side's file is hashed when that side hashes by reading (``*_reads``: see
    :func:`hash_by_reading`) and the other side has, or will have, a hash to compare with;
    with ``checksum`` always.
    """
    need_src: list[str] = []
    need_dst: list[str] = []
    for relpath, s in src.items():
        d = dst.get(relpath)
        if d is None or d.size != s.size:
            continue
        src_hash, dst_hash = content_hash(s), content_hash(d)
        if src_hash is not None and dst_hash is not None:
            continue
        dst_will_have = dst_hash is not None or dst_reads or checksum
        src_will_have = src_hash is not None or src_reads or checksum
        if src_hash is None and (checksum or (src_reads and dst_will_have)):
            need_src.append(relpath)
        if dst_hash is None and (checksum or (dst_reads and src_will_have)):
            need_dst.append(relpath)
    return need_src, need_dst
