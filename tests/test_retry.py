"""The one retry layer (``gens_fs.backends.retry``), against faults injected at a real S3
endpoint (moto behind :class:`S3Middleware`), on both engines.

Requests are counted at the server, per object: a fault that lasts fewer attempts than the
bound is cured (load, write, sync), one that lasts longer fails each file after exactly the
bound, and a permanent answer (403, 404) is taken at once. No client retries behind our
back: with ``attempts`` N, an object sees N requests, not N times the client's own.
"""

from __future__ import annotations

import collections
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from botocore.exceptions import ClientError, EndpointConnectionError
from s3fs.errors import translate_boto_error

from gens_fs import (
    AccessDenied,
    DataRoot,
    GenerationNotFound,
    GensStore,
    MembershipRow,
    StorageError,
    sync,
)
from gens_fs.backends import RetryPolicy, SyncBackend, is_transient
from gens_fs.backends.retry import policy_from_options
from gens_fs.testing.azure import ACCOUNT_NAME, azure_storage_options, connection_string
from gens_fs.testing.invariants import snapshot
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.s3_requests import FaultPlan

ENGINES = ["fsspec", "obstore"]
META = {"task_id": "t", "template_id": "x", "model_id": "m"}
TEXTS = {"raw": "the raw", "parsed": "parsed", "prompt": "the prompt"}
# The default attempts, waits of a few milliseconds.
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)
BOUND = FAST.attempts


def per_path(middleware: S3Middleware, kind: str) -> dict[str, int]:
    """Requests of ``kind`` per object path, as the server received them."""
    assert middleware.wait_idle()
    return dict(collections.Counter(r.path for r in middleware.log if r.kind == kind))


def through(middleware: S3Middleware, bucket: str, engine: str, **kwargs: Any) -> GensStore:
    options = s3_storage_options(middleware.endpoint_url)
    return GensStore(f"s3://{bucket}/gens", storage_options=options, engine=engine, **kwargs)


@pytest.fixture
def seeded(moto_server: MotoServer, bucket: str) -> str:
    """A draft ``d1`` with all four files, written straight to moto (never faulted)."""
    store = GensStore(
        f"s3://{bucket}/gens", storage_options=s3_storage_options(moto_server.endpoint_url)
    )
    store.write("draft", "d1", metadata=META, **TEXTS)
    return bucket


# -- the policy and the classification -------------------------------------------------------


def test_the_default_bound() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.max_wait_s) == (5, pytest.approx(3.0))
    assert [policy.wait_s(n) for n in range(1, 5)] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert all(0.1 <= policy.jittered(1) <= 0.2 for _ in range(50))
    assert RetryPolicy(attempts=1).max_wait_s == 0
    assert RetryPolicy(attempts=9, base_delay=1, max_delay=5).wait_s(8) == 5
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_botocore_retry_options_set_the_attempts_of_the_layer() -> None:
    def options(**retries: Any) -> dict[str, Any]:
        return {"config_kwargs": {"retries": retries}}

    assert policy_from_options({}) is None
    assert policy_from_options(options(mode="adaptive")) is None
    assert policy_from_options(options(total_max_attempts=3)) == RetryPolicy(attempts=3)
    # botocore's max_attempts counts the retries after the first attempt
    assert policy_from_options(options(max_attempts=0)) == RetryPolicy(attempts=1)
    assert policy_from_options(options(max_attempts=4)) == RetryPolicy(attempts=5)
    for bad in (options(total_max_attempts=0), options(max_attempts="3"), options(max_attempts=-2)):
        with pytest.raises(StorageError, match="whole number of attempts"):
            policy_from_options(bad)


def client_error(code: str, status: int) -> OSError:
    """A botocore error as s3fs raises it: translated into an ``OSError``, caused by it."""
    error = ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )
    translated = translate_boto_error(error)
    assert isinstance(translated, OSError)
    return translated


def azure_error(status: int) -> HttpResponseError:
    error = HttpResponseError(f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("RequestTimeout", 400), True),  # S3 says "try again" with a 400
        (client_error("AccessDenied", 403), False),
        (client_error("NoSuchKey", 404), False),
        (client_error("InvalidArgument", 400), False),
        (client_error("PreconditionFailed", 412), False),
        (client_error("NotImplemented", 501), False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), True),
        (azure_error(503), True),
        (azure_error(429), True),
        (azure_error(404), False),
        (ServiceRequestError("connection refused"), True),
        (ConnectionResetError("reset"), True),
        (TimeoutError("timed out"), True),
        (FileNotFoundError("gone"), False),
        (PermissionError("denied"), False),
        (StorageError("no such bucket"), False),
        (ValueError("a bug"), False),
    ],
    ids=repr,
)
def test_one_classification_of_transient_errors(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


# -- a fault shorter than the bound is cured ---------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["500", "503", "cut"])
def test_load_cures_a_fault_shorter_than_the_bound(
    engine: str, kind: str, seeded: str, s3_middleware: S3Middleware
) -> None:
    store = through(s3_middleware, seeded, engine, retry=FAST)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=(kind,), only_ops=("GET",), per_path=BOUND - 1)
    s3_middleware.reset_counts()
    gen = store.load("draft", "d1")
    assert (gen.raw_text, gen.parsed_text, gen.prompt_text) == tuple(TEXTS.values())
    gets = per_path(s3_middleware, "GET")
    assert len(gets) == 4 and set(gets.values()) == {BOUND}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["500", "503"])
def test_write_cures_a_fault_shorter_than_the_bound(
    engine: str, kind: str, bucket: str, s3_middleware: S3Middleware
) -> None:
    store = through(s3_middleware, bucket, engine, retry=FAST)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=(kind,), only_ops=("PUT",), per_path=BOUND - 1)
    store.write("draft", "d1", metadata=META, **TEXTS)  # the commit: a conditional PUT
    puts = per_path(s3_middleware, "PUT")
    assert len(puts) == 4 and set(puts.values()) == {BOUND}
    s3_middleware.faults = None
    assert store.load("draft", "d1").metadata is not None


@pytest.mark.parametrize("engine", ENGINES)
def test_a_create_whose_answer_was_lost_is_not_told_the_file_exists(
    engine: str, bucket: str, s3_middleware: S3Middleware
) -> None:
    """Each PUT's first answer is lost (the connection closes once it has landed): the
    commit's next attempt (gens_fs's, or the HTTP client's own resend) is refused as the
    file exists, and one GET shows it holds this write's bytes: it committed."""
    store = through(s3_middleware, bucket, engine, retry=FAST)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("cut",), only_ops=("PUT",), per_path=1)
    store.write("draft", "d1", metadata=META, **TEXTS)  # no GenerationExists
    assert s3_middleware.wait_idle()
    commit = [r for r in s3_middleware.log if r.path.endswith("/d1/metadata.json")]
    assert [(r.kind, r.fault, r.status) for r in commit][-2:] == [
        ("PUT", None, 412),
        ("GET", None, 200),
    ]
    s3_middleware.faults = None
    assert store.load("draft", "d1").metadata is not None
    # A create that finds another writer's bytes is refused all the same.
    path = store.path("draft", "d1", "metadata.json")
    assert SyncBackend(store._backend.backend).create(path, b"{}") is False


@pytest.mark.parametrize("direction", ["local-s3", "s3-local"])
def test_sync_cures_a_fault_shorter_than_the_bound(
    direction: str,
    tmp_path: Path,
    moto_server: MotoServer,
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    src, dst, so, do = sides(direction, tmp_path, moto_server, bucket, s3_middleware)
    op = "PUT" if direction == "local-s3" else "GET"
    s3_middleware.faults = FaultPlan(
        rate=1.0, kinds=("500", "503"), only_ops=(op,), per_path=BOUND - 1
    )
    report = sync(src, dst, src_options=so, dst_options=do, retry=FAST)
    assert report.ok, report.errors
    requests = per_path(s3_middleware, op)
    assert len(requests) == report.copied and set(requests.values()) == {BOUND}
    assert snapshot(dst, direct(moto_server, dst)) == snapshot(src, direct(moto_server, src))


def sides(
    direction: str, tmp_path: Path, moto_server: MotoServer, bucket: str, middleware: S3Middleware
) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """A seeded source and an empty destination (local or S3 through ``middleware``), with
    their options."""
    src_kind, dst_kind = direction.split("-")
    src, dst = (
        f"s3://{bucket}/{name}" if kind == "s3" else str(tmp_path / name)
        for kind, name in ((src_kind, "src"), (dst_kind, "dst"))
    )
    root = DataRoot(src, storage_options=direct(moto_server, src))
    for i in range(3):
        root.store().write("draft", f"d{i}", metadata=META, **TEXTS)
    root.write_membership("c1", [MembershipRow(stage="draft", gen_id=f"d{i}") for i in range(3)])
    through_options = s3_storage_options(middleware.endpoint_url)
    so, do = (through_options if kind == "s3" else {} for kind in (src_kind, dst_kind))
    return src, dst, so, do


def direct(moto_server: MotoServer, url: str) -> dict[str, Any]:
    return s3_storage_options(moto_server.endpoint_url) if url.startswith("s3://") else {}


# -- a fault longer than the bound fails each file after exactly the bound -----------------


@pytest.mark.parametrize("engine", ENGINES)
def test_load_fails_after_exactly_the_bound(
    engine: str, seeded: str, s3_middleware: S3Middleware
) -> None:
    store = through(s3_middleware, seeded, engine, retry=FAST)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("500", "503", "cut"), only_ops=("GET",))
    s3_middleware.reset_counts()
    with pytest.raises(ConnectionError if engine == "obstore" else OSError):
        store.load("draft", "d1")  # (a cut body, whichever client: a ConnectionError)
    gets = per_path(s3_middleware, "GET")
    assert len(gets) == 4 and set(gets.values()) == {BOUND}


def test_the_options_retries_are_the_layers_attempts(
    seeded: str, s3_middleware: S3Middleware
) -> None:
    """``config_kwargs.retries`` (botocore's words) sets gens_fs's attempts, on both
    engines; the client itself still makes one."""
    options = s3_storage_options(s3_middleware.endpoint_url, max_attempts=2)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("503",), only_ops=("GET",))
    for engine in ENGINES:
        s3_middleware.reset_counts()
        store = GensStore(f"s3://{seeded}/gens", storage_options=options, engine=engine)
        with pytest.raises(OSError):
            store.load("draft", "d1")
        assert set(per_path(s3_middleware, "GET").values()) == {2}, engine


@pytest.mark.parametrize("direction", ["local-s3", "s3-local"])
def test_sync_reports_each_file_after_exactly_the_bound(
    direction: str,
    tmp_path: Path,
    moto_server: MotoServer,
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    src, dst, so, do = sides(direction, tmp_path, moto_server, bucket, s3_middleware)
    op = "PUT" if direction == "local-s3" else "GET"
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("500", "503"), only_ops=(op,))
    report = sync(src, dst, src_options=so, dst_options=do, retry=FAST)
    requests = per_path(s3_middleware, op)
    assert requests and set(requests.values()) == {BOUND}
    # each file that failed was tried exactly the bound; so was a membership CSV the plan
    # could not read, and held ("not synced: ... could not be read")
    side = "/dst/" if direction == "local-s3" else "/src/"
    tried = {path.split(side, 1)[1] for path in requests}
    failed = {e.path for e in report.errors if not e.error.startswith("not synced")}
    assert failed and failed <= tried <= {e.path for e in report.errors}
    assert report.copied == 0 and not report.ok
    assert "cohorts/c1/membership.csv" not in snapshot(dst, direct(moto_server, dst))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_put_that_never_gets_an_answer(
    engine: str, bucket: str, s3_middleware: S3Middleware
) -> None:
    """The documented exception to the bound: aiohttp (under s3fs) sends a PUT again, once,
    when the connection closes before any answer; obstore does not."""
    store = through(s3_middleware, bucket, engine, retry=FAST)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("cut",), only_ops=("PUT",))
    with pytest.raises((OSError, StorageError)):  # obstore: "error sending request"
        store.write("draft", "d1", metadata=META, raw="r")
    per_attempt = 2 if engine == "fsspec" else 1
    assert set(per_path(s3_middleware, "PUT").values()) == {BOUND * per_attempt}


# -- permanent answers are taken at once --------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_permanent_answers_are_not_retried(
    engine: str, seeded: str, s3_middleware: S3Middleware
) -> None:
    store = through(s3_middleware, seeded, engine, retry=FAST)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("403",), only_ops=("GET",))
    s3_middleware.reset_counts()
    with pytest.raises(StorageError, match="access denied"):
        store.load("draft", "d1")
    assert set(per_path(s3_middleware, "GET").values()) == {1}
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("404",), only_ops=("GET",))
    s3_middleware.reset_counts()
    with pytest.raises(GenerationNotFound):
        store.load("draft", "d1")
    assert set(per_path(s3_middleware, "GET").values()) == {1}


def test_a_denied_sync_write_stops_the_sync_after_one_request(
    tmp_path: Path, moto_server: MotoServer, bucket: str, s3_middleware: S3Middleware
) -> None:
    """Access denied is the credentials' failure, not a file's: the first one stops the
    sync (the transfers in flight cancelled), each denied PUT sent once."""
    src, dst, so, do = sides("local-s3", tmp_path, moto_server, bucket, s3_middleware)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("403",), only_ops=("PUT",))
    with pytest.raises(AccessDenied, match=r"^access denied writing s3://") as denied:
        sync(src, dst, src_options=so, dst_options=do, retry=FAST)
    assert denied.value.operation == "writing" and "/dst/gens/" in denied.value.url
    puts = per_path(s3_middleware, "PUT")
    assert puts and set(puts.values()) == {1}


# -- the probe keeps its bound ---------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_the_first_listing_retries_only_within_its_bound(
    engine: str, seeded: str, s3_middleware: S3Middleware
) -> None:
    """Waits of 0.5-1 s, 1-2 s, 2-4 s, 4-8 s (jittered) between attempts: within the probe's
    4 s only the first few attempts fit, however many the policy allows; the last error
    is then the one line."""
    slow = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("503",), only_ops=("LIST",))
    options = s3_storage_options(s3_middleware.endpoint_url)
    root = DataRoot(f"s3://{seeded}", storage_options=options, engine=engine, retry=slow)
    with pytest.raises(OSError):
        root.backend.children(root.root)  # the probe: the first request most commands send
    lists = sum(per_path(s3_middleware, "LIST").values())
    # How many fit depends on how fast the machine answers (a loaded one: the first only);
    # what holds everywhere is the bound: never the policy's 10 attempts, 8 s apart.
    assert 1 <= lists <= 4


# -- Azure: the SDK's own retries are off -----------------------------------------------------


def test_azure_requests_make_one_attempt_each() -> None:
    """Against an endpoint that closes every connection unanswered: each read, write and
    listing is gens_fs's ``attempts`` tries, each one request (which aiohttp sends twice
    when no answer comes: the documented exception), not also the Azure SDK's default
    3 retries 15 s apart."""
    accepted: list[int] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        threading.Thread(target=_close_each, args=(server, accepted), daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}/{ACCOUNT_NAME}"
        options = azure_storage_options(connection_string(endpoint))
        store = GensStore("az://c/gens", storage_options=options, retry=FAST)
        for call, requests in (
            (lambda: store.load("draft", "d1"), 4),  # four files
            (lambda: store.write("draft", "d1", metadata=META, raw="r"), 1),  # its probe GET
            (lambda: store.gen_ids("draft"), 1),  # one listing
        ):
            accepted.clear()
            with pytest.raises((OSError, StorageError)):
                call()
            assert len(accepted) == requests * BOUND * 2


def _close_each(server: socket.socket, accepted: list[int]) -> None:
    """Accept each connection, read the request, close it unanswered, until ``server`` is
    closed."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        accepted.append(1)
        with conn:
            conn.recv(65536)
