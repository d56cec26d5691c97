"""S3 on loopback for tests and benchmarks: moto's own WSGI app, served by werkzeug.

* :class:`MotoServer` serves moto's app as it is on ``127.0.0.1`` (a free port), so s3fs
  talks real HTTP to it exactly as it would to S3.
* :class:`gens_fs.testing.s3_middleware.S3Middleware` serves the same app, on its own
  port, behind a middleware that counts requests, adds latency, injects faults and holds
  requests. moto's state is process-global, so every endpoint in a process is a view of the
  same buckets: set up through the plain one, measure through the middleware.
* :func:`s3_storage_options` and :func:`boto3_client` give clients that cannot reach past
  loopback whatever the machine's ``AWS_*`` variables say; :func:`new_bucket` gives a test
  a bucket of its own, which is what keeps tests independent of each other's order.

moto, boto3, botocore and werkzeug are imported lazily, inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

LOOPBACK: Final = "127.0.0.1"
DUMMY_CREDENTIAL: Final = "testing"
REGION: Final = "us-east-1"
# Pending connections the listening socket queues. Every response closes its connection
# (werkzeug's server has no keep-alive), so a client with 128 requests in flight opens 128
# connections at once; a full queue drops SYNs, which costs the client a 1 s retransmit.
_LISTEN_QUEUE: Final = 1024

_Server = TypeVar("_Server", bound="LoopbackWSGIServer")


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


@functools.lru_cache(maxsize=1)
def moto_app() -> WSGIApplication:
    """moto's WSGI application (what ``moto_server`` and ``ThreadedMotoServer`` serve).

    One per process: it builds each service's Flask app on first use and keeps it, and all
    of them serve moto's process-global state, so sharing it only saves that work.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    _cache_moto_module_list()
    app: WSGIApplication = DomainDispatcherApplication(create_backend_app)
    return app


def _serve(app: WSGIApplication) -> Any:
    """A werkzeug server for ``app`` bound to ``127.0.0.1`` on a free port, not yet serving.

    A thread per connection, and moto's request handler (it keeps S3 metadata headers with
    underscores, which werkzeug's own handler drops) with Nagle's algorithm off: werkzeug
    writes headers and body separately, and the body must not wait for the client's ACK.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import ThreadedWSGIServer

    class Handler(MotoRequestHandler):
        disable_nagle_algorithm = True

    class Server(ThreadedWSGIServer):
        request_queue_size = _LISTEN_QUEUE

    return Server(LOOPBACK, 0, app, handler=Handler)


class LoopbackWSGIServer:
    """Serves a WSGI app on ``127.0.0.1`` (a free port) from a background thread.

    Subclasses say what they serve (:meth:`wsgi_app`). ``quiet`` raises the ``werkzeug``
    logger to WARNING: no line per request on stderr.
    """

    def __init__(self, *, quiet: bool = True) -> None:
        self._quiet = quiet
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def wsgi_app(self) -> WSGIApplication:
        """The application this server serves."""
        raise NotImplementedError

    def start(self: _Server) -> _Server:
        """Bind and serve in a background thread; returns once the port is bound."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        if self._quiet:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = _serve(self.wsgi_app())
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting connections and release the port. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        server.server_close()

    def __enter__(self: _Server) -> _Server:
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
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"


class MotoServer(LoopbackWSGIServer):
    """moto's app, served as it is: the plain endpoint (no counting, latency or faults).

    moto's state is process-global: what one MotoServer (or ``mock_aws``, or an
    :class:`~gens_fs.testing.s3_middleware.S3Middleware`) in this process creates, every
    other one sees. Tests stay independent by each using its own bucket (:func:`new_bucket`),
    never by wiping that shared state.
    """

    def wsgi_app(self) -> WSGIApplication:
        return moto_app()


# -- clients -----------------------------------------------------------------------------


def s3_storage_options(
    endpoint_url: str, *, max_attempts: int | None = None, **extra: Any
) -> dict[str, Any]:
    """``fsspec.filesystem("s3", **options)`` options for a loopback endpoint.

    Everything that could otherwise come from ``AWS_*`` variables or ``~/.aws`` is given
    explicitly: dummy key/secret and no token (never ``anon``, never a profile's keys), the
    endpoint and region, path-style addressing, and no HTTP proxy (an empty ``proxies``
    stops botocore reading ``HTTP(S)_PROXY``). ``max_attempts``, when given, is
    ``config_kwargs.retries.total_max_attempts``: the attempts of gens_fs's retry layer for
    a gens_fs root (its client always makes one), botocore's for a plain s3fs client; when
    not, each decides for itself. ``extra`` is merged in last.
    Not covered: an ``AWS_PROFILE`` naming a missing profile still makes botocore fail.
    """
    config: dict[str, Any] = {"s3": {"addressing_style": "path"}, "proxies": {}}
    if max_attempts is not None:
        config["retries"] = {"total_max_attempts": max_attempts, "mode": "standard"}
    options: dict[str, Any] = {
        "key": DUMMY_CREDENTIAL,
        "secret": DUMMY_CREDENTIAL,
        "token": None,
        "anon": False,
        "client_kwargs": {"endpoint_url": endpoint_url, "region_name": REGION},
        "config_kwargs": config,
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


def new_bucket(endpoint_url: str, prefix: str = "gens") -> str:
    """Create a bucket no one has used (``<prefix>-<12 hex digits>``) and return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    boto3_client(endpoint_url).create_bucket(Bucket=name)
    return name


def delete_bucket(endpoint_url: str, name: str) -> None:
    """Delete every object in bucket ``name``, then the bucket (frees moto's memory)."""
    client = boto3_client(endpoint_url)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)
