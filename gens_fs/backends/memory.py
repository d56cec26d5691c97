"""fsspec's memory filesystem: one dict per process, shared by every ``memory://`` root.

Its calls never block, so they run in the event loop's own thread (no worker thread): every
primitive, and so every check-and-set of ``create``, runs there one at a time, which makes
``create`` exclusive against every other gens_fs caller in the process, whatever thread it
comes from.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import posixpath
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.memory import MemoryFileSystem

from gens_fs.backends.base import Capabilities
from gens_fs.backends.generic import FsspecBackend

MEMORY = Capabilities(exclusive_create=True, listing_hash=None, costs_requests=False)

T = TypeVar("T")


class MemoryBackend(FsspecBackend):
    """A ``memory://`` root."""

    capabilities = MEMORY

    def __init__(self, fs: MemoryFileSystem, root: str) -> None:
        super().__init__(fs, root, afs=_InLoopWrapper(fs))

    @property
    def service(self) -> str:
        return "memory"

    async def delete(self, paths: Sequence[str]) -> None:
        """Delete the files, then the folders that held them if that left them empty."""
        await super().delete(paths)
        for folder in sorted({posixpath.dirname(p) for p in paths}, key=len, reverse=True):
            with contextlib.suppress(OSError):  # not empty, or gone: leave it
                await self.afs._rmdir(folder)


class _InLoopWrapper(AsyncFileSystemWrapper):  # type: ignore[misc]
    """fsspec's wrapper, calling the wrapped filesystem in the calling (loop) thread."""

    def _wrap_all_sync_methods(self) -> None:
        for name in dir(self.sync_fs):
            if name.startswith("_") or name == "open":
                continue
            if isinstance(inspect.getattr_static(self.sync_fs, name), property):
                continue
            method = getattr(self.sync_fs, name)
            if callable(method) and not inspect.isgeneratorfunction(method):
                setattr(self, f"_{name}", _in_loop(method))


def _in_loop(method: Callable[..., T]) -> Callable[..., Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> T:
        return method(*args, **kwargs)

    return call
