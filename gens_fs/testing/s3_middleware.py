"""WSGI middleware around moto's app that counts, slows, breaks and holds S3 requests.

The pattern of moto's ``ThreadedMotoServer`` (a werkzeug server in a thread, serving moto's
WSGI app), with one more layer: :class:`S3Middleware` sees every request before moto does
and every response after, in the request's own server thread. It is served on its own
``127.0.0.1`` port, so anything that speaks HTTP — s3fs, boto3, a ``gens-fs`` subprocess,
``aws``, ``rclone`` — goes through it, while setup and inspection go to the plain
:class:`~gens_fs.testing.s3.MotoServer`, never counted nor faulted. Both serve the same
(process-global) moto state.

What it does to a request, in order: count and log it on arrival; hold it if a
:class:`Hold` says so; wait the added latency (and a ``delay`` fault's extra); then answer
a ``500``/``503`` fault itself, or let moto serve it (cutting the response for ``cut``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gens_fs.testing.s3 import LoopbackWSGIServer, moto_app
from gens_fs.testing.s3_requests import FaultPlan, classify_request

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_FAULT_ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "403": (403, "AccessDenied", "Access Denied"),
    "404": (404, "NoSuchKey", "The specified key does not exist."),
}
_HELD_ERROR: Final = (503, "SlowDown", "Held by the test, then dropped unserved.")
_REASONS: Final = {
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass
class RequestRecord:
    """One request the middleware received.

    ``kind`` and ``fault`` are set on arrival; ``status`` when the response starts;
    ``bytes_in`` as moto reads the body; ``bytes_out`` as the body is sent — all final after
    :meth:`S3Middleware.wait_idle`. ``status`` stays ``None`` for a cut without a response.
    ``held`` is true for a request a :class:`Hold` kept and then answered ``503`` without
    letting it reach moto. ``path`` and ``query`` are as sent (percent-encoded).
    ``arrived``: when it arrived (``time.monotonic()``, before anything else happened to
    it), for the request rate the server sees.
    """

    seq: int
    method: str
    path: str
    query: str
    kind: str
    status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    fault: str | None = None
    fault_index: int | None = None
    latency_s: float = 0.0
    held: bool = False
    arrived: float = 0.0


class Hold:
    """Lets ``after`` requests of some kinds through, then holds every further one.

    Made by :meth:`S3Middleware.hold`. A held request waits in its server thread until the
    hold ends, and is then answered ``503 SlowDown`` without reaching moto: whatever a test
    does meanwhile (kill or interrupt the client), the storage is exactly what the requests
    that passed made it. :meth:`wait_holding` is the event a test waits on.
    """

    def __init__(
        self, kinds: frozenset[str] | None, after: int, changed: threading.Condition
    ) -> None:
        self.kinds = kinds
        self.after = after
        self._changed = changed  # the middleware's condition, notified on every change
        self._passed: set[int] = set()
        self._answered = 0
        self._held = 0
        self._active = True

    def wait_holding(self, timeout: float, *, count: int = 1) -> bool:
        """Block until the ``after`` requests that passed have all been answered and
        ``count`` further ones are held; ``False`` on timeout. From then on the client (or
        ``count`` clients) is stuck."""
        with self._changed:
            return self._changed.wait_for(lambda: self._holding(count), timeout)

    def _holding(self, count: int = 1) -> bool:
        return self._answered == self.after and self._held >= count

    def _admit(self, record: RequestRecord) -> bool:
        """Called with the middleware's lock held: whether ``record`` may go on (False:
        it was held, the hold has ended, answer it unserved)."""
        if not self._active or (self.kinds is not None and record.kind not in self.kinds):
            return True
        if len(self._passed) < self.after:
            self._passed.add(record.seq)
            return True
        self._held += 1
        self._changed.notify_all()
        self._changed.wait_for(lambda: not self._active)
        self._held -= 1
        return False

    def _answered_one(self, record: RequestRecord) -> None:
        if record.seq in self._passed:
            self._answered += 1

    def _end(self) -> None:
        self._active = False
        self._changed.notify_all()


class S3Middleware(LoopbackWSGIServer):
    """Counting, latency, faults and holds around moto's WSGI app, on its own endpoint.

    Guarantees:

    * every request is counted when it arrives, before anything else happens to it, so
      once a client holds a response, :meth:`counts` includes its request;
    * each connection is served by its own thread, so concurrent requests (and their added
      latency) overlap instead of queueing;
    * ``latency_s`` and ``faults`` can be changed at any time from any thread; installing a
      plan restarts its request index (and its per-path counts) at 0.

    ``sleep`` is how the middleware waits (latency, ``delay`` faults); tests pass a
    recorder. ``app`` is what it wraps: moto's app unless given.
    """

    def __init__(
        self,
        app: WSGIApplication | None = None,
        *,
        latency_s: float = 0.0,
        faults: FaultPlan | None = None,
        sleep: Callable[[float], None] = time.sleep,
        quiet: bool = True,
    ) -> None:
        super().__init__(quiet=quiet)
        self._app = app
        self.sleep = sleep
        self._changed = threading.Condition()
        self._inflight = 0
        self._seq = 0
        self._counts: dict[str, int] = {}
        self._log: list[RequestRecord] = []
        self._latency_s = 0.0
        self.latency_s = latency_s
        self._faults = faults
        self._fault_index = 0
        self._fault_paths: dict[str, int] = {}  # eligible requests per path (``per_path``)
        self._hold: Hold | None = None

    def wsgi_app(self) -> WSGIApplication:
        return self

    def stop(self) -> None:
        """End any hold (its requests are answered unserved), then stop serving."""
        with self._changed:
            if self._hold is not None:
                self._hold._end()
        super().stop()

    # -- knobs -------------------------------------------------------------------------

    @property
    def latency_s(self) -> float:
        """Seconds added to every request before moto serves it."""
        return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"latency_s must be >= 0, not {value}")
        self._latency_s = float(value)

    @property
    def faults(self) -> FaultPlan | None:
        """The active fault plan, or ``None`` for none."""
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        with self._changed:
            self._faults = plan
            self._fault_index = 0
            self._fault_paths.clear()

    @contextlib.contextmanager
    def hold(self, kinds: Iterable[str] | None = None, *, after: int = 0) -> Iterator[Hold]:
        """Let ``after`` more requests of ``kinds`` (any kind if ``None``) through, then hold
        every further one of them until the block ends (see :class:`Hold`)."""
        if after < 0:
            raise ValueError(f"after must be >= 0, not {after}")
        wanted = None if kinds is None else frozenset(kinds)
        with self._changed:
            if self._hold is not None:
                raise RuntimeError("a hold is already active on this S3Middleware")
            hold = self._hold = Hold(wanted, after, self._changed)
        try:
            yield hold
        finally:
            with self._changed:
                hold._end()
                self._hold = None

    # -- observations ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Requests received per kind since the last reset; kinds never seen are absent."""
        with self._changed:
            return dict(self._counts)

    def reset_counts(self) -> None:
        """Forget all counts and the log (the fault plan's index is kept)."""
        with self._changed:
            self._counts.clear()
            self._log.clear()

    @property
    def log(self) -> list[RequestRecord]:
        """A snapshot list of the records since the last reset, in arrival order."""
        with self._changed:
            return list(self._log)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no request is being handled; ``False`` on timeout.

        After it returns ``True`` every record in :attr:`log` is final.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._inflight == 0, timeout)

    # -- the WSGI application ----------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        record = self._arrive(environ)
        try:
            body = self._respond(environ, _recording(start_response, record), record)
        except BaseException:
            self._depart(record)
            raise
        return _TrackedBody(body, record, self._depart)

    def _arrive(self, environ: WSGIEnvironment) -> RequestRecord:
        method = environ["REQUEST_METHOD"]
        target = urllib.parse.urlsplit(environ.get("REQUEST_URI") or environ["PATH_INFO"])
        query = target.query or environ.get("QUERY_STRING", "")
        kind = classify_request(method, target.path, query, _headers(environ))
        with self._changed:
            record = RequestRecord(self._seq, method, target.path, query, kind)
            record.arrived = time.monotonic()
            self._seq += 1
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._log.append(record)
            self._inflight += 1
            plan = self._faults
            seen = self._fault_paths.get(record.path, 0)
            if plan is not None and plan.applies_to(kind, seen, record.path):
                record.fault_index = self._fault_index
                record.fault = plan.choose(self._fault_index)
                self._fault_index += 1
                self._fault_paths[record.path] = seen + 1
            return record

    def _depart(self, record: RequestRecord) -> None:
        with self._changed:
            self._inflight -= 1
            if self._hold is not None:
                self._hold._answered_one(record)
            self._changed.notify_all()

    def _respond(
        self, environ: WSGIEnvironment, start_response: StartResponse, record: RequestRecord
    ) -> Iterable[bytes]:
        with self._changed:
            admitted = self._hold is None or self._hold._admit(record)
        if not admitted:
            record.held = True
            return _s3_error(start_response, record, *_HELD_ERROR)
        record.latency_s = latency = self.latency_s
        if latency > 0:
            self.sleep(latency)
        plan = self.faults
        if record.fault == "delay" and plan is not None:
            self.sleep(plan.delay_s)
        if record.fault in _FAULT_ERRORS:
            return _s3_error(start_response, record, *_FAULT_ERRORS[record.fault or ""])
        environ["wsgi.input"] = _CountingInput(environ["wsgi.input"], record)
        app = self._app or moto_app()
        if record.fault == "cut":
            return _cut(app, environ, start_response, record)
        return app(environ, start_response)


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The request's headers from a WSGI environ, names lower-case and dashed."""
    return {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }


def _recording(start_response: StartResponse, record: RequestRecord) -> StartResponse:
    def start(
        status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        record.status = int(status.split(None, 1)[0])
        return start_response(status, headers, exc_info)

    return start


class _TrackedBody:
    """A response body that counts what it sends and reports the request done on close
    (the server closes it after the last byte, or when the client went away)."""

    def __init__(
        self,
        body: Iterable[bytes],
        record: RequestRecord,
        done: Callable[[RequestRecord], None],
    ) -> None:
        self._body = body
        self._record = record
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._record.bytes_out += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done(self._record)


class _CountingInput:
    """``wsgi.input`` that counts the request body bytes moto reads."""

    def __init__(self, stream: Any, record: RequestRecord) -> None:
        self._stream = stream
        self._record = record

    def read(self, size: int = -1) -> bytes:
        return self._counted(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._counted(self._stream.readline(size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._counted(line) for line in self._stream.readlines(hint)]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _counted(self, data: bytes) -> bytes:
        self._record.bytes_in += len(data)
        return data


def _s3_error(
    start_response: StartResponse, record: RequestRecord, status: int, code: str, message: str
) -> list[bytes]:
    """An S3-shaped XML error, which botocore parses (and retries for 500/503)."""
    request_id = f"gens-fs-middleware-{record.seq}"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
        f"<Resource>{_xml_escape(record.path)}</Resource>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    headers = [
        ("Content-Type", "application/xml"),
        ("x-amz-request-id", request_id),
        ("Content-Length", str(len(body))),
    ]
    start_response(f"{status} {_REASONS[status]}", headers)
    return [] if record.method == "HEAD" else [body]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(
    app: WSGIApplication,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    record: RequestRecord,
) -> Iterable[bytes]:
    """Serve the request, then send the headers and half the body and close the connection
    (a response cut mid-body); with no body to cut into, close without an answer."""
    status, headers, body = _served_whole(app, environ)
    sock: socket.socket | None = environ.get("werkzeug.socket")
    if record.method == "HEAD" or not body:
        _shut(sock)
        # werkzeug's server treats this as the client going away: no answer, no log.
        raise ConnectionAbortedError("cut fault: connection closed without an answer")
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return _half_then_close(body, sock)


def _half_then_close(body: bytes, sock: socket.socket | None) -> Iterator[bytes]:
    yield body[: len(body) // 2]
    _shut(sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _served_whole(
    app: WSGIApplication, environ: WSGIEnvironment
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run ``app`` to the end: its status line, headers and whole body."""
    started: list[tuple[str, list[tuple[str, str]]]] = []
    chunks: list[bytes] = []

    def start(
        status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        started[:] = [(status, list(headers))]
        return chunks.append

    body = app(environ, start)
    try:
        chunks.extend(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    return status, headers, b"".join(chunks)
