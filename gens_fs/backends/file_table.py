"""Many files, each with its :class:`~gens_fs.backends.base.FileInfo`, in a few flat
arrays: the compact listing.

A ``dict`` of path -> ``FileInfo`` costs about 300 bytes a file (the path string, the
tuple, its size int and hash string, the dict's slot), and a sync holds two of them; at a
million files that is most of a gigabyte. :class:`FileTable` keeps the same mapping in
about 80 bytes a file: every path UTF-8 in one byte string, sorted, with an array of
where each ends, an array of sizes, and the MD5s as 16 raw bytes each (a hash that is not
a lowercase hex MD5, such as a multipart ETag, is kept as it is on the side). A
``FileInfo`` is made only when asked for.

It is an ordinary read-only ``Mapping[str, FileInfo]`` (a lookup is a binary search), and
its order is the byte order of the paths, which is what S3 lists in: two tables are
compared in one pass, side by side (:func:`pairs`), never by a lookup per file. A table
is one or more sorted *runs* (a listing's prefixes, each listed on its own), joined
without copying; :class:`FileTableBuilder` fills a run as a listing's pages arrive.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping
from itertools import pairwise
from typing import Final

from gens_fs.backends.base import FileInfo

_NONE: Final = 0  # no hash
_MD5: Final = 1  # 16 bytes in the MD5 column: the hash was their lowercase hex
_OTHER: Final = 2  # the hash string kept in ``others``
_NO_MD5: Final = bytes(16)


def _encode(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _md5_bytes(value: str) -> bytes | None:
    """The 16 bytes of a lowercase hex MD5 (what the string is, exactly), else ``None``."""
    if len(value) != 32:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if raw.hex() == value else None


class _Run:
    """Rows sorted by path bytes in flat arrays; ``skip`` bytes of every path left out (a
    view of the same arrays under a common prefix)."""

    __slots__ = ("blob", "ends", "kinds", "md5s", "others", "sizes", "skip")

    def __init__(
        self,
        blob: bytearray,
        ends: array[int],
        sizes: array[int],
        md5s: bytearray,
        kinds: bytearray | bytes,
        others: dict[int, str],
        skip: int = 0,
    ) -> None:
        self.blob, self.ends, self.sizes = blob, ends, sizes
        self.md5s, self.kinds, self.others, self.skip = md5s, kinds, others, skip

    def __len__(self) -> int:
        return len(self.sizes)

    def key(self, index: int) -> bytes:
        start = self.ends[index - 1] if index else 0
        return bytes(self.blob[start + self.skip : self.ends[index]])

    def info(self, index: int) -> FileInfo:
        kind = self.kinds[index]
        if kind == _MD5:
            return FileInfo(self.sizes[index], self.md5s[16 * index : 16 * index + 16].hex())
        return FileInfo(self.sizes[index], self.others[index] if kind == _OTHER else None)

    def under(self, prefix: bytes) -> _Run | None:
        """This run without ``prefix`` at the start of every path, if all have it (and
        something after it). The rows are sorted, so the paths between two that start
        with ``prefix`` start with it too: the first and the last row decide."""
        if len(self):
            first, last = self.key(0), self.key(len(self) - 1)
            if len(first) <= len(prefix) or not (
                first.startswith(prefix) and last.startswith(prefix)
            ):
                return None
        skip = self.skip + len(prefix)
        return _Run(self.blob, self.ends, self.sizes, self.md5s, self.kinds, self.others, skip)

    def without_hashes(self) -> _Run:
        return _Run(self.blob, self.ends, self.sizes, self.md5s, bytes(len(self)), {}, self.skip)

    def with_hashes(self, hashes: Mapping[bytes, str]) -> _Run:
        """This run with the hashes of the paths (as bytes) in ``hashes`` replaced: the
        paths and sizes shared, the hash columns copied and patched."""
        md5s, kinds, others = bytearray(self.md5s), bytearray(self.kinds), dict(self.others)
        for index in range(len(self)):
            found = hashes.get(self.key(index))
            if found is None:
                continue
            raw = _md5_bytes(found)
            others.pop(index, None)
            if raw is None:
                others[index] = found
            md5s[16 * index : 16 * index + 16] = _NO_MD5 if raw is None else raw
            kinds[index] = _OTHER if raw is None else _MD5
        return _Run(self.blob, self.ends, self.sizes, md5s, kinds, others, self.skip)


class FileTableBuilder:
    """Rows added one at a time (a listing page by page), then :meth:`build`. Rows may come
    in any order; when they come sorted (an S3 listing), building copies and sorts
    nothing. A path added twice keeps its last row, as a ``dict`` would."""

    def __init__(self) -> None:
        self._blob, self._md5s, self._kinds = bytearray(), bytearray(), bytearray()
        self._ends: array[int] = array("q")
        self._sizes: array[int] = array("q")
        self._others: dict[int, str] = {}
        self._last = b""
        self._ordered = True  # strictly increasing so far

    def add(self, path: str, info: FileInfo) -> None:
        raw = None if info.hash is None else _md5_bytes(info.hash)
        if raw is None and info.hash is not None:
            self._others[len(self._kinds)] = info.hash
            self._append(path, info.size, _OTHER, _NO_MD5)
        else:
            self.add_md5(path, info.size, raw)

    def add_md5(self, path: str, size: int, md5: bytes | None) -> None:
        """:meth:`add` of a file whose MD5, if known, is its 16 raw bytes (no hex text
        made and parsed again: the local walk's cached MD5s)."""
        if md5 is None:
            self._append(path, size, _NONE, _NO_MD5)
        else:
            self._append(path, size, _MD5, md5)

    def _append(self, path: str, size: int, kind: int, md5: bytes) -> None:
        key = _encode(path)
        if self._ends and key <= self._last:
            self._ordered = False
        self._last = key
        self._blob += key
        self._ends.append(len(self._blob))
        self._sizes.append(size)
        self._kinds.append(kind)
        self._md5s += md5

    def extend(self, rows: Iterable[tuple[str, FileInfo]]) -> FileTableBuilder:
        for path, info in rows:
            self.add(path, info)
        return self

    def build(self) -> FileTable:
        """The table (the builder's own arrays: add nothing after)."""
        run = _Run(self._blob, self._ends, self._sizes, self._md5s, self._kinds, self._others)
        table = FileTable((run,))
        return table if self._ordered else table._sorted()


class _Items(ItemsView[str, FileInfo]):
    """``items()`` in one pass over the arrays (not a lookup per key)."""

    _mapping: FileTable

    def __iter__(self) -> Iterator[tuple[str, FileInfo]]:
        for run in self._mapping._runs:
            for index in range(len(run)):
                yield _decode(run.key(index)), run.info(index)


class FileTable(Mapping[str, FileInfo]):
    """Files by path, sorted by the paths' UTF-8 bytes (see the module docstring)."""

    __slots__ = ("_runs", "_starts")

    def __init__(self, runs: tuple[_Run, ...]) -> None:
        self._runs = tuple(run for run in runs if len(run)) or runs[:1]
        self._starts = [0]  # the index of each run's first row
        for run in self._runs:
            self._starts.append(self._starts[-1] + len(run))

    @classmethod
    def of(cls, rows: Mapping[str, FileInfo] | Iterable[tuple[str, FileInfo]]) -> FileTable:
        """A table of ``rows``: a mapping (a ``FileTable`` as it is) or (path, info) pairs."""
        if isinstance(rows, FileTable):
            return rows
        items = rows.items() if isinstance(rows, Mapping) else rows
        return FileTableBuilder().extend(items).build()

    @classmethod
    def merged(cls, tables: Iterable[Mapping[str, FileInfo]]) -> FileTable:
        """One table of the rows of several (the prefixes of a listing): their runs joined
        as they are when no two overlap (folders listed apart), else sorted into one (a
        path in more than one keeps one of its rows)."""
        runs = sorted(
            (run for table in tables for run in FileTable.of(table)._runs if len(run)),
            key=lambda run: run.key(0),
        )
        joined = cls(tuple(runs)) if runs else FileTable.of({})
        if all(a.key(len(a) - 1) < b.key(0) for a, b in pairwise(runs)):
            return joined
        return joined._sorted()

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, index: int) -> tuple[_Run, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        which = bisect.bisect_right(self._starts, index) - 1
        return self._runs[which], index - self._starts[which]

    def _key_bytes(self, index: int) -> bytes:
        run, at = self._locate(index)
        return run.key(at)

    def key_at(self, index: int) -> str:
        return _decode(self._key_bytes(index))

    def info_at(self, index: int) -> FileInfo:
        run, at = self._locate(index)
        return run.info(at)

    def index(self, path: str) -> int | None:
        """Where ``path`` is, or ``None``: a binary search."""
        key = _encode(path)
        found = bisect.bisect_left(range(len(self)), key, key=self._key_bytes)
        return found if found < len(self) and self._key_bytes(found) == key else None

    def __getitem__(self, path: str) -> FileInfo:
        found = self.index(path)
        if found is None:
            raise KeyError(path)
        return self.info_at(found)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.index(path) is not None

    def __iter__(self) -> Iterator[str]:
        for run in self._runs:
            for index in range(len(run)):
                yield _decode(run.key(index))

    def items(self) -> _Items:
        return _Items(self)

    def rows(self) -> Iterator[tuple[bytes, str, FileInfo]]:
        """Every row in order, with its path's bytes too."""
        for run in self._runs:
            for index in range(len(run)):
                key = run.key(index)
                yield key, _decode(key), run.info(index)

    def under(self, prefix: str) -> FileTable | None:
        """The same rows, each path without ``prefix``, when every path starts with it
        (``None`` otherwise): a view that shares this table's arrays, not a copy."""
        runs = [run.under(_encode(prefix)) for run in self._runs]
        return None if any(r is None for r in runs) else FileTable(tuple(filter(None, runs)))

    def without_hashes(self) -> FileTable:
        """The same paths and sizes, without their hashes (a view)."""
        if not any(any(run.kinds) for run in self._runs):
            return self
        return FileTable(tuple(run.without_hashes() for run in self._runs))

    def only(self, keep: Callable[[str], bool]) -> FileTable:
        """The rows whose path ``keep`` accepts (this table itself when it accepts all)."""
        if all(keep(path) for path in self):
            return self
        return FileTable.of((path, info) for path, info in self.items() if keep(path))

    def all_md5s(self) -> bool:
        """Whether every row carries an MD5 (no row without a hash, nor with another
        kind of hash, such as a multipart ETag): a count of the kinds column."""
        return all(run.kinds.count(_MD5) == len(run) for run in self._runs)

    def unhashed(self) -> Iterator[str]:
        """The paths whose row carries no hash, in order (the others are not decoded)."""
        for run in self._runs:
            at = run.kinds.find(_NONE)
            while at != -1:
                yield _decode(run.key(at))
                at = run.kinds.find(_NONE, at + 1)

    def with_hashes(self, hashes: Mapping[str, str]) -> FileTable:
        """The same rows, the paths of ``hashes`` with those hashes instead (same sizes):
        a table sharing this one's paths and sizes, with hash columns of its own."""
        if not hashes:
            return self
        wanted = {_encode(path): found for path, found in hashes.items()}
        return FileTable(tuple(run.with_hashes(wanted) for run in self._runs))

    def _sorted(self) -> FileTable:
        """The same rows in path order, the last row of a path kept."""
        keys = [self._key_bytes(index) for index in range(len(self))]
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: equal paths in order
        last = len(order) - 1
        return FileTable.of(
            (_decode(keys[index]), self.info_at(index))
            for n, index in enumerate(order)
            if n == last or keys[index] != keys[order[n + 1]]
        )


def _sorted_rows(files: Mapping[str, FileInfo]) -> Iterator[tuple[bytes, str, FileInfo]]:
    """Every row of ``files`` in path byte order, with its path's bytes."""
    if isinstance(files, FileTable):
        yield from files.rows()
        return
    for key, path in sorted((_encode(p), p) for p in files):
        yield key, path, files[path]


def pairs(
    src: Mapping[str, FileInfo], dst: Mapping[str, FileInfo]
) -> Iterator[tuple[str, FileInfo | None, FileInfo | None]]:
    """Every path of either side, in path byte order, with its row at each side (``None``
    where that side lacks it): both listings walked once, side by side (rclone's march)."""
    theirs = _sorted_rows(dst)
    pending = next(theirs, None)
    for key, path, info in _sorted_rows(src):
        while pending is not None and pending[0] < key:
            yield pending[1], None, pending[2]
            pending = next(theirs, None)
        if pending is not None and pending[0] == key:
            yield path, info, pending[2]
            pending = next(theirs, None)
        else:
            yield path, info, None
    while pending is not None:
        yield pending[1], None, pending[2]
        pending = next(theirs, None)
