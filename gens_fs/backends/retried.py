"""The retry layer at the backend boundary: a :class:`Backend` that retries another's
primitives with one :class:`~gens_fs.backends.retry.RetryPolicy`.

:func:`~gens_fs.backends.open.open_backend` puts every object store (and every other
fsspec filesystem: each one costs requests) behind it, so that a ``load``, a ``write``, a
``check`` and a ``sync`` retry the same errors the same number of times, whichever client
serves the storage. What each primitive retries:

* ``read``: only the files whose read failed with a transient error, together, after one
  wait; a missing file is an answer, never retried;
* ``write``: each file on its own (one failing file does not send the others again);
* ``create``: the conditional create again. A create that finds the file there reads it
  (one GET): the bytes it sent mean that an earlier attempt landed and only its answer was
  lost (``True``), other bytes that another writer won (``False``). An earlier attempt
  may be hidden: the HTTP client (aiohttp, under s3fs and the Azure SDK) sends a PUT
  again by itself when the connection closes before any answer, and the second one then
  finds the first one's file. Two writers racing with byte-identical files cannot be told
  apart, and both are told they created it: the store holds what each of them meant;
* ``scan``: each listing page on its own where the backend sends its pages through the
  layer (:attr:`~gens_fs.backends.base.Backend.pages_retried`: S3, and GCS with the
  obstore engine), so a page that fails is asked for again, not the thousand before it;
  elsewhere each prefix's listing, whole;
* ``children``: the probe, retried only within :data:`~gens_fs.backends.base.PROBE_TIMEOUT_S`
  of its first attempt, so that an endpoint that cannot be used is still reported within
  that bound;
* ``delete``, ``copy``: the call again (both are idempotent);
* ``stream``: the opening request; a body cut while the caller reads it is the caller's
  error (chunks already given cannot be taken back).

Every attempt of every primitive first waits its turn at the backend's
:class:`~gens_fs.backends.retry.AdaptiveRate`, which a throttling answer (``503 SlowDown``)
engages: after one, the whole backend sends slower, not only the request retried. A read
round then sends its files one by one, each at its turn.

Local disk and memory are not put behind it: nothing between them and the process fails
and then works a moment later, and local disk's coroutines run inline in the caller's
thread, where a wait would block it.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)

from gens_fs.backends.base import (
    PROBE_TIMEOUT_S,
    STREAM_CHUNK,
    Backend,
    Children,
    PageRetry,
    ReadResult,
    Scan,
    WrappedBackend,
)
from gens_fs.backends.file_table import FileTable
from gens_fs.backends.retry import AdaptiveRate, RetryPolicy, T, is_transient, retrying

# Writes in flight at once (what fsspec's batched gather gives a batch of writes).
_IN_FLIGHT = 128


class RetriedBackend(WrappedBackend):
    """``inner`` with each primitive retried as ``policy`` says (see the module
    docstring). Everything else (paths, URLs, capabilities, error mapping) is
    ``inner``'s. ``pacer``: the backend's throttling state, shared by the same storage
    under other roots (:meth:`at`)."""

    def __init__(
        self, inner: Backend, policy: RetryPolicy, pacer: AdaptiveRate | None = None
    ) -> None:
        super().__init__(inner)
        self.policy = policy
        self.pacer = pacer if pacer is not None else AdaptiveRate()

    def around(self, inner: Backend) -> RetriedBackend:
        return RetriedBackend(inner, self.policy, self.pacer)

    async def read(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        out = await self._read_round(paths)
        tries = 1
        pending = _retryable(out, paths)
        while pending and tries < self.policy.attempts:
            await asyncio.sleep(self.policy.jittered(tries))
            tries += 1
            out.update(await self._read_round(pending))
            pending = _retryable(out, pending)
        return out

    async def _read_round(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        """One read of ``paths``, as one call, or file by file while the pacer paces; a
        transient failure of a whole call is each of its paths'."""
        if self.pacer.rate() is None:
            return await self._read_call(paths, len(paths))
        gate = asyncio.Semaphore(_IN_FLIGHT)

        async def one(path: str) -> dict[str, ReadResult]:
            async with gate:
                return await self._read_call([path], 1)

        out: dict[str, ReadResult] = {}
        for part in await asyncio.gather(*(one(p) for p in paths)):
            out.update(part)
        return out

    async def _read_call(self, paths: Sequence[str], requests: int) -> dict[str, ReadResult]:
        sent = await self.pacer.turn(requests)
        try:
            found = dict(await self.inner.read(paths))
        except Exception as exc:
            if not is_transient(exc):
                raise
            found = dict.fromkeys(paths, exc)
        for value in found.values():
            if isinstance(value, Exception):
                self.pacer.observe(value, sent)
        return found

    async def write(self, files: Mapping[str, bytes]) -> None:
        limit = asyncio.Semaphore(_IN_FLIGHT)

        async def one(path: str, data: bytes) -> None:
            async with limit:
                await retrying(
                    self.policy,
                    lambda: self.inner.write({path: data}),
                    what=path,
                    pacer=self.pacer,
                )

        await _all(one(path, data) for path, data in files.items())

    async def create(self, path: str, data: bytes) -> bool:
        async def attempt() -> bool:
            return await self.inner.create(path, data) or await self._holds(path, data)

        return await retrying(self.policy, attempt, what=f"create {path}", pacer=self.pacer)

    async def _holds(self, path: str, data: bytes) -> bool:
        """Whether ``path`` holds exactly ``data`` (one read, retried as any read)."""
        found = (await self.read([path]))[path]
        if isinstance(found, Exception):
            raise found
        return found == data

    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        if self.inner.pages_retried:  # each page retried on its own, where it failed
            return await self.inner.scan(
                prefixes, follow_symlinks=follow_symlinks, retry_page=self._retry_page
            )

        async def one(prefix: str) -> Scan:
            return await retrying(
                self.policy,
                lambda: self.inner.scan([prefix], follow_symlinks=follow_symlinks),
                what=f"listing {prefix}",
                pacer=self.pacer,
            )

        parts = await asyncio.gather(*(one(p) for p in prefixes))
        ignored = [entry for part in parts for entry in part.ignored]
        return Scan(FileTable.merged(part.files for part in parts), ignored)

    def _retry_page(self, attempt: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return retrying(self.policy, attempt, what="a listing page", pacer=self.pacer)

    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        return await retrying(
            self.policy,
            lambda: self.inner.children(path, stop_at=stop_at),
            what=f"listing {path}",
            within_s=PROBE_TIMEOUT_S,
            pacer=self.pacer,
        )

    async def delete(self, paths: Sequence[str]) -> None:
        await retrying(
            self.policy, lambda: self.inner.delete(paths), what="delete", pacer=self.pacer
        )

    async def copy(self, src: str, dst: str, size: int) -> None:
        await retrying(
            self.policy,
            lambda: self.inner.copy(src, dst, size),
            what=f"copy {src}",
            pacer=self.pacer,
        )

    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        return await retrying(
            self.policy, lambda: self.inner.stream(path, chunk_size), what=path, pacer=self.pacer
        )


def with_retries(backend: Backend, policy: RetryPolicy) -> Backend:
    """``backend`` behind the retry layer with ``policy`` (one already behind it gets
    ``policy`` instead of its own); a backend whose reads cost no request (local disk,
    memory) as it is."""
    pacer = backend.pacer if isinstance(backend, RetriedBackend) else None
    inner = backend.inner if isinstance(backend, RetriedBackend) else backend
    if not inner.capabilities.costs_requests:
        return inner
    return RetriedBackend(inner, policy, pacer)


def _retryable(found: Mapping[str, ReadResult], paths: Iterable[str]) -> list[str]:
    """The paths whose read failed with a transient error."""
    return [p for p in paths if _is_transient_failure(found[p])]


def _is_transient_failure(result: ReadResult) -> bool:
    return isinstance(result, Exception) and is_transient(result)


async def _all(coros: Iterable[Awaitable[None]]) -> None:
    """Await every one to its end, then raise the first failure, if any (none is left
    running behind the caller's back)."""
    for outcome in await asyncio.gather(*coros, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome
