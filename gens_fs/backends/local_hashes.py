"""The MD5 of local files, not read again while nothing says they changed: the hash cache.

A sync compares a local file with its copy by MD5 (against an S3 ETag, an Azure
Content-MD5, or the other side's MD5), so without a cache every run reads and hashes every
local file in scope, which is most of a no-op resync's client CPU. :class:`HashCache`
keeps, per local root, each hashed file's MD5 with its *stamp*: size, ``mtime_ns``,
``ctime_ns`` and inode, taken by ``fstat`` on the file that was read. A file whose stamp
is unchanged is not read again. Why these four: a write changes the size or the mtime,
and always the ctime, which no tool can set back (``os.utime`` restoring an old mtime
sets the ctime to now); a file replaced by a rename gets another inode. So a same-size
edit whose mtime was restored is caught.

**Racy files** (git's "racily clean" index entries): file systems store timestamps in
steps (1 s on ext3, 2 s on FAT, a clock tick on Linux), so a file written again in the
same step as the hashed version would keep its stamp. An entry is therefore kept only
when the file's mtime and ctime are :data:`RACY_WINDOW_NS` older than the moment just
before it was opened (git compares with the index file's own mtime for the same reason);
a file changed just before it was hashed is hashed again next time, when it is old
enough.

**Where.** ``$GENS_FS_CACHE_DIR/hashes/``, else ``$XDG_CACHE_HOME/gens_fs/hashes/``, else
``~/.cache/gens_fs/hashes/``: one file per local root, named by the SHA-256 of the root's
resolved path, readable by its owner only. It is outside every data root (a cache
directory that is inside the root being hashed is not used), so it never appears in a
listing and never travels with a sync. Deleting it costs one full hashing, nothing else.

**Never trusted blindly.** The file is a log: a header naming the resolved root, then
one record per entry appended by each run that hashed something, each with its CRC-32.
A log of another root (copied or renamed), of another format, or that fails to parse is
ignored whole and rewritten; a record that fails its check ends the reading there (what
follows is ignored, and the log is rewritten at the next save). The log is rewritten
compactly when it holds more than twice the records it needs. Two processes hashing the
same root append whole records (one ``write`` each); a record lost between them means one
more hashing, never a wrong MD5. Nothing here ever fails a sync: a cache directory that
cannot be written is a cache that is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

from gens_fs.backends.base import STREAM_CHUNK
from gens_fs.backends.local_walk import open_regular
from gens_fs.layout import relpath_under

log = logging.getLogger(__name__)

RACY_WINDOW_NS: Final = 2_000_000_000
"""How much older than the hashing a file's mtime and ctime must be for its MD5 to be
kept: FAT's 2 s timestamps, a coarse clock tick, and some clock drift of a network file
system."""

_MAGIC: Final = b"gens_fs hash cache 1\n"
# One record: CRC-32 of the rest, key length; then the key (UTF-8), the stamp
# (size, mtime_ns, ctime_ns, inode) and the 16-byte MD5.
_RECORD_HEAD: Final = struct.Struct("<IH")
_CRC: Final = struct.Struct("<I")
_KEY_LENGTH: Final = struct.Struct("<H")
_STAMP: Final = struct.Struct("<qqqQ")
_ENTRY_SIZE: Final = _STAMP.size + 16
# A log with more records than this many times its live entries (plus some) is rewritten.
_COMPACT_RATIO: Final = 2
_COMPACT_SLACK: Final = 1000

HashResult = str | BaseException
"""A file's MD5 (hex), or why it could not be hashed (missing, a special file...)."""


def cache_dir() -> Path:
    """Where gens_fs keeps its caches (see the module docstring)."""
    chosen = os.environ.get("GENS_FS_CACHE_DIR")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "gens_fs"


def _stamp(info: os.stat_result) -> bytes:
    return _STAMP.pack(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _record(key: bytes, payload: bytes) -> bytes:
    body = _KEY_LENGTH.pack(len(key)) + key + payload
    return _CRC.pack(zlib.crc32(body)) + body


class HashCache:
    """The cached MD5s of the files under one local root (see the module docstring)."""

    def __init__(self, root: str, location: Path | None) -> None:
        self.root = root
        self.resolved = os.path.realpath(root)
        self.location = location
        self._entries: dict[str, bytes] | None = None  # key -> stamp + MD5, loaded on use
        self._pending: list[bytes] = []
        self._records = 0
        self._rewrite = False

    @classmethod
    def for_root(cls, root: str) -> HashCache:
        """The cache of ``root``; one that is not kept when the cache directory lies inside
        the root (it would be listed, and synced)."""
        resolved = os.path.realpath(root)
        folder = cache_dir().resolve() / "hashes"
        inside = str(folder) == resolved or str(folder).startswith(resolved.rstrip("/") + "/")
        name = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return cls(root, None if inside else folder / name)

    def key(self, path: str) -> str:
        """The entry name of ``path``: relative to the root (the path itself outside it)."""
        return relpath_under(self.root, path) or path

    def lookup(self, key: str, info: os.stat_result) -> str | None:
        """The MD5 recorded for ``key`` with exactly this stamp, or ``None``."""
        entry = self._loaded().get(key)
        if entry is None or entry[: _STAMP.size] != _stamp(info):
            return None
        return entry[_STAMP.size :].hex()

    def known(self, path: str, info: os.stat_result) -> bytes | None:
        """The MD5 (its 16 bytes) recorded for the file at ``path`` with exactly the stamp
        of ``info``, a ``stat`` the caller just took (the local walk's), or ``None``."""
        entry = self._loaded().get(self.key(path))
        if entry is None or entry[: _STAMP.size] != _stamp(info):
            return None
        return entry[_STAMP.size :]

    def record(self, key: str, info: os.stat_result, md5: str, opened_ns: int) -> None:
        """Keep ``md5`` for ``key`` with the stamp ``info`` of the file that was read, unless
        the file is racy: changed less than :data:`RACY_WINDOW_NS` before ``opened_ns``."""
        entries = self._loaded()
        if max(info.st_mtime_ns, info.st_ctime_ns) >= opened_ns - RACY_WINDOW_NS:
            entries.pop(key, None)
            return
        entry = _stamp(info) + bytes.fromhex(md5)
        if entries.get(key) != entry:
            entries[key] = entry
            self._pending.append(_record(_key_bytes(key), entry))

    def save(self) -> None:
        """Write what was recorded since the last save: appended to the log, or the whole
        log rewritten (a new, foreign, corrupt or bloated one). Never raises."""
        if self.location is None or not self._pending:
            return
        entries = self._loaded()
        bloated = self._records > _COMPACT_RATIO * len(entries) + _COMPACT_SLACK
        try:
            if self._rewrite or bloated:
                self._write_whole(entries)
            else:
                with _open_private(self.location, os.O_WRONLY | os.O_APPEND) as handle:
                    handle.write(b"".join(self._pending))
                self._records += len(self._pending)
        except OSError as exc:
            log.debug("hash cache %s not saved: %s", self.location, exc)
        self._pending = []

    def _write_whole(self, entries: dict[str, bytes]) -> None:
        assert self.location is not None
        self.location.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.location.with_name(f".{self.location.name}.{os.getpid()}.tmp")
        records = [_record(_key_bytes(k), v) for k, v in entries.items()]
        try:
            with _open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as handle:
                handle.write(self._header() + b"".join(records))
            os.replace(temp, self.location)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        self._records, self._rewrite = len(records), False

    def _header(self) -> bytes:
        return _MAGIC + _record(_key_bytes(self.resolved), b"")

    def _loaded(self) -> dict[str, bytes]:
        if self._entries is None:
            self._entries = {}
            self._rewrite = True  # until a log of this root is read whole
            if self.location is not None:
                self._read()
        return self._entries

    def _read(self) -> None:
        assert self.location is not None and self._entries is not None
        try:
            data = self.location.read_bytes()
        except OSError:
            return  # none yet (or unreadable): written whole at the first save
        header = self._header()
        if not data.startswith(header):
            log.debug("hash cache %s ignored: another root's, or not one", self.location)
            return
        entries, records, whole = _parse(data, len(header))
        self._entries.update(entries)
        self._records, self._rewrite = records, not whole


def _parse(data: bytes, offset: int) -> tuple[dict[str, bytes], int, bool]:
    """The entries of a log's records from ``offset`` (the last record of a key wins), how
    many records were read, and whether every byte was a valid record."""
    entries: dict[str, bytes] = {}
    records = 0
    end = len(data)
    while offset < end:
        if offset + _RECORD_HEAD.size > end:
            return entries, records, False
        crc, length = _RECORD_HEAD.unpack_from(data, offset)
        stop = offset + _RECORD_HEAD.size + length + _ENTRY_SIZE
        if stop > end or zlib.crc32(data[offset + _CRC.size : stop]) != crc:
            return entries, records, False
        key_end = offset + _RECORD_HEAD.size + length
        key = data[offset + _RECORD_HEAD.size : key_end].decode("utf-8", "surrogateescape")
        entries[key] = data[key_end:stop]
        records += 1
        offset = stop
    return entries, records, True


@contextlib.contextmanager
def _open_private(path: Path, flags: int) -> Iterator[BinaryIO]:
    """``path`` opened for writing with ``flags``, created readable by its owner only."""
    fd = os.open(path, flags, 0o600)
    with open(fd, "wb") as handle:
        yield handle


def hash_files(
    cache: HashCache, paths: Sequence[str], *, fresh: bool = False
) -> dict[str, HashResult]:
    """The MD5 of each file of ``paths`` (through symbolic links, never a special file):
    from ``cache`` when the file's stamp is the one recorded (unless ``fresh``), else read
    (streamed: memory stays flat) and recorded. A file that cannot be hashed gives its
    exception (missing: ``FileNotFoundError``; a FIFO...: ``SpecialFile``)."""
    out: dict[str, HashResult] = {}
    for path in paths:
        key = cache.key(path)
        try:
            found = None if fresh else cache.lookup(key, os.stat(path))
            out[path] = found if found is not None else _hash_one(cache, key, path)
        except OSError as exc:
            out[path] = exc
    cache.save()
    return out


def _hash_one(cache: HashCache, key: str, path: str) -> str:
    opened_ns = time.time_ns()
    with open_regular(path) as handle:
        info = os.fstat(handle.fileno())  # the stamp of the bytes read, taken before them
        digest = hashlib.md5()
        while chunk := handle.read(STREAM_CHUNK):
            digest.update(chunk)
    md5 = digest.hexdigest()
    cache.record(key, info, md5, opened_ns)
    return md5
