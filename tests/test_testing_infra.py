"""The test infrastructure itself: the moto server, the S3 middleware, synthetic stores.

Only what is ours is tested here: the request classifier and fault plan, and what the
middleware adds to moto (counts, latency, faults, holds), not moto or werkzeug themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest
from botocore.exceptions import ClientError

from gens_fs.layout import STAGES
from gens_fs.testing.s3 import MotoServer, boto3_client, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.s3_requests import FaultPlan, classify_request
from gens_fs.testing.synthetic import make_store, mutate


class SleepRecorder:
    """A ``sleep`` for the middleware that records instead of waiting (list.append is
    atomic)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def middleware(moto_server: MotoServer) -> Iterator[S3Middleware]:
    with S3Middleware(sleep=SleepRecorder()) as middleware:
        yield middleware


def s3fs_for(endpoint_url: str, **extra: Any) -> Any:
    return fsspec.filesystem(
        "s3", skip_instance_cache=True, **s3_storage_options(endpoint_url, **extra)
    )


# -- classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "kind"),
    [
        ("GET", "/b", "list-type=2&prefix=x%2F&delimiter=%2F", {}, "LIST"),
        ("GET", "/b", "", {}, "LIST"),
        ("GET", "/b", "location", {}, "OTHER"),
        ("GET", "/b/k/v.txt", "", {}, "GET"),
        ("HEAD", "/b/k", "", {}, "HEAD"),
        ("HEAD", "/b", "", {}, "HEAD_BUCKET"),
        ("PUT", "/b/k", "", {}, "PUT"),
        ("PUT", "/b/k", "", {"x-amz-copy-source": "/b/j"}, "COPY"),
        ("DELETE", "/b/k", "", {}, "DELETE"),
        ("POST", "/b", "delete", {}, "DELETE_MULTI"),
        ("POST", "/b/k", "uploads", {}, "MULTIPART"),
        ("PUT", "/b/k", "partNumber=1&uploadId=u", {}, "MULTIPART"),
        ("POST", "/b/k", "uploadId=u", {}, "MULTIPART"),
        ("DELETE", "/b/k", "uploadId=u", {}, "MULTIPART"),
        ("PUT", "/b", "", {}, "CREATE_BUCKET"),
        ("PUT", "/b/k", "tagging", {}, "OTHER"),
        ("GET", "/", "", {}, "OTHER"),
    ],
)
def test_classify_request(
    method: str, path: str, query: str, headers: dict[str, str], kind: str
) -> None:
    assert classify_request(method, path, query, headers) == kind


# -- middleware ------------------------------------------------------------------------


def test_counts_are_exact_for_a_scripted_sequence(middleware: S3Middleware, bucket: str) -> None:
    client = boto3_client(middleware.endpoint_url)
    client.put_object(Bucket=bucket, Key="a/1.txt", Body=b"one")
    client.put_object(Bucket=bucket, Key="a/2.txt", Body=b"two" * 1000)
    client.copy_object(
        Bucket=bucket, Key="a/3.txt", CopySource={"Bucket": bucket, "Key": "a/1.txt"}
    )
    assert client.get_object(Bucket=bucket, Key="a/2.txt")["Body"].read() == b"two" * 1000
    client.head_object(Bucket=bucket, Key="a/1.txt")
    client.head_bucket(Bucket=bucket)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in listed["Contents"]] == ["a/1.txt", "a/2.txt", "a/3.txt"]
    client.delete_object(Bucket=bucket, Key="a/3.txt")
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a/1.txt"}]})

    assert middleware.counts() == {
        "PUT": 2,
        "COPY": 1,
        "GET": 1,
        "HEAD": 1,
        "HEAD_BUCKET": 1,
        "LIST": 1,
        "DELETE": 1,
        "DELETE_MULTI": 1,
    }
    assert middleware.wait_idle()
    records = middleware.log
    assert [r.kind for r in records][:3] == ["PUT", "PUT", "COPY"]
    assert records[1].bytes_in == 3000
    assert records[3].bytes_out == 3000
    assert all(r.status in (200, 204) for r in records)
    middleware.reset_counts()
    assert middleware.counts() == {} and middleware.log == []


def test_s3fs_operations_through_the_middleware(middleware: S3Middleware, bucket: str) -> None:
    fs = s3fs_for(middleware.endpoint_url)
    fs.pipe_file(f"{bucket}/x/a.txt", b"alpha")
    assert middleware.counts() == {"PUT": 1}
    fs.pipe({f"{bucket}/x/b.txt": b"beta", f"{bucket}/x/c.txt": "\u03b3".encode()})
    assert middleware.counts()["PUT"] == 3
    assert fs.cat_file(f"{bucket}/x/c.txt") == "\u03b3".encode()
    assert middleware.counts()["GET"] == 1
    assert fs.find(f"{bucket}/x") == [f"{bucket}/x/{n}.txt" for n in "abc"]
    assert middleware.counts()["LIST"] >= 1
    fs.rm([f"{bucket}/x/a.txt", f"{bucket}/x/b.txt"])
    assert middleware.counts()["DELETE_MULTI"] == 1
    assert fs.find(f"{bucket}/x", refresh=True) == [f"{bucket}/x/c.txt"]


def test_moto_honours_if_none_match_on_put(middleware: S3Middleware, bucket: str) -> None:
    fs = s3fs_for(middleware.endpoint_url)
    fs.pipe_file(f"{bucket}/once.txt", b"first", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{bucket}/once.txt", b"second", mode="create")
    assert fs.cat_file(f"{bucket}/once.txt") == b"first"
    assert [r.status for r in middleware.log if r.kind == "PUT"] == [200, 412]


def test_latency_is_applied_to_every_request(middleware: S3Middleware, bucket: str) -> None:
    sleeps: SleepRecorder = middleware.sleep  # type: ignore[assignment]
    middleware.latency_s = 0.25
    client = boto3_client(middleware.endpoint_url)
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    client.get_object(Bucket=bucket, Key="k")["Body"].read()
    middleware.latency_s = 0.0
    client.head_object(Bucket=bucket, Key="k")
    assert middleware.wait_idle()
    assert sleeps.calls == [0.25, 0.25]
    assert [r.latency_s for r in middleware.log] == [0.25, 0.25, 0.0]


def test_concurrent_requests_overlap(moto_server: MotoServer, bucket: str) -> None:
    """Four requests meet inside the middleware's sleep: they cannot have been serialized."""
    parties = 4
    barrier = threading.Barrier(parties, timeout=10)

    def meet(_: float) -> None:
        barrier.wait()

    errors: list[BaseException] = []
    with S3Middleware(latency_s=0.1, sleep=meet) as middleware:

        def request(i: int) -> None:
            try:
                client = boto3_client(middleware.endpoint_url)
                client.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=request, args=(i,)) for i in range(parties)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert not barrier.broken
        assert middleware.counts() == {"PUT": parties}


def test_fault_plan_is_a_pure_function_of_seed_and_index() -> None:
    plan = FaultPlan(rate=0.3, seed=7)
    assert plan.faulted(200) == FaultPlan(rate=0.3, seed=7).faulted(200)
    assert plan.faulted(200) != FaultPlan(rate=0.3, seed=8).faulted(200)
    assert 30 <= len(plan.faulted(200)) <= 90
    assert {fault for _, fault in plan.faulted(200)} == {"500", "503", "cut", "delay"}
    assert FaultPlan(rate=0.0).faulted(100) == []
    with pytest.raises(ValueError):
        FaultPlan(kinds=("teapot",))


def test_per_path_faults_last_that_many_requests_of_each_object(
    middleware: S3Middleware, bucket: str
) -> None:
    """``per_path=2``: each object's first two eligible requests are faulted, whatever
    other objects' requests come between; ``403``/``404`` only when named."""
    client = boto3_client(middleware.endpoint_url, max_attempts=1)
    for key in ("a", "b"):
        client.put_object(Bucket=bucket, Key=key, Body=b"v")
    middleware.faults = FaultPlan(rate=1.0, kinds=("503",), only_ops=("GET",), per_path=2)
    middleware.reset_counts()
    for _ in range(3):
        for key in ("a", "b"):
            with contextlib.suppress(ClientError):
                client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert middleware.wait_idle()
    statuses = {
        key: [r.status for r in middleware.log if r.path.endswith(f"/{key}")] for key in "ab"
    }
    assert statuses == {"a": [503, 503, 200], "b": [503, 503, 200]}
    assert "403" not in FaultPlan(rate=1.0).kinds
    middleware.faults = FaultPlan(rate=1.0, kinds=("403", "404"), seed=2)
    with pytest.raises(ClientError) as denied:
        client.get_object(Bucket=bucket, Key="a")
    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "NoSuchKey")


def test_injected_faults_are_reproducible(middleware: S3Middleware, bucket: str) -> None:
    client = boto3_client(middleware.endpoint_url, max_attempts=1)
    client.put_object(Bucket=bucket, Key="k", Body=b"v" * 100)
    plan = FaultPlan(rate=0.4, seed=3, kinds=("500", "503", "delay"), only_ops=("HEAD",))

    def run() -> list[tuple[int | None, str | None, int | None]]:
        middleware.reset_counts()
        middleware.faults = plan
        for _ in range(20):
            with contextlib.suppress(ClientError):
                client.head_object(Bucket=bucket, Key="k")
            client.get_object(Bucket=bucket, Key="k")["Body"].read()  # not eligible
        assert middleware.wait_idle()
        return [(r.fault_index, r.fault, r.status) for r in middleware.log if r.fault]

    first = run()
    assert first == run()
    assert [(i, f) for i, f, _ in first] == plan.faulted(20)
    assert {status for _, f, status in first if f != "delay"} <= {500, 503}
    assert all(r.fault is None for r in middleware.log if r.kind == "GET")


def test_503_and_500_are_s3_errors_that_s3fs_retries(
    middleware: S3Middleware, bucket: str, no_backoff: None
) -> None:
    fs = s3fs_for(middleware.endpoint_url, max_attempts=10)
    middleware.faults = FaultPlan(rate=0.4, seed=11, kinds=("500", "503"), only_ops=("PUT", "GET"))
    data = {f"{bucket}/r/{i}.txt": f"payload {i}".encode() for i in range(6)}
    for path, value in data.items():
        fs.pipe_file(path, value)
    assert all(fs.cat_file(path) == value for path, value in data.items())
    statuses = [r.status for r in middleware.log if r.fault]
    assert 503 in statuses and 500 in statuses


def test_error_and_cut_responses_on_the_wire(middleware: S3Middleware, bucket: str) -> None:
    boto3_client(middleware.endpoint_url).put_object(Bucket=bucket, Key="k", Body=b"z" * 1000)
    conn = _connect(middleware)
    headers = {"Authorization": _fake_s3_auth()}
    middleware.faults = FaultPlan(rate=1.0, kinds=("503",))
    conn.request("GET", f"/{bucket}/k", headers=headers)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 503 and b"<Code>SlowDown</Code>" in body
    middleware.faults = FaultPlan(rate=1.0, kinds=("cut",))
    conn.request("GET", f"/{bucket}/k", headers=headers)
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == "1000"
    with pytest.raises(http.client.IncompleteRead) as excinfo:
        response.read()
    assert len(excinfo.value.partial) == 500
    conn.close()
    conn = _connect(middleware)
    conn.request("HEAD", f"/{bucket}/k", headers=headers)  # no body to cut into
    with pytest.raises(http.client.RemoteDisconnected):
        conn.getresponse()
    conn.close()
    assert middleware.wait_idle()
    assert [(r.fault, r.status, r.bytes_out) for r in middleware.log[1:]] == [
        ("503", 503, len(body)),
        ("cut", 200, 500),
        ("cut", None, 0),
    ]


def test_chunked_upload_reaches_moto_whole_and_is_counted(
    middleware: S3Middleware, bucket: str
) -> None:
    """A Transfer-Encoding: chunked body is counted as the bytes moto reads (de-chunked)."""
    conn = _connect(middleware)
    chunks = [b"hello ", "wörld".encode(), b"!" * 70000]
    headers = {"Authorization": _fake_s3_auth()}
    conn.request(
        "PUT", f"/{bucket}/chunked", body=iter(chunks), headers=headers, encode_chunked=True
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    assert middleware.wait_idle()
    assert middleware.log[0].bytes_in == len(b"".join(chunks))
    assert s3fs_for(middleware.endpoint_url).cat_file(f"{bucket}/chunked") == b"".join(chunks)


def test_middleware_and_plain_server_serve_one_state(
    moto_server: MotoServer, middleware: S3Middleware, bucket: str
) -> None:
    """What goes in through one endpoint comes out of the other; only one of them counts."""
    boto3_client(moto_server.endpoint_url).put_object(Bucket=bucket, Key="k", Body=b"plain")
    got = boto3_client(middleware.endpoint_url).get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"plain"
    assert middleware.counts() == {"GET": 1}


def test_a_hold_lets_n_through_then_holds_and_drops_the_rest(
    middleware: S3Middleware, bucket: str
) -> None:
    """Two PUTs pass; the next two wait until the hold ends, then get a 503 and never reach
    moto; other kinds pass meanwhile."""
    client = boto3_client(middleware.endpoint_url, max_attempts=1)
    outcomes: dict[str, str] = {}

    def put(key: str) -> None:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"x")
            outcomes[key] = "stored"
        except ClientError as exc:
            outcomes[key] = exc.response["Error"]["Code"]

    with middleware.hold(["PUT"], after=2) as hold:
        put("a")
        put("b")
        assert not hold.wait_holding(timeout=0)  # two answered, nothing held yet
        threads = [threading.Thread(target=put, args=(key,)) for key in ("c", "d")]
        for thread in threads:
            thread.start()
        assert hold.wait_holding(timeout=10, count=2)  # both c and d are waiting
        assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 2  # a LIST is not held
        assert outcomes == {"a": "stored", "b": "stored"}
    for thread in threads:
        thread.join()
    assert outcomes == {"a": "stored", "b": "stored", "c": "SlowDown", "d": "SlowDown"}
    listed = boto3_client(middleware.endpoint_url).list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["a", "b"]
    assert middleware.wait_idle()
    assert sorted((r.kind, r.status, r.held) for r in middleware.log if r.kind == "PUT") == [
        ("PUT", 200, False),
        ("PUT", 200, False),
        ("PUT", 503, True),
        ("PUT", 503, True),
    ]


def test_stopping_the_middleware_ends_its_hold(moto_server: MotoServer, bucket: str) -> None:
    errors: list[str] = []

    def get() -> None:
        try:
            boto3_client(endpoint, max_attempts=1).head_bucket(Bucket=bucket)
        except ClientError as exc:
            errors.append(exc.response["Error"]["Code"])

    with S3Middleware() as middleware, middleware.hold() as hold:
        endpoint = middleware.endpoint_url
        thread = threading.Thread(target=get)
        thread.start()
        assert hold.wait_holding(timeout=10)
        middleware.stop()
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert errors == ["503"]  # HEAD: botocore names the error by its status


def _connect(middleware: S3Middleware) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", int(middleware.endpoint_url.rsplit(":", 1)[1]))


def _fake_s3_auth() -> str:
    # moto routes a request to its S3 backend by the credential scope's service name.
    return (
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64
    )


# -- synthetic stores ------------------------------------------------------------------


def _digest(fs: Any, paths: list[str]) -> str:
    contents = fs.cat(sorted(paths))
    return hashlib.sha256(b"".join(contents[p] for p in sorted(paths))).hexdigest()


def test_synthetic_store_counts_and_layout() -> None:
    fs = fsspec.filesystem("memory", skip_instance_cache=True)
    root = f"/synthetic-{uuid.uuid4().hex}"
    store = make_store(fs, root, drafts=5, essays_per_draft=2, evaluations_per_essay=3)
    assert {stage: len(store.gen_ids[stage]) for stage in STAGES} == {
        "draft": 5,
        "essay": 10,
        "evaluation": 30,
    }
    assert store.generation_count == 45
    assert store.file_count == 45 * 4 + 1
    assert len(fs.find(root)) == store.file_count
    assert store.total_bytes == sum(fs.size(p) for p in store.sizes)
    membership = fs.cat_file(f"{root}/cohorts/bench/membership.csv").decode().splitlines()
    assert membership[0] == "stage,gen_id" and len(membership) == 46
    essay = store.gen_ids["essay"][0]
    metadata = json.loads(fs.cat_file(f"{root}/gens/essay/{essay}/metadata.json"))
    assert metadata["parent_gen_id"] == store.parents[essay]
    assert store.parents[essay] in store.gen_ids["draft"]
    assert {"task_id", "template_id", "model_id", "function", "usage"} <= metadata.keys()
    evaluation = store.gen_ids["evaluation"][0]
    assert fs.cat_file(f"{root}/gens/evaluation/{evaluation}/parsed.txt").startswith(b"SCORE: ")


def test_synthetic_store_is_deterministic() -> None:
    fs = fsspec.filesystem("memory", skip_instance_cache=True)
    a = make_store(fs, f"/det-a-{uuid.uuid4().hex}", drafts=3, seed=5)
    b = make_store(fs, f"/det-b-{uuid.uuid4().hex}", drafts=3, seed=5)
    c = make_store(fs, f"/det-c-{uuid.uuid4().hex}", drafts=3, seed=6)
    assert a.gen_ids == b.gen_ids != c.gen_ids
    assert _digest(fs, a.artifact_paths) == _digest(fs, b.artifact_paths)


def test_mutate_keeps_size_and_mtime_for_same_size_edits(tmp_path: Any) -> None:
    fs = fsspec.filesystem("file")
    root = str(tmp_path)
    store = make_store(fs, root, drafts=4)
    before = {p: fs.cat_file(p) for p in store.artifact_paths}
    mtimes = {p: os.stat(p).st_mtime_ns for p in store.artifact_paths}
    changed = mutate(fs, root, store, fraction=0.25, seed=2)
    assert changed == sorted(changed) and len(changed) == round(0.25 * len(before))
    same_size = [p for p in changed if os.path.getsize(p) == len(before[p])]
    assert len(same_size) == round(0.5 * len(changed))
    for path in changed:
        assert fs.cat_file(path) != before[path]
        fs.cat_file(path).decode()  # still UTF-8
        if path.endswith("metadata.json"):
            json.loads(fs.cat_file(path))
    assert all(os.stat(p).st_mtime_ns == mtimes[p] for p in same_size)
    untouched = set(before) - set(changed)
    assert all(fs.cat_file(p) == before[p] for p in untouched)
