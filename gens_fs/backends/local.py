"""Local disk through the OS directly: atomic renames, ``os.link`` exclusive create.

Reads skip fsspec's file objects: a plain ``open().read()`` is what a pathlib reader does,
and a local ``load`` should cost no more than that. Every primitive is plain OS calls that
never wait on the event loop (``runs_inline``), so synchronous callers run them in their
own thread; the sync executor awaits them on its loop like any other backend's.

A rename is atomic, not durable: after a power loss the file system may come back without
it. :meth:`LocalBackend.durable` gives the view that ``fsync``s each file before its rename
and each folder whose entries changed (new folders in their parents too) before the call
returns, for writers that need a commit to survive a power loss.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import stat
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import IO, ClassVar

from fsspec.implementations.local import LocalFileSystem

from gens_fs.backends.base import (
    STREAM_CHUNK,
    Backend,
    Capabilities,
    Children,
    HashResult,
    Leftovers,
    PageRetry,
    ReadResult,
    Removed,
    Scan,
)
from gens_fs.backends.local_hashes import HashCache, hash_files
from gens_fs.backends.local_leftovers import find_leftovers, remove_leftovers
from gens_fs.backends.local_walk import LocalWalk, open_regular
from gens_fs.errors import AccessDenied, StorageError
from gens_fs.layout import temp_file_name

LOCAL = Capabilities(exclusive_create=True, listing_hash=None, costs_requests=False)
LOCAL_WITH_MD5S = dataclasses.replace(LOCAL, listing_hash="md5")
"""What :meth:`LocalBackend.with_known_md5s` declares: its listings carry MD5s (where the
hash cache knows them; the other files are hashed by reading, which costs no request)."""


class LocalBackend(Backend):
    """Local disk under ``root`` (an absolute path)."""

    capabilities = LOCAL
    runs_inline: ClassVar[bool] = True
    fsync: bool = False
    """Every change on disk before a call returns (see :meth:`durable`)."""

    def durable(self) -> LocalBackend:
        other = copy.copy(self)
        other.fsync = True
        return other

    _hash_cache: HashCache | None = None
    _lists_md5s: bool = False

    @property
    def service(self) -> str:
        return "file"

    def url(self, path: str) -> str:
        return path

    def resolved(self, path: str) -> str:
        return os.path.realpath(path)

    def path_of(self, location: str) -> str:
        return str(LocalFileSystem._strip_protocol(location))

    async def read(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        """A symbolic link is read through (the caller named the path); a FIFO, socket,
        device or folder gives ``SpecialFile`` without being opened."""
        out: dict[str, ReadResult] = {}
        for path in paths:
            try:
                with open_regular(path) as handle:
                    out[path] = handle.read()
            except (FileNotFoundError, NotADirectoryError):
                out[path] = None
            except OSError as exc:
                out[path] = exc
        return out

    async def write(self, files: Mapping[str, bytes]) -> None:
        for path, data in files.items():
            temp = _write_temp(path, data, self.fsync)
            try:
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        if self.fsync:  # the renames themselves
            for folder in {os.path.dirname(p) for p in files}:
                _fsync_folder(folder)

    async def create(self, path: str, data: bytes) -> bool:
        temp = _write_temp(path, data, self.fsync)
        try:
            os.link(temp, path)  # fails with EEXIST if the target exists: exclusive
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if self.fsync:  # the link (and the temporary name gone)
                _fsync_folder(os.path.dirname(path))
        return True

    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        """Regular files under the ``prefixes``, never following a symbolic link (nor one on
        the way from the root down to a prefix) and never opening a FIFO, socket or device:
        each is left out and reported. With ``follow_symlinks`` a link is followed when
        its target stays inside the root (a link to a folder that contains it is a loop:
        reported, not followed)."""
        known = self._hashes().known if self._lists_md5s else None
        walk = LocalWalk(self.root, follow_symlinks, known)
        for prefix in prefixes:
            walk.prefix(prefix)
        return Scan(walk.files, walk.ignored)

    def with_known_md5s(self) -> LocalBackend:
        """This root, its listings carrying the MD5 the hash cache recorded for each file
        whose stamp (size, mtime, ctime, inode: from the listing's own ``stat``) is the one
        recorded, and none for the others (changed, new, or racy when hashed: see
        :mod:`gens_fs.backends.local_hashes`), the way an S3 listing carries ETags. The
        cache is read by the first listing, shared with this backend's :meth:`md5`."""
        other = copy.copy(self)
        other._hash_cache = self._hashes()
        other._lists_md5s = True
        other.capabilities = LOCAL_WITH_MD5S
        return other

    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """One ``scandir``; a symbolic link to a folder counts as a folder (listings then
        report it rather than follow it)."""
        folders: set[str] = set()
        files: set[str] = set()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    (folders if entry.is_dir() else files).add(entry.name)
        except FileNotFoundError:
            return Children(frozenset(), frozenset(), False)
        except NotADirectoryError:
            raise StorageError(f"{path} is a file, not a folder") from None
        except PermissionError as exc:
            raise AccessDenied("listing", path, str(exc)) from None
        return Children(frozenset(folders), frozenset(files), True)

    async def delete(self, paths: Sequence[str]) -> None:
        """Unlink each file, then remove the folders that held them if that left them
        empty (a deleted generation leaves no empty folder behind)."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        folders = sorted({os.path.dirname(p) for p in paths}, key=len, reverse=True)
        for folder in folders:
            with contextlib.suppress(OSError):  # not empty, or gone: leave it
                os.rmdir(folder)
        if self.fsync:  # each folder that lost an entry: itself, or its parent once removed
            for folder in {f if os.path.isdir(f) else os.path.dirname(f) for f in folders}:
                with contextlib.suppress(FileNotFoundError):
                    _fsync_folder(folder)

    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        try:
            handle = open_regular(path)  # closed by _chunks
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _chunks(handle, chunk_size)

    async def leftovers(self, prefixes: Sequence[str]) -> Leftovers:
        """The temporary files of writes that never finished (a killed process's), and the
        folders that hold nothing else: one walk, no link followed."""
        return find_leftovers(prefixes)

    async def remove_leftovers(self, files: Sequence[str], folders: Sequence[str]) -> list[Removed]:
        return remove_leftovers(files, folders)

    async def md5(self, paths: Sequence[str], *, fresh: bool = False) -> dict[str, HashResult]:
        """Through the hash cache of this root (:mod:`gens_fs.backends.local_hashes`): a
        file whose size, mtime, ctime and inode are those recorded when it was last hashed
        is not read again (with ``fresh``, every file is)."""
        return hash_files(self._hashes(), paths, fresh=fresh)

    def _hashes(self) -> HashCache:
        """This root's hash cache (not read until it is used)."""
        if self._hash_cache is None or self._hash_cache.root != self.root:
            self._hash_cache = HashCache.for_root(self.root)  # once per root (``at`` copies)
        return self._hash_cache

    async def blocked_folder(self, folders: Collection[str]) -> str | None:
        for folder in sorted(set(folders), key=len):  # the outermost is the culprit
            blocker = _non_folder_on_path(folder)
            if blocker is not None:
                return blocker
        return None


def _non_folder_on_path(folder: str) -> str | None:
    """``folder`` or the nearest existing path above it, when that is not a folder (so
    nothing can be created at ``folder``); ``None`` when ``folder`` is, or can be, made."""
    path = os.path.abspath(folder)
    while True:
        try:
            return None if stat.S_ISDIR(os.stat(path).st_mode) else path
        except NotADirectoryError:  # a file somewhere above: find it
            path = os.path.dirname(path)
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent


async def _chunks(handle: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def _write_temp(path: str, data: bytes, fsync: bool) -> str:
    """``data`` in a new hidden file beside ``path`` (its folders made); with ``fsync``
    on disk, and so are the folders made, before it returns."""
    directory = os.path.dirname(path)
    _make_folders(directory, fsync)
    # Hidden temporary name in the same directory: listings skip it, and the rename that
    # follows stays on one filesystem, so it is atomic.
    temp = os.path.join(directory, temp_file_name(os.path.basename(path), uuid.uuid4().hex))
    with open(temp, "wb") as handle:
        handle.write(data)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    return temp


def _make_folders(directory: str, fsync: bool) -> None:
    """``os.makedirs``; with ``fsync``, each folder made is on disk in its parent."""
    made: list[str] = []
    if fsync:
        folder = directory
        while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
            made.append(folder)
            folder = os.path.dirname(folder)
    os.makedirs(directory, exist_ok=True)
    for folder in reversed(made):  # outermost first: each entry after its parent's
        _fsync_folder(os.path.dirname(folder))


def _fsync_folder(folder: str) -> None:
    """Flush ``folder``'s entries (names added, renamed, removed) to disk."""
    handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
