"""Shared benchmark pieces: an S3 endpoint in its own process, and measuring helpers.

The moto server and the counting/latency middleware around it (``gens_fs.testing.s3`` and
``gens_fs.testing.s3_middleware``) run in a child process, so the client CPU a benchmark
reports (``time.process_time`` of this process, or ``RUSAGE_CHILDREN`` for peer tools run as
subprocesses) is the client's alone. The child is driven over a pipe: set latency, read and
reset request counts, read its CPU time, create and delete buckets (through the plain
endpoint, uncounted), store objects straight into moto's state (seeding large stores), and
load a local folder into a bucket the same way (no HTTP: a store of tens of thousands of
files in seconds, for the scenarios that need one already there).
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def _serve(conn: Connection) -> None:
    from gens_fs.testing.s3 import MotoServer, create_bucket, delete_bucket
    from gens_fs.testing.s3_middleware import S3Middleware

    with MotoServer() as moto, S3Middleware() as middleware:
        conn.send(middleware.endpoint_url)
        while True:
            command, arg = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            if command == "latency":
                middleware.latency_s = float(arg)
                conn.send(None)
            elif command == "counts":
                middleware.wait_idle()
                conn.send(middleware.counts())
            elif command == "reset":
                middleware.reset_counts()
                conn.send(None)
            elif command == "bucket":
                create_bucket(moto.endpoint_url, str(arg))
                conn.send(None)
            elif command == "drop":
                delete_bucket(moto.endpoint_url, str(arg))
                conn.send(None)
            elif command == "put":
                _put_objects(*arg)
                conn.send(None)
            elif command == "cpu":
                conn.send(time.process_time())
            elif command == "arrivals":
                middleware.wait_idle()
                conn.send([record.arrived for record in middleware.log])
            elif command == "load":
                conn.send(_load(*arg))


def _moto_state() -> Any:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def _put_objects(bucket: str, files: dict[str, bytes]) -> None:
    """Store ``files`` (key -> bytes) in moto's state directly, not over HTTP: seeding 10^5
    objects takes seconds instead of minutes. Only setup goes this way; what a benchmark
    measures goes through the middleware."""
    backend = _moto_state()
    for key, data in files.items():
        backend.put_object(bucket, key, data)


def _load(bucket: str, prefix: str, folder: str) -> int:
    """Put every file under ``folder`` at ``prefix/<its relative path>`` in ``bucket``, in
    moto's state directly (its ETag the MD5 of the bytes, as a PUT would give it)."""
    backend = _moto_state()
    count = 0
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
            backend.put_object(bucket, key, path.read_bytes())
            count += 1
    return count


class S3Service:
    """moto + counting middleware in a child process; ``endpoint_url`` is the middleware's."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        self.endpoint_url: str = self._conn.recv()

    def _call(self, command: str, arg: object = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    def set_latency(self, seconds: float) -> None:
        self._call("latency", seconds)

    def counts(self) -> dict[str, int]:
        """Requests by kind since the last reset (waits for in-flight ones to finish)."""
        return dict(self._call("counts"))

    def reset_counts(self) -> None:
        self._call("reset")

    def cpu(self) -> float:
        """The server process's CPU seconds so far (moto and the middleware, every thread):
        what the server spent on a step is the difference around it."""
        return float(self._call("cpu"))

    def arrivals(self) -> list[float]:
        """When each request since the last reset arrived (``time.monotonic()``: one clock
        for every process on the machine), in order; waits for in-flight ones."""
        return list(self._call("arrivals"))

    def create_bucket(self, name: str) -> None:
        self._call("bucket", name)

    def put_objects(self, bucket: str, files: dict[str, bytes]) -> None:
        """Store ``files`` (key -> bytes) in ``bucket`` directly in moto's state (setup only:
        no request is counted or delayed)."""
        self._call("put", (bucket, files))

    def delete_bucket(self, name: str) -> None:
        """Delete bucket ``name`` and everything in it (frees the server's memory)."""
        self._call("drop", name)

    def load(self, bucket: str, prefix: str, folder: Path) -> int:
        """Put ``folder``'s files under ``s3://bucket/prefix/`` without HTTP; how many."""
        return int(self._call("load", (bucket, prefix, str(folder))))

    def close(self) -> None:
        if self._process.is_alive():
            self._call("stop")
            self._process.join(10)

    def __enter__(self) -> S3Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Measurement:
    """One timed run: wall seconds, client CPU seconds, requests by kind, and the S3
    server's CPU seconds while it served them (moto and the middleware, one process)."""

    name: str
    wall_s: float
    cpu_s: float
    requests: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def measure(name: str, service: S3Service | None = None) -> Iterator[Measurement]:
    """Time the block; CPU is this process's plus any subprocess it waited for. With a
    ``service``: its requests, and its CPU from before the block to its last answer."""
    result = Measurement(name, 0.0, 0.0)
    if service is not None:
        service.reset_counts()
        server0 = service.cpu()
    cpu0, child0, wall0 = time.process_time(), _children_cpu(), time.perf_counter()
    yield result
    result.wall_s = time.perf_counter() - wall0
    result.cpu_s = time.process_time() - cpu0 + _children_cpu() - child0
    if service is not None:
        result.requests = service.counts()  # waits for the requests still being answered
        result.server_cpu_s = service.cpu() - server0


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The fastest of ``runs`` wall-clock timings of ``fn`` (less noise than the mean)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def format_requests(requests: dict[str, int]) -> str:
    return " ".join(f"{kind}={n}" for kind, n in sorted(requests.items())) or "-"
