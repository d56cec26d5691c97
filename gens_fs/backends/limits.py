"""Rate limits at the backend boundary: requests a second and bytes a second, for every
request a process sends, however many transfers are in flight.

One :class:`RateLimit` is shared by every backend it is given to (both sides of a sync),
so its limits hold for all of them together. :class:`LimitedBackend` charges it for each
request a primitive sends, before sending (a listing's later pages, and the bytes of a
read, once they are known):

* ``read``: one request per file; the bytes once they arrived;
* ``write``, ``create``: one request per file, its bytes before it is sent;
* ``scan``: on a backend that sends its listing pages through the retry layer
  (:attr:`~gens_fs.backends.base.Backend.pages_retried`: S3), each page as it is sent;
  elsewhere one request per prefix before it, then one per further page the listing took
  (:attr:`~gens_fs.backends.base.Backend.list_page` files a page);
* ``children``, ``copy``, ``stream``: one request (a stream's bytes as each chunk
  arrives); ``delete``: one per :attr:`~gens_fs.backends.base.Backend.delete_batch` files.

The retry layer sits above it, so each attempt is charged. Local disk and memory are never
limited: no request leaves the process.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Final, TypeVar, cast

from gens_fs.backends.base import (
    STREAM_CHUNK,
    Backend,
    Children,
    PageRetry,
    ReadResult,
    Scan,
    WrappedBackend,
)
from gens_fs.errors import StorageError

T = TypeVar("T")

# Requests a limited backend keeps in flight at once (what fsspec's batches give).
_IN_FLIGHT: Final = 128
# A bandwidth limit lets this many seconds' worth of bytes go out at once (the rest waits).
_BYTES_BURST_S: Final = 0.1
_UNITS: Final = {"": 2**10, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_RATE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([bkmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_bandwidth(text: str) -> int:
    """Bytes a second from a ``--bwlimit`` value, as rclone reads it: ``10M`` (10 MiB/s),
    ``512K``, ``1.5G``, ``100B`` (bytes), a bare number in KiB/s. ``StorageError`` for
    anything else."""
    match = _RATE.fullmatch(text)
    if match is None:
        raise StorageError(
            f"bandwidth {text!r} is not a rate: write it as 10M (MiB/s), 512K (KiB/s), "
            "1G or 100B (bytes/s)"
        )
    rate = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if rate < 1:
        raise StorageError(f"bandwidth {text!r} is less than one byte a second")
    return rate


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. A taker reserves its tokens at
    once, in arrival order, and waits until the bucket has made them (the bucket may go
    into debt): over any span of ``T`` seconds at most ``burst + rate * T`` tokens are
    taken, however many takers there are. Not thread-safe: used on the one event loop."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"rate and burst must be > 0, not {rate}, {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._level = self.burst
        self._stamp = time.monotonic()

    def reserve(self, amount: float, now: float | None = None) -> float:
        """Take ``amount`` tokens; the seconds to wait before using them."""
        now = time.monotonic() if now is None else now
        self._level = min(self.burst, self._level + max(0.0, now - self._stamp) * self.rate)
        self._stamp = max(now, self._stamp)
        self._level -= amount
        return max(0.0, -self._level / self.rate)


class RateLimit:
    """Limits on the requests a process sends: ``tps`` requests a second, all kinds
    (rclone's ``--tpslimit``: at most one ahead of the rate), and ``bandwidth`` bytes a
    second through the process (an ``int``, or text as for ``--bwlimit``: ``"10M"``; a
    tenth of a second's worth may go out at once). Give one object to every backend that
    is to share the limits (:func:`~gens_fs.backends.open.open_backend`'s ``limit``)."""

    def __init__(self, tps: float | None = None, bandwidth: int | str | None = None) -> None:
        if tps is not None and not tps > 0:
            raise StorageError(f"tpslimit must be more than 0 requests a second, not {tps}")
        if isinstance(bandwidth, str):
            bandwidth = parse_bandwidth(bandwidth)
        if bandwidth is not None and bandwidth < 1:
            raise StorageError(f"bandwidth must be at least 1 byte a second, not {bandwidth}")
        self.tps = tps
        self.bandwidth = bandwidth
        self._requests = None if tps is None else TokenBucket(tps, 1)
        self._bytes = (
            None
            if bandwidth is None
            else TokenBucket(bandwidth, max(1.0, bandwidth * _BYTES_BURST_S))
        )

    def __repr__(self) -> str:
        return f"RateLimit(tps={self.tps!r}, bandwidth={self.bandwidth!r})"

    async def send(self, requests: int = 1, size: int = 0) -> None:
        """Wait until ``requests`` requests carrying ``size`` bytes may go out."""
        now = time.monotonic()
        wait = 0.0
        if self._requests is not None and requests:
            wait = self._requests.reserve(requests, now)
        if self._bytes is not None and size:
            wait = max(wait, self._bytes.reserve(size, now))
        if wait > 0:
            await asyncio.sleep(wait)

    async def received(self, size: int) -> None:
        """Charge ``size`` bytes that arrived; wait the debt off (so the next request of
        this caller goes out once the average is back within the limit)."""
        await self.send(0, size)


class LimitedBackend(WrappedBackend):
    """``inner`` with every request charged to ``limit`` (see the module docstring).
    Everything else (paths, URLs, capabilities, error mapping) is ``inner``'s."""

    def __init__(self, inner: Backend, limit: RateLimit) -> None:
        super().__init__(inner)
        self.limit = limit

    def around(self, inner: Backend) -> LimitedBackend:
        return LimitedBackend(inner, self.limit)

    async def read(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        async def one(path: str) -> ReadResult:
            await self.limit.send()
            found = (await self.inner.read([path]))[path]
            if isinstance(found, bytes):
                await self.limit.received(len(found))
            return found

        values = await _bounded([one(p) for p in paths])
        return dict(zip(paths, values, strict=True))

    async def write(self, files: Mapping[str, bytes]) -> None:
        async def one(path: str, data: bytes) -> None:
            await self.limit.send(1, len(data))
            await self.inner.write({path: data})

        await _bounded([one(path, data) for path, data in files.items()])

    async def create(self, path: str, data: bytes) -> bool:
        await self.limit.send(1, len(data))
        return await self.inner.create(path, data)

    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        if self.inner.pages_retried:  # each request charged as it is sent, retries too
            charged = self._charging(retry_page)
            return await self.inner.scan(
                prefixes, follow_symlinks=follow_symlinks, retry_page=charged
            )

        async def one(prefix: str) -> Scan:
            await self.limit.send()
            found = await self.inner.scan([prefix], follow_symlinks=follow_symlinks)
            pages = max(1, math.ceil(len(found.files) / self.inner.list_page))
            await self.limit.send(pages - 1)
            return found

        parts = await asyncio.gather(*(one(p) for p in prefixes))
        return Scan(
            {path: info for part in parts for path, info in part.files.items()},
            [entry for part in parts for entry in part.ignored],
        )

    def _charging(self, retry_page: PageRetry | None) -> PageRetry:
        """A ``retry_page`` that charges every attempt of a listing request before it is
        sent (the retry layer's ``retry_page`` around that, when there is one)."""
        limit = self.limit

        def charged(attempt: Callable[[], Awaitable[T]]) -> Awaitable[T]:
            async def sent() -> T:
                await limit.send()
                return await attempt()

            return sent() if retry_page is None else retry_page(sent)

        return charged

    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        await self.limit.send()
        return await self.inner.children(path, stop_at=stop_at)

    async def delete(self, paths: Sequence[str]) -> None:
        batch = max(1, self.inner.delete_batch)
        for start in range(0, len(paths), batch):
            await self.limit.send()
            await self.inner.delete(paths[start : start + batch])

    async def copy(self, src: str, dst: str, size: int) -> None:
        await self.limit.send()
        await self.inner.copy(src, dst, size)

    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        await self.limit.send()
        chunks = await self.inner.stream(path, chunk_size)
        return None if chunks is None else self._charged(chunks)

    async def _charged(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                await self.limit.received(len(chunk))
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()


def with_limit(backend: Backend, limit: RateLimit | None) -> Backend:
    """``backend`` charging ``limit`` for its requests (one limited already: ``limit``
    instead of its own; ``None``: no limit); one whose reads cost no request (local disk,
    memory) as it is. Applied under the retry layer, so that each attempt is charged."""
    from gens_fs.backends.retried import RetriedBackend  # the layer above this one

    if isinstance(backend, RetriedBackend):
        return RetriedBackend(with_limit(backend.inner, limit), backend.policy, backend.pacer)
    inner = backend.inner if isinstance(backend, LimitedBackend) else backend
    if limit is None or not inner.capabilities.costs_requests:
        return inner
    return LimitedBackend(inner, limit)


async def _bounded(coros: Sequence[Awaitable[T]]) -> list[T]:
    """Every coroutine's result in order, at most :data:`_IN_FLIGHT` at once; each one
    runs to its end, then the first failure, if any, is raised."""
    gate = asyncio.Semaphore(_IN_FLIGHT)

    async def one(coro: Awaitable[T]) -> T:
        async with gate:
            return await coro

    outcomes = await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return cast(list[T], outcomes)
