"""Any fsspec filesystem, through its coroutines.

An asynchronous filesystem (s3fs, adlfs, gcsfs, sshfs...) is used directly: the primitives
await its ``_``-prefixed coroutines on the one event loop, the loop it was built on. A
synchronous one is wrapped in fsspec's ``AsyncFileSystemWrapper`` (each call in a worker
thread), as zarr-python's ``FsspecStore`` does: one code path for both, no sync wrapper ever
called from inside the loop.

What the generic path cannot know, it does not claim: ``create`` checks, then writes with
``mode="create"`` (exclusive only where the filesystem honours it, so not declared
exclusive), listings carry no hash, every read is taken to cost a request, and there is no
server-side copy. Backends for particular services (S3, Azure, memory) subclass it and
declare more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.dirfs import DirFileSystem

from gens_fs.backends.base import (
    STREAM_CHUNK,
    Backend,
    Capabilities,
    Children,
    FileInfo,
    PageRetry,
    ReadResult,
    Scan,
)
from gens_fs.backends.file_table import FileTable

GENERIC = Capabilities(exclusive_create=False, listing_hash=None, costs_requests=True)
# Requests in flight at once for batched deletes on filesystems without a bulk delete.
_BATCH = 128


def as_async(fs: Any) -> AsyncFileSystem:
    """``fs`` itself when its coroutines do the work, else wrapped so that they do.

    A ``DirFileSystem`` says it is asynchronous whatever it wraps, but its coroutines only
    delegate to the wrapped filesystem's: over a synchronous one it is wrapped too.
    """
    inner = fs.fs if isinstance(fs, DirFileSystem) else fs
    if getattr(inner, "async_impl", False):
        return fs
    return AsyncFileSystemWrapper(fs, asynchronous=True)


class FsspecBackend(Backend):
    """A filesystem under ``root``: ``fs`` is the filesystem as built (for naming paths),
    ``afs`` the one whose coroutines are awaited."""

    capabilities = GENERIC

    def __init__(self, fs: Any, root: str, *, afs: AsyncFileSystem | None = None) -> None:
        super().__init__(root)
        self.fs = fs
        self.afs = afs if afs is not None else as_async(fs)

    @property
    def service(self) -> str:
        return f"{self.protocol} {self.fs.fsid if _has_fsid(self.fs) else id(self.fs)}"

    @property
    def protocol(self) -> str:
        protocol = self.fs.protocol
        return str(protocol if isinstance(protocol, str) else protocol[0])

    def url(self, path: str) -> str:
        return f"{self.protocol}://{path.lstrip('/')}"

    def path_of(self, location: str) -> str:
        stripped = str(self.fs._strip_protocol(location))
        return stripped.rstrip("/") or stripped

    async def read(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        # _cat_ranges, not _cat: _cat expands glob characters, and a root such as
        # s3://bucket/[x]/data is a path, not a pattern. Same requests, same batching.
        values = await self.afs._cat_ranges(
            list(paths), None, None, on_error="return", **self._read_options()
        )
        out: dict[str, ReadResult] = {}
        for path, value in zip(paths, values, strict=True):
            if isinstance(value, (FileNotFoundError, NotADirectoryError)):
                out[path] = None
            elif isinstance(value, Exception):
                out[path] = value
            else:
                out[path] = bytes(value)
        return out

    def _read_options(self) -> dict[str, Any]:
        return {}

    async def write(self, files: Mapping[str, bytes]) -> None:
        await self.afs._pipe(dict(files))

    async def create(self, path: str, data: bytes) -> bool:
        """``mode="create"``: the medium decides the race where it honours it (declared as
        ``exclusive_create``: S3's conditional PUT, memory's ``xb`` open). Elsewhere it
        checks first, then writes: two writers in between can both "win" on a filesystem
        that ignores ``mode="create"``."""
        if not self.capabilities.exclusive_create and await self.afs._exists(path):
            return False
        try:
            await self.afs._pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        return True

    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        parts = await asyncio.gather(*(self._find(p) for p in prefixes))
        return Scan(FileTable.merged(parts))

    async def _find(self, prefix: str) -> FileTable:
        try:
            infos = await self.afs._find(prefix, detail=True)
        except FileNotFoundError:
            return FileTable.of({})
        base = prefix.rstrip("/") + "/"
        return FileTable.of(
            (path, FileInfo(int(info.get("size") or 0)))
            for path, info in infos.items()
            if path.startswith(base) and info.get("type", "file") != "directory"
        )

    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        try:
            infos = await self.afs._ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return Children(frozenset(), frozenset(), False)
        folders: set[str] = set()
        files: set[str] = set()
        for info in infos:
            name = child_name(path, info["name"])
            if name:
                (folders if info.get("type") == "directory" else files).add(name)
        return Children(frozenset(folders), frozenset(files), True)

    async def delete(self, paths: Sequence[str]) -> None:
        await _run_coros_in_chunks([self._delete_one(p) for p in paths], batch_size=_BATCH)

    async def _delete_one(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self.afs._rm_file(path)

    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        """The size first (one info request), then one ranged read per chunk."""
        try:
            info = await self.afs._info(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if info.get("type", "file") == "directory":
            return None
        return self._ranges(path, int(info.get("size") or 0), chunk_size)

    async def _ranges(self, path: str, size: int, chunk_size: int) -> AsyncIterator[bytes]:
        for start in range(0, size, chunk_size):
            end = min(size, start + chunk_size)
            yield bytes(await self.afs._cat_file(path, start=start, end=end))


def child_name(parent: str, path: str) -> str:
    """The name of ``path`` directly inside ``parent`` ("" for anything else)."""
    base = parent.rstrip("/") + "/"
    rest = path.rstrip("/")[len(base) :] if path.startswith(base) else ""
    return "" if "/" in rest else rest


def _has_fsid(fs: Any) -> bool:
    try:
        return bool(fs.fsid)
    except NotImplementedError:
        return False
