"""The one event loop, and the blocking view of a backend that synchronous code uses.

Every backend coroutine runs on fsspec's IO loop (a daemon thread): the loop that
filesystems built in synchronous mode (s3fs, adlfs) bind their clients to, so their
coroutines are awaited where they belong, never through fsspec's blocking wrappers from
inside that loop (which fails with "Calling sync() from within a running loop").
:func:`run` is the only way in from synchronous code; the sync executor runs its whole plan
through it.

A backend that declares ``runs_inline`` (local disk: plain OS calls, no awaiting) has its
coroutines run to completion in the caller's thread instead, which keeps a local ``load``
as cheap as a pathlib read.

:class:`SyncBackend` is that blocking view: the store, cohorts, inventory and the sync
planner call it. It maps errors that mean "this storage cannot be used" to
``StorageError``, once, for all of them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Generic, NoReturn, TypeVar

from fsspec.asyn import get_loop

from gens_fs.backends.base import (
    STREAM_CHUNK,
    Backend,
    Capabilities,
    Children,
    FileInfo,
    Leftovers,
    Removed,
    Scan,
)
from gens_fs.backends.retried import with_retries
from gens_fs.backends.retry import RetryPolicy, denial, is_transient
from gens_fs.errors import SpecialFile

T = TypeVar("T")

# How long an interrupted call waits for what it cancelled to unwind before it gives up.
_UNWIND_TIMEOUT_S = 30.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the one event loop and wait for its result.

    Interrupted (Ctrl-C), the coroutine is cancelled and awaited before the
    ``KeyboardInterrupt`` goes on: a transfer in flight is abandoned (an object PUT never
    lands half-way) and a local file being written is finished and renamed first (those
    writes are synchronous, between two awaits), so an interrupted sync leaves no temporary
    file behind and no task running while the interpreter shuts down. A second Ctrl-C
    stops the waiting.
    """
    loop = get_loop()
    if _running_loop() is loop:  # waiting here would wait forever
        coro.close()
        raise RuntimeError("run() called from inside the event loop it runs on")
    unwound = threading.Event()

    async def guarded() -> T:
        try:
            return await coro
        finally:
            unwound.set()

    future = asyncio.run_coroutine_threadsafe(guarded(), loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        unwound.wait(_UNWIND_TIMEOUT_S)
        raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread
        return None


class Pending(Generic[T]):
    """A coroutine started on the one event loop, its result waited for later, so that the
    caller's thread works meanwhile (a sync scans and hashes the local side while the
    remote side's listing pages arrive). Waiting (:meth:`result`) behaves as :func:`run`,
    Ctrl-C included; a caller that will not wait calls :meth:`cancel`, which returns once
    the coroutine has unwound (no task is left running behind its back)."""

    def __init__(
        self, coro: Coroutine[Any, Any, T], raise_for: Callable[[Exception], NoReturn]
    ) -> None:
        async def start() -> asyncio.Task[T]:
            return asyncio.ensure_future(coro)

        self._task = run(start())
        self._raise_for = raise_for

    def done(self) -> bool:
        """True once the coroutine has finished (a result or an error to collect)."""
        return self._task.done()

    def result(self) -> T:
        """Wait for the coroutine; its error is raised as :meth:`SyncBackend.raise_for`
        maps it."""

        async def outcome() -> T:
            return await self._task

        try:
            return run(outcome())
        except Exception as exc:
            self._raise_for(exc)

    def cancel(self) -> None:
        """Cancel the coroutine (if it has not finished) and wait until it has unwound."""

        async def cancelled() -> None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

        run(cancelled())


def run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a ``runs_inline`` backend's) in this thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("an inline backend's coroutine waited on the event loop")


class SyncBackend:
    """A backend for synchronous callers: each call runs one coroutine to its end."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def root(self) -> str:
        return self.backend.root

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    @property
    def exclusive_create(self) -> bool:
        """True when ``create`` is atomic against concurrent writers on this medium."""
        return self.backend.capabilities.exclusive_create

    @property
    def costs_requests(self) -> bool:
        """True when every read is a billed, high-latency request (object stores)."""
        return self.backend.capabilities.costs_requests

    def url(self, path: str) -> str:
        return self.backend.url(path)

    def at(self, root: str) -> SyncBackend:
        """The same storage under another root."""
        return SyncBackend(self.backend.at(root))

    def retried(self, policy: RetryPolicy) -> SyncBackend:
        """The same storage and root, its requests retried as ``policy`` says."""
        return SyncBackend(with_retries(self.backend, policy))

    def same_root(self, other: SyncBackend) -> bool:
        """True when both name one folder of one storage."""
        mine, theirs = self.backend, other.backend
        return mine.service == theirs.service and mine.root == theirs.root

    def durable(self) -> SyncBackend:
        """The same storage and root, every change on disk before a call returns (see
        :meth:`~gens_fs.backends.base.Backend.durable`)."""
        return SyncBackend(self.backend.durable())

    def with_known_md5s(self) -> SyncBackend:
        """The same storage and root, its listings carrying the MD5s known without reading
        (see :meth:`~gens_fs.backends.base.Backend.with_known_md5s`)."""
        return SyncBackend(self.backend.with_known_md5s())

    def _run(self, coro: Coroutine[Any, Any, T], operation: str, where: str | None = None) -> T:
        """``coro``'s result; its failure raised as :meth:`raise_for` says, for
        ``operation`` on ``where`` (a path; the root when not given)."""
        try:
            return run_inline(coro) if self.backend.runs_inline else run(coro)
        except Exception as exc:
            self.raise_for(exc, operation, where)

    def raise_for(
        self, exc: BaseException, operation: str = "using", where: str | None = None
    ) -> NoReturn:
        """Raise ``exc``: as ``AccessDenied`` naming ``operation`` and ``where`` (a path;
        the root when not given) when the storage refused these credentials; as a
        ``StorageError`` when it means the storage cannot be used; and a transient failure
        that outlasted the retries as a ``ConnectionError`` whichever client raised it
        (aiohttp's and botocore's are not ``OSError``s)."""
        denied = denial(exc, operation, self.url(self.root if where is None else where))
        if denied is not None:
            raise denied from None
        mapped = self.backend.storage_error(exc)
        if mapped is not None:
            raise mapped from None
        if is_transient(exc) and not isinstance(exc, OSError):
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        raise exc

    def read_many(self, paths: list[str]) -> dict[str, bytes | None]:
        """Read every path; a missing file reads as ``None``. One request per file, all in
        flight at once; the first failure is raised."""
        out: dict[str, bytes | None] = {}
        for path, value in self.read_each(paths).items():
            if isinstance(value, Exception):
                self.raise_for(value, "reading", path)
            out[path] = value
        return out

    def read_each(self, paths: list[str]) -> dict[str, bytes | Exception | None]:
        """Like :meth:`read_many`, but a file that cannot be read (after the retries of a
        transient failure) gives its exception instead of failing the whole batch."""
        return self._run(self.backend.read(paths), "reading", _one(paths)) if paths else {}

    def write_many(self, files: Mapping[str, bytes]) -> None:
        """Write every file (overwriting); each file lands whole or not at all. The first
        file that failed is raised, named."""
        if not files:
            return
        failed = self._run(_write_each(self.backend, files), "writing")
        if failed is not None:
            self.raise_for(failed[1], "writing", failed[0])

    def create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only if it does not exist; False if it did."""
        return self._run(self.backend.create(path, data), "writing", path)

    def scan(self, prefixes: list[str], *, follow_symlinks: bool = False) -> Scan:
        """Every file under the ``prefixes`` with its size and listing hash, and the entries
        the listing left out."""
        scan = self.backend.scan(prefixes, follow_symlinks=follow_symlinks)
        return self._run(scan, "listing", _one(prefixes))

    def scan_started(self, prefixes: list[str], *, follow_symlinks: bool = False) -> Pending[Scan]:
        """:meth:`scan`, started on the event loop and collected later
        (:meth:`Pending.result`); meanwhile the caller's thread is free."""
        scan = self.backend.scan(prefixes, follow_symlinks=follow_symlinks)
        where = _one(prefixes)
        return Pending(scan, lambda exc: self.raise_for(exc, "listing", where))

    def listing_info_many(self, prefixes: list[str]) -> Mapping[str, FileInfo]:
        """:meth:`scan`'s files."""
        return self.scan(prefixes).files

    def listing(self, prefix: str) -> dict[str, int]:
        """Every file under the directory ``prefix`` with its size: one recursive listing."""
        return {path: info.size for path, info in self.scan([prefix]).files.items()}

    def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """What ``path`` holds at its first level: one listing."""
        return self._run(self.backend.children(path, stop_at=stop_at), "listing", path)

    def remove(self, paths: Iterable[str]) -> None:
        """Remove files; already-missing ones are fine."""
        paths = list(paths)
        if paths:
            self._run(self.backend.delete(paths), "deleting", _one(paths))

    def leftovers(self, prefixes: list[str]) -> Leftovers:
        """What killed writers left under ``prefixes`` (see ``Backend.leftovers``)."""
        return self._run(self.backend.leftovers(prefixes), "listing", _one(prefixes))

    def remove_leftovers(self, files: list[str], folders: list[str]) -> list[Removed]:
        """Remove temporary ``files``, then ``folders`` while empty; one result each."""
        if not files and not folders:
            return []
        return self._run(
            self.backend.remove_leftovers(files, folders), "deleting", _one([*files, *folders])
        )

    def blocked_folder(self, folders: Iterable[str]) -> str | None:
        """The first of ``folders`` (or of the folders above them) that exists as something
        other than a folder, so nothing can be written below it."""
        return self._run(self.backend.blocked_folder(set(folders)), "listing")

    def iter_file(self, path: str, chunk_size: int = STREAM_CHUNK) -> Iterator[bytes] | None:
        """One file's bytes, as they are, in chunks of at most ``chunk_size``; ``None`` when
        the file is missing. Opened here, read as the caller iterates, closed at the end."""
        chunks = self._run(self.backend.stream(path, chunk_size), "reading", path)
        return None if chunks is None else self._blocking(chunks, path)

    def _blocking(self, chunks: AsyncIterator[bytes], path: str) -> Iterator[bytes]:
        try:
            while True:
                try:
                    yield self._run(_next(chunks), "reading", path)
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                self._run(close(), "reading", path)

    def md5_many(self, paths: list[str], *, fresh: bool = False) -> dict[str, str]:
        """The MD5 (hex) of each file (see :meth:`Backend.md5`: on local disk from the hash
        cache where the file has not changed, unless ``fresh``). A file gone, or replaced by
        a special file, since it was listed is left out; the first failure is raised."""
        out: dict[str, str] = {}
        for path, digest in self.md5_each(paths, fresh=fresh).items():
            if not isinstance(digest, str):
                self.raise_for(digest, "reading", path)
            out[path] = digest
        return out

    def md5_each(self, paths: list[str], *, fresh: bool = False) -> dict[str, str | Exception]:
        """Like :meth:`md5_many`, but a file that cannot be read (after the retries of a
        transient failure) gives its exception instead of failing the whole batch."""
        out: dict[str, str | Exception] = {}
        found = (
            self._run(self.backend.md5(paths, fresh=fresh), "reading", _one(paths)) if paths else {}
        )
        for path, digest in found.items():
            if isinstance(digest, (FileNotFoundError, NotADirectoryError, SpecialFile)):
                continue
            if isinstance(digest, BaseException) and not isinstance(digest, Exception):
                raise digest
            out[path] = digest
        return out


def _one(paths: Sequence[str]) -> str | None:
    """The path an error names for a call on ``paths``: the one, or (``None``) the root."""
    return paths[0] if len(paths) == 1 else None


async def _write_each(backend: Backend, files: Mapping[str, bytes]) -> tuple[str, Exception] | None:
    """Write the files; the first failure and the file it concerns, ``(path, error)``, or
    ``None``. Each file with a call of its own, side by side, so that a failure names its
    file; on a backend that runs inline (local disk) one call, which, when durable,
    syncs each folder once for all its files rather than once per file (about half the
    fsyncs of a generation), the failure naming the path the OS refused."""
    if backend.runs_inline:
        try:
            await backend.write(files)
        except Exception as exc:
            refused = getattr(exc, "filename", None)
            return (refused if isinstance(refused, str) else next(iter(files))), exc
        return None
    outcomes = await asyncio.gather(
        *(backend.write({path: data}) for path, data in files.items()), return_exceptions=True
    )
    for path, outcome in zip(files, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            return path, outcome
    return None


async def _next(chunks: AsyncIterator[bytes]) -> bytes:
    return await chunks.__anext__()
