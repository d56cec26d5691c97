"""Local disk, read without ever following a symbolic link or opening a special file.

:func:`open_regular` opens a regular file (through links: the caller named the path) and
refuses anything else unopened. :class:`LocalWalk` is one listing of regular files under
some folders, leaving out (and reporting) symbolic links, FIFOs, sockets and devices;
with ``follow_symlinks`` it follows links whose target stays inside the root. Given a
``known`` lookup (the hash cache's), each file also carries the MD5 recorded for it with
the stamp the walk's own ``stat`` just took, so a file is stat'ed once per listing.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from typing import IO

from gens_fs.backends.base import Ignored
from gens_fs.backends.file_table import FileTable, FileTableBuilder
from gens_fs.errors import SpecialFile

KnownMd5 = Callable[[str, os.stat_result], bytes | None]
"""The MD5 (16 bytes) known for the file at a path with exactly this ``stat``, if any."""


def open_regular(path: str) -> IO[bytes]:
    """Open the regular file at ``path`` for reading (through symbolic links); the caller
    closes it (``with open_regular(path) as handle``). Anything else raises ``SpecialFile``
    unopened: ``/dev/zero`` never ends and a FIFO blocks forever. The open is non-blocking
    and checked again, in case the path changed since the stat."""
    kind = _special_kind(os.stat(path).st_mode)
    if kind is None:
        handle = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")  # noqa: SIM115
        kind = _special_kind(os.fstat(handle.fileno()).st_mode)
        if kind is None:
            return handle
        handle.close()
    raise SpecialFile(f"{path}: {kind}, not a regular file: never read")


def _special_kind(mode: int) -> str | None:
    """What a non-regular file is, in words; ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _inside(path: str, boundary: str) -> bool:
    return path == boundary or path.startswith(boundary.rstrip(os.sep) + os.sep)


class LocalWalk:
    """One local listing (``LocalBackend.scan``): regular files with their sizes (and with
    ``known``, the MD5 it knows for each), and the entries left out. Types come from
    ``scandir`` (no syscall for most entries). Each prefix is walked in the order of its
    paths' bytes (a folder sorted as its name and ``/``, as git orders a tree), so its
    table is built sorted, with nothing to sort afterwards."""

    def __init__(self, root: str, follow_symlinks: bool, known: KnownMd5 | None = None) -> None:
        self.root = root
        self.boundary = os.path.realpath(root)
        self.follow = follow_symlinks
        self.known = known
        self.tables: list[FileTable] = []  # one per prefix walked
        self.ignored: list[Ignored] = []
        self._files = FileTableBuilder()

    @property
    def files(self) -> FileTable:
        """Every regular file found under the prefixes walked."""
        return FileTable.merged(self.tables)

    def prefix(self, prefix: str) -> None:
        """Walk ``prefix``, if every folder from the root down to it may be entered."""
        under = prefix.startswith(self.root.rstrip("/") + "/")
        path = self.root
        for part in prefix[len(self.root) :].split("/") if under else []:
            if not part:
                continue
            path = os.path.join(path, part)
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISLNK(mode):
                target = self._target(path)
                if target is None:
                    return
                mode = target.st_mode
            if not stat.S_ISDIR(mode):
                return  # a file where a folder should be: nothing under it
        self._files = FileTableBuilder()
        self._walk(prefix)
        self.tables.append(self._files.build())

    def _walk(self, top: str) -> None:
        # Folder identities on the way down, to refuse a followed link back up (a loop).
        levels = [_level(top, frozenset([_identity(top)]) if self.follow else frozenset())]
        while levels:
            entries, ancestors = levels[-1]
            entry = next(entries, None)
            if entry is None:
                levels.pop()
                continue
            with contextlib.suppress(FileNotFoundError):  # removed since the scandir
                folder = self._entry(entry, ancestors)
                if folder is not None:
                    levels.append(_level(*folder))

    def _entry(self, entry: os.DirEntry[str], ancestors: _Ancestors) -> _Folder | None:
        """Record one entry; a folder to walk comes back, with its ancestors."""
        path = entry.path
        if entry.is_symlink():
            target = self._target(path)
            return None if target is None else self._followed(path, target, ancestors)
        if entry.is_dir(follow_symlinks=False):
            return path, ancestors | {_identity(path)} if self.follow else ancestors
        info = entry.stat(follow_symlinks=False)  # types came free; the size costs an lstat
        if stat.S_ISREG(info.st_mode):
            self._add(path, info)
        else:
            self._ignore(path, f"{_special_kind(info.st_mode)}, never opened")
        return None

    def _add(self, path: str, info: os.stat_result) -> None:
        path = _posix(path)
        known = None if self.known is None else self.known(path, info)
        self._files.add_md5(path, info.st_size, known)

    def _followed(self, path: str, target: os.stat_result, ancestors: _Ancestors) -> _Folder | None:
        """Record a symbolic link that may be followed, by what it points to."""
        if stat.S_ISDIR(target.st_mode):
            identity = (target.st_dev, target.st_ino)
            if identity in ancestors:
                self._ignore(path, "symbolic link to a folder holding it (a loop), not followed")
                return None
            return path, ancestors | {identity}
        if stat.S_ISREG(target.st_mode):
            self._add(path, target)
        else:
            kind = _special_kind(target.st_mode)
            self._ignore(path, f"symbolic link to a {kind}, never opened")
        return None

    def _target(self, link: str) -> os.stat_result | None:
        """What the symbolic link points to, when it may be followed; else reported."""
        if not self.follow:
            self._ignore(link, "symbolic link, not followed")
            return None
        target = os.path.realpath(link)
        if not _inside(target, self.boundary):
            self._ignore(link, f"symbolic link to {target}, outside the data root, not followed")
            return None
        try:
            return os.stat(link)
        except OSError:
            self._ignore(link, "broken symbolic link")
            return None

    def _ignore(self, path: str, reason: str) -> None:
        self.ignored.append(Ignored(_posix(path), reason))


_Ancestors = frozenset[tuple[int, int]]
_Folder = tuple[str, _Ancestors]


def _level(directory: str, ancestors: _Ancestors) -> tuple[Iterator[os.DirEntry[str]], _Ancestors]:
    """A folder's entries, in the order of the paths they lead to (none when the folder
    is gone, or is no folder), with the identities of the folders above them."""
    try:
        with os.scandir(directory) as entries:
            found = sorted(entries, key=_tree_order)
    except (FileNotFoundError, NotADirectoryError):
        found = []
    return iter(found), ancestors


def _tree_order(entry: os.DirEntry[str]) -> str:
    # "d1/..." sorts after "d1.txt" as bytes ("/" > "."): a folder sorts as its name and "/".
    # (A followed link to a folder, or a name that is not UTF-8, may still come out of
    # order: the table then sorts itself.)
    return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _posix(path: str) -> str:
    return path.replace(os.sep, "/")
