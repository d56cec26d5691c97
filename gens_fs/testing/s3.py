"""S3 on loopback for tests and benchmarks: a moto server, a measuring proxy, s3fs options.

* :class:`MotoServer` runs moto in server mode on ``127.0.0.1`` (a free port), so s3fs talks
  real HTTP to it exactly as it would to S3.
* :class:`S3Proxy` sits between a client and any S3 endpoint. It counts requests by S3
  operation kind (:func:`classify_request`), adds a fixed latency per request and injects
  faults (5xx, mid-body cuts, delays) reproducibly from a seed — what a sync's request
  budget and retry behaviour are tested and benchmarked against.
* :func:`s3_storage_options` gives s3fs options that cannot reach past loopback whatever the
  machine's ``AWS_*`` variables say.

moto, boto3 and botocore are imported lazily, inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import random
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

LOOPBACK: Final = "127.0.0.1"
DUMMY_CREDENTIAL: Final = "testing"
REGION: Final = "us-east-1"

# Operation kinds, as counted by S3Proxy.
OP_KINDS: Final = (
    "LIST",
    "GET",
    "HEAD",
    "HEAD_BUCKET",
    "PUT",
    "COPY",
    "DELETE",
    "DELETE_MULTI",
    "MULTIPART",
    "CREATE_BUCKET",
    "OTHER",
)
FAULT_KINDS: Final = ("500", "503", "cut", "delay")

# Query parameters that only shape a bucket listing (anything else on a bucket GET is a
# sub-resource such as ?location or ?versioning, i.e. OTHER).
_LIST_PARAMS: Final = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "marker",
        "encoding-type",
        "fetch-owner",
        "versions",
        "key-marker",
        "version-id-marker",
        "x-id",
    }
)
# Query parameters that do not change what an object GET/HEAD/PUT/DELETE is.
_OBJECT_PARAMS: Final = frozenset(
    {
        "versionId",
        "partNumber",
        "x-id",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
    }
)
# Headers a proxy must not forward as they are (RFC 9110 §7.6.1, plus the framing headers
# the proxy rewrites itself and Expect, which it has already answered).
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_COPY_CHUNK: Final = 64 * 1024
_FAULT_ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
}


def classify_request(
    method: str, path: str, query: str, headers: Mapping[str, str] | Message
) -> str:
    """Name the S3 operation of a path-style request: one of :data:`OP_KINDS`.

    Pure and total: anything not recognised is ``OTHER``. Path-style addressing only
    (``/<bucket>/<key>``), which is what botocore uses for an IP-address endpoint.
    """
    method = method.upper()
    bucket, _, key = path.lstrip("/").partition("/")
    params = {name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
    if not bucket:
        return "OTHER"  # ListBuckets and the like
    if "uploads" in params or "uploadId" in params:
        return "MULTIPART"
    if not key:
        return _classify_bucket(method, params)
    return _classify_object(method, params, headers)


def _classify_bucket(method: str, params: set[str]) -> str:
    if method == "GET" and params <= _LIST_PARAMS:
        return "LIST"
    if method == "HEAD" and not params:
        return "HEAD_BUCKET"
    if method == "PUT" and not params:
        return "CREATE_BUCKET"
    if method == "POST" and "delete" in params:
        return "DELETE_MULTI"
    return "OTHER"


def _classify_object(method: str, params: set[str], headers: Mapping[str, str] | Message) -> str:
    if not params <= _OBJECT_PARAMS:
        return "OTHER"  # ?tagging, ?acl, ?retention, ...
    if method == "PUT":
        return "COPY" if headers.get("x-amz-copy-source") else "PUT"
    simple = {"GET": "GET", "HEAD": "HEAD", "DELETE": "DELETE"}
    return simple.get(method, "OTHER")


@dataclass(frozen=True)
class FaultPlan:
    """Which requests the proxy breaks, as a pure function of a seed and a request index.

    The n-th request that the plan applies to (counted from when the plan was installed on
    the proxy, among requests whose kind is in ``only_ops``, or all if ``None``) gets the
    fault :meth:`choose` returns for ``n`` — so the same seed breaks the same requests of a
    sequential request sequence, run after run, whatever the timing.

    Kinds: ``"500"`` (S3 ``InternalError``) and ``"503"`` (S3 ``SlowDown``) are answered by
    the proxy without forwarding; ``"cut"`` forwards, then sends the response headers and
    half the body (nothing at all when there is no body) and closes the connection;
    ``"delay"`` sleeps ``delay_s`` more before forwarding normally.
    """

    rate: float = 0.05
    seed: int = 1
    kinds: tuple[str, ...] = FAULT_KINDS
    only_ops: tuple[str, ...] | None = None
    delay_s: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {self.rate}")
        if not self.kinds or not set(self.kinds) <= set(FAULT_KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {FAULT_KINDS}: {self.kinds}")
        if self.only_ops is not None and not set(self.only_ops) <= set(OP_KINDS):
            raise ValueError(f"only_ops must be a subset of {OP_KINDS}: {self.only_ops}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, not {self.delay_s}")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.only_ops is not None:
            object.__setattr__(self, "only_ops", tuple(self.only_ops))

    def applies_to(self, kind: str) -> bool:
        """Whether requests of this operation kind take part in the fault sequence."""
        return self.only_ops is None or kind in self.only_ops

    def choose(self, index: int) -> str | None:
        """The fault for the ``index``-th eligible request, or ``None``. Deterministic."""
        rng = random.Random(f"gens_fs.faults:{self.seed}:{index}")
        if rng.random() >= self.rate:
            return None
        return rng.choice(self.kinds)

    def faulted(self, count: int) -> list[tuple[int, str]]:
        """``(index, fault)`` for every faulted index below ``count`` — what to expect."""
        return [(i, f) for i in range(count) if (f := self.choose(i)) is not None]


@dataclass
class RequestRecord:
    """One request the proxy received.

    ``kind`` and ``fault`` are set on arrival; ``status`` before the response is sent;
    ``bytes_out`` once the body is sent — all final after :meth:`S3Proxy.wait_idle`.
    ``status`` stays ``None`` for a cut without a response. ``bytes_in``/``bytes_out``
    count bodies only (as framed on the wire: an aws-chunked body counts its framing).
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


class _ProxyHTTPServer(ThreadingHTTPServer):
    """A threaded server that knows its proxy; one daemon thread per client connection."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, proxy: S3Proxy) -> None:
        self.proxy = proxy
        super().__init__((LOOPBACK, 0), _ProxyHandler)


class S3Proxy:
    """A counting, slowing, fault-injecting HTTP/1.1 reverse proxy in front of an S3 endpoint.

    Guarantees:

    * binds ``127.0.0.1`` on a free port; each client connection is served by its own thread
      with its own keep-alive upstream connection, so concurrent requests (and their added
      latency) overlap instead of queueing;
    * every request is counted when it arrives, before anything is forwarded, so once a
      client holds a response, :meth:`counts` includes its request;
    * request bodies (``Content-Length`` or ``Transfer-Encoding: chunked``, including
      botocore's ``aws-chunked`` content) are read whole and forwarded byte for byte with a
      ``Content-Length``; response bodies stream through as they arrive; the ``Host`` header
      is forwarded unchanged so SigV4 signatures stay valid;
    * ``latency_s`` and ``faults`` can be changed at any time from any thread; installing a
      plan restarts its request index at 0.

    ``sleep`` is how the proxy waits (latency, ``delay`` faults); tests pass a recorder.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        latency_s: float = 0.0,
        faults: FaultPlan | None = None,
        sleep: Callable[[float], None] = time.sleep,
        upstream_timeout_s: float = 60.0,
    ) -> None:
        parts = urllib.parse.urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream_url must be http(s)://host[:port], not {upstream_url!r}")
        self.upstream_url = upstream_url
        self._upstream_scheme = parts.scheme
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port
        self._upstream_prefix = parts.path.rstrip("/")
        self.upstream_timeout_s = upstream_timeout_s
        self.sleep = sleep
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._seq = 0
        self._counts: dict[str, int] = {}
        self._log: list[RequestRecord] = []
        self._latency_s = 0.0
        self.latency_s = latency_s
        self._faults: FaultPlan | None = faults
        self._fault_index = 0
        self._sockets: set[socket.socket] = set()
        self._server: _ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> S3Proxy:
        """Bind and serve in a background thread. Returns ``self``."""
        if self._server is not None:
            raise RuntimeError("S3Proxy already started")
        self._server = _ProxyHTTPServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
            name="S3Proxy",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every client connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> S3Proxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` — what clients use instead of the upstream URL."""
        if self._server is None:
            raise RuntimeError("S3Proxy is not started")
        port = self._server.server_address[1]
        return f"http://{LOOPBACK}:{port}"

    # -- knobs -------------------------------------------------------------------------

    @property
    def latency_s(self) -> float:
        """Seconds added to every request before it is forwarded."""
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
        with self._lock:
            self._faults = plan
            self._fault_index = 0

    # -- observations ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Requests received per kind since the last reset; kinds never seen are absent."""
        with self._lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        """Forget all counts and the log (the fault plan's index is kept)."""
        with self._lock:
            self._counts.clear()
            self._log.clear()

    @property
    def log(self) -> list[RequestRecord]:
        """A snapshot list of the records since the last reset, in arrival order."""
        with self._lock:
            return list(self._log)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no request is being handled; ``False`` on timeout.

        After it returns ``True`` every record in :attr:`log` is final.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    # -- used by the handler -----------------------------------------------------------

    def _begin(self, method: str, path: str, query: str, kind: str) -> RequestRecord:
        with self._lock:
            record = RequestRecord(self._seq, method, path, query, kind)
            self._seq += 1
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._log.append(record)
            self._inflight += 1
            plan = self._faults
            if plan is not None and plan.applies_to(kind):
                record.fault_index = self._fault_index
                record.fault = plan.choose(self._fault_index)
                self._fault_index += 1
            return record

    def _end(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def _track(self, sock: socket.socket, active: bool) -> None:
        with self._lock:
            if active:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def _connect_upstream(self) -> http.client.HTTPConnection:
        cls = (
            http.client.HTTPSConnection
            if self._upstream_scheme == "https"
            else http.client.HTTPConnection
        )
        return cls(self._upstream_host, self._upstream_port, timeout=self.upstream_timeout_s)

    @property
    def _upstream_netloc(self) -> str:
        port = f":{self._upstream_port}" if self._upstream_port else ""
        return f"{self._upstream_host}{port}"


class _ProxyHandler(BaseHTTPRequestHandler):
    """Serves one client connection: any number of keep-alive requests, in order."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms per response on Linux).
    disable_nagle_algorithm = True
    server: _ProxyHTTPServer
    _upstream: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, False)
            if self._upstream is not None:
                self._upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the proxy's log is :attr:`S3Proxy.log`."""

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        split = urllib.parse.urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self.send_error(400, "Bad request framing")
            return
        kind = classify_request(self.command, split.path, split.query, self.headers)
        record = proxy._begin(self.command, split.path, split.query, kind)
        try:
            record.bytes_in = len(body)
            self._serve(proxy, record, body)
        finally:
            proxy._end()

    def _serve(self, proxy: S3Proxy, record: RequestRecord, body: bytes) -> None:
        latency = proxy.latency_s
        record.latency_s = latency
        if latency > 0:
            proxy.sleep(latency)
        plan = proxy.faults
        if record.fault == "delay" and plan is not None:
            proxy.sleep(plan.delay_s)
        if record.fault in _FAULT_ERRORS:
            self._send_s3_error(record, *_FAULT_ERRORS[record.fault or ""])
            return
        try:
            response = self._forward(proxy, body)
        except (OSError, http.client.HTTPException) as exc:
            self._send_s3_error(record, 502, "BadGateway", f"upstream failed: {exc!r}")
            return
        if record.fault == "cut":
            self._send_cut(record, response)
        else:
            self._relay(record, response)

    # -- request side ------------------------------------------------------------------

    def _read_body(self) -> bytes:
        """The whole request body, de-chunked if it came with ``Transfer-Encoding: chunked``."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        data = self.rfile.read(length) if length else b""
        if len(data) != length:
            raise ValueError("request body shorter than Content-Length")
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ValueError("connection closed inside a chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # HTTP trailers: dropped
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(3)  # CRLF after the chunk data

    def _forward(self, proxy: S3Proxy, body: bytes) -> http.client.HTTPResponse:
        """Send the request upstream; retry once on a fresh connection if a reused one died."""
        reused = self._upstream is not None
        try:
            return self._send_upstream(proxy, body)
        except (ConnectionError, http.client.BadStatusLine):
            if not reused:
                raise
        return self._send_upstream(proxy, body)

    def _send_upstream(self, proxy: S3Proxy, body: bytes) -> http.client.HTTPResponse:
        if self._upstream is None:
            self._upstream = proxy._connect_upstream()
            self._upstream.connect()
            self._upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self._upstream
        try:
            conn.putrequest(
                self.command,
                proxy._upstream_prefix + self.path,
                skip_host=True,
                skip_accept_encoding=True,
            )
            if "Host" not in self.headers:
                conn.putheader("Host", proxy._upstream_netloc)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            if body or self._had_body_framing():
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            return conn.getresponse()
        except BaseException:
            conn.close()
            self._upstream = None
            raise

    def _had_body_framing(self) -> bool:
        return "Content-Length" in self.headers or "Transfer-Encoding" in self.headers

    # -- response side -----------------------------------------------------------------

    def _send_head(self, record: RequestRecord, response: http.client.HTTPResponse) -> None:
        record.status = response.status
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)

    def _has_body(self, status: int) -> bool:
        return self.command != "HEAD" and status not in (204, 304) and status >= 200

    def _relay(self, record: RequestRecord, response: http.client.HTTPResponse) -> None:
        """Stream the upstream response to the client, keeping its framing correct."""
        self._send_head(record, response)
        length = response.getheader("Content-Length")
        if response.will_close:
            self._upstream = None  # http.client closes it once the body is read
        if not self._has_body(response.status):
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            response.read()
            return
        chunked = length is None
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", length)
        self.end_headers()
        try:
            self._copy_body(record, response, chunked)
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # the client cannot tell where the body ended
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None

    def _copy_body(
        self, record: RequestRecord, response: http.client.HTTPResponse, chunked: bool
    ) -> None:
        while data := response.read(_COPY_CHUNK):
            record.bytes_out += len(data)
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _send_cut(self, record: RequestRecord, response: http.client.HTTPResponse) -> None:
        """Headers and half the body, then close: a response cut mid-body."""
        body = response.read()
        if response.will_close:
            self._upstream = None
        self.close_connection = True
        if not self._has_body(response.status) or not body:
            return  # nothing to cut into: drop the connection without an answer
        self._send_head(record, response)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        part = body[: len(body) // 2]
        self.wfile.write(part)
        record.bytes_out = len(part)
        self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_s3_error(self, record: RequestRecord, status: int, code: str, message: str) -> None:
        """An S3-shaped XML error, which botocore parses (and retries for 500/503)."""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
            f"<Resource>{_xml_escape(record.path)}</Resource>"
            f"<RequestId>gens-fs-proxy-{record.seq}</RequestId></Error>"
        ).encode()
        record.status = status
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", f"gens-fs-proxy-{record.seq}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            record.bytes_out = len(body)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- moto --------------------------------------------------------------------------------


def _cache_moto_module_list() -> None:
    """Make moto's request dispatch stop re-reading its own package directory.

    moto's server asks ``moto.backends.list_of_moto_modules()`` on every request, and that
    lists moto's folder and stats ~180 entries each time: measured here, about a third of
    the server's CPU per S3 GET. The list cannot change while the process runs, so it is
    computed once. Behaviour is unchanged; only the server gets cheaper, which matters
    because the server's CPU bounds every tool in the benchmarks on a 2-core machine.
    """
    import moto.backends

    if getattr(moto.backends.list_of_moto_modules, "gens_fs_cached", False):
        return
    modules = tuple(moto.backends.list_of_moto_modules())

    def cached() -> tuple[str, ...]:
        return modules

    cached.gens_fs_cached = True  # type: ignore[attr-defined]
    moto.backends.list_of_moto_modules = cached


class MotoServer:
    """moto in server mode (a werkzeug thread in this process) on ``127.0.0.1``, free port.

    moto's state is process-global: everything created through any MotoServer (or
    ``mock_aws``) in this process is shared until :meth:`reset`.
    """

    def __init__(self, *, quiet: bool = True) -> None:
        """``quiet`` raises the ``werkzeug`` logger to WARNING: no line per request on stderr."""
        self._server: Any = None
        self._endpoint_url: str | None = None
        self._quiet = quiet

    def start(self) -> MotoServer:
        """Start serving; returns once the port is bound. Returns ``self``."""
        if self._server is not None:
            raise RuntimeError("MotoServer already started")
        from moto.server import ThreadedMotoServer

        _cache_moto_module_list()
        if self._quiet:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Idempotent."""
        server, self._server = self._server, None
        self._endpoint_url = None
        if server is None:
            return
        server.stop()
        wsgi_server = getattr(server, "_server", None)  # ThreadedMotoServer leaves it bound
        if wsgi_server is not None:
            wsgi_server.server_close()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._endpoint_url is None:
            raise RuntimeError("MotoServer is not started")
        return self._endpoint_url

    def reset(self) -> None:
        """Wipe every bucket and object (all moto state) via ``POST /moto-api/reset``."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            response.read()


# -- clients -----------------------------------------------------------------------------


def s3_storage_options(endpoint_url: str, *, max_attempts: int = 5, **extra: Any) -> dict[str, Any]:
    """``fsspec.filesystem("s3", **options)`` options for a loopback endpoint.

    Everything that could otherwise come from ``AWS_*`` variables or ``~/.aws`` is given
    explicitly: dummy key/secret and no token (never ``anon``, never a profile's keys), the
    endpoint and region, path-style addressing, no HTTP proxy (an empty ``proxies`` stops
    botocore reading ``HTTP(S)_PROXY``), and ``standard`` retries with ``max_attempts``
    (which retries 500/503 and ``SlowDown``). ``extra`` is merged in last.
    Not covered: an ``AWS_PROFILE`` naming a missing profile still makes botocore fail.
    """
    options: dict[str, Any] = {
        "key": DUMMY_CREDENTIAL,
        "secret": DUMMY_CREDENTIAL,
        "token": None,
        "anon": False,
        "client_kwargs": {"endpoint_url": endpoint_url, "region_name": REGION},
        "config_kwargs": {
            "s3": {"addressing_style": "path"},
            "proxies": {},
            "retries": {"total_max_attempts": max_attempts, "mode": "standard"},
        },
    }
    options.update(extra)
    return options


@functools.lru_cache(maxsize=32)
def boto3_client(endpoint_url: str, *, max_attempts: int = 5) -> Any:
    """A boto3 S3 client for a loopback endpoint, configured like :func:`s3_storage_options`.

    Cached per arguments (building a client costs ~0.1 s; clients are thread-safe).
    """
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path"},
        proxies={},
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIAL,
        aws_secret_access_key=DUMMY_CREDENTIAL,
        aws_session_token=None,
        config=config,
    )


def create_bucket(endpoint_url: str, name: str) -> None:
    """Create bucket ``name`` (in ``us-east-1``); fine if this client already owns it."""
    client = boto3_client(endpoint_url)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=name)
