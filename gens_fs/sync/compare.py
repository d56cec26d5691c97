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

from gens_fs.backends import Capabilities, FileInfo
from gens_fs.backends.file_table import FileTable, pairs
from gens_fs.listing import Files


def hash_by_reading(capabilities: Capabilities) -> bool:
    """Whether a file of this side whose listing gives no MD5 is read and hashed when the
    other side has one to compare with: where reading costs no request (local disk,
    memory), and where the listing declares a Content-MD5 (an Azure blob uploaded without
    one: nothing else tells a change). Not for an S3 multipart ETag (size only, as for
    other fsspec backends; ``--checksum`` reads them)."""
    return not capabilities.costs_requests or capabilities.listing_hash == "content-md5"


def content_hash(info: FileInfo) -> str | None:
    """The MD5 of the bytes, when known: a Content-MD5, a file hashed, or a single-part
    ETag; not a multipart ETag (``<md5 of part md5s>-<parts>``)."""
    if info.hash is None or "-" in info.hash:
        return None
    return info.hash.lower()


def unchanged(src: FileInfo, dst: FileInfo) -> bool:
    """True when ``dst`` may be taken for a copy of ``src`` (see the module table): the same
    size and, where both MD5s are known, the same MD5 (the same multipart ETag, or no
    comparable hash at all, leaves the size to decide)."""
    if src.size != dst.size:
        return False
    src_hash, dst_hash = content_hash(src), content_hash(dst)
    return src_hash is None or dst_hash is None or src_hash == dst_hash


def hashes_needed(
    src: Files,
    dst: Files,
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
    if all(isinstance(f, FileTable) and f.all_md5s() for f in (src, dst)):
        return need_src, need_dst  # every file has its MD5 at hand (a resync to S3...)
    for relpath, s, d in pairs(src, dst):  # one pass, both listings in path order
        if s is None or d is None or d.size != s.size:
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
