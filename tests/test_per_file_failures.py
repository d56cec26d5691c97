"""A transient failure that outlasts the retries while a sync plans (a cohort's
``membership.csv``, ``--cohort``'s own, a file read to hash for ``--checksum``) is
reported for that file, and the rest of the sync goes on. The failures are injected at
the S3 endpoint (``FaultPlan`` on the request path), for more attempts than the retry
bound allows; the commands run as real processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_options

from gens_fs import DataRoot, MembershipRow
from gens_fs.testing.invariants import mirror_problems, snapshot
from gens_fs.testing.s3 import MotoServer, boto3_client, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.s3_requests import FaultPlan
from tests.process import gens_fs

META = {"task_id": "t", "template_id": "x", "model_id": "m"}
ATTEMPTS = 2
RETRIES = ["-o", f"config_kwargs.retries.total_max_attempts={ATTEMPTS}"]


@pytest.fixture
def source(moto_server: MotoServer, bucket: str) -> str:
    """An S3 data root: drafts d1, d2, essay e1 (of d1); cohort c1 lists e1, c2 lists d2."""
    url = f"s3://{bucket}/data"
    root = DataRoot(url, storage_options=s3_storage_options(moto_server.endpoint_url))
    store = root.store()
    store.write("draft", "d1", metadata=META, raw="raw 1", parsed="p")
    store.write("draft", "d2", metadata=META, raw="raw 2", parsed="p")
    store.write("essay", "e1", metadata={**META, "parent_gen_id": "d1"}, raw="essay")
    root.write_membership("c1", [MembershipRow(stage="essay", gen_id="e1")])
    root.write_membership("c2", [MembershipRow(stage="draft", gen_id="d2")])
    return url


def through(middleware: S3Middleware) -> list[str]:
    return [*cli_options(s3_storage_options(middleware.endpoint_url)), *RETRIES]


def gets_of(middleware: S3Middleware, suffix: str) -> int:
    assert middleware.wait_idle()
    return sum(1 for r in middleware.log if r.kind == "GET" and r.path.endswith(suffix))


def errors_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gens-fs: error: ")]


def test_an_unreadable_membership_is_held_and_the_rest_synced(
    source: str, moto_server: MotoServer, s3_middleware: S3Middleware, tmp_path: Path
) -> None:
    dst = tmp_path / "copy"
    s3_middleware.faults = FaultPlan(
        rate=1.0, kinds=("503",), only_ops=("GET",), paths=("*/cohorts/c1/membership.csv",)
    )
    done = gens_fs("sync", source, str(dst), *through(s3_middleware))
    assert done.returncode == 1, done.stderr
    [error] = errors_of(done.stderr)
    assert error.startswith("gens-fs: error: cohorts/c1/membership.csv: not synced: it could")
    assert "run again" in error and "Traceback" not in done.stderr
    assert gets_of(s3_middleware, "/cohorts/c1/membership.csv") == ATTEMPTS  # the bound
    got = snapshot(str(dst))
    want = snapshot(source, s3_storage_options(moto_server.endpoint_url))
    assert got == {r: b for r, b in want.items() if r != "cohorts/c1/membership.csv"}
    s3_middleware.faults = None
    assert gens_fs("sync", source, str(dst), *through(s3_middleware)).returncode == 0
    assert snapshot(str(dst)) == want


def test_an_unreadable_cohort_of_a_cohort_sync(
    source: str, moto_server: MotoServer, s3_middleware: S3Middleware, tmp_path: Path
) -> None:
    """``--cohort c1`` whose membership.csv cannot be read: nothing to copy (its
    generations are unknown), the CSV reported, exit 1; a rerun converges."""
    dst = tmp_path / "copy"
    s3_middleware.faults = FaultPlan(
        rate=1.0, kinds=("503",), only_ops=("GET",), paths=("*/cohorts/c1/membership.csv",)
    )
    done = gens_fs("sync", source, str(dst), "--cohort", "c1", "--json", *through(s3_middleware))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["held_memberships"] == ["cohorts/c1/membership.csv"]
    assert [e["path"] for e in report["errors"]] == ["cohorts/c1/membership.csv"]
    assert report["copied"] == 0 and snapshot(str(dst)) == {}
    assert gets_of(s3_middleware, "/cohorts/c1/membership.csv") == ATTEMPTS
    s3_middleware.faults = None
    done = gens_fs("sync", source, str(dst), "--cohort", "c1", *through(s3_middleware))
    assert done.returncode == 0, done.stderr
    assert sorted(snapshot(str(dst))) == [
        "cohorts/c1/membership.csv",
        *(f"gens/draft/d1/{n}" for n in ("metadata.json", "parsed.txt", "raw.txt")),
        *(f"gens/essay/e1/{n}" for n in ("metadata.json", "raw.txt")),
    ]


def multipart_raw(endpoint_url: str, source: str) -> None:
    """d1's raw.txt uploaded again in two parts: its ETag is no MD5 of the bytes, so
    ``--checksum`` must read it to compare."""
    bucket, prefix = source.removeprefix("s3://").split("/", 1)
    key = f"{prefix}/gens/draft/d1/raw.txt"
    client = boto3_client(endpoint_url)
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts: list[dict[str, Any]] = []
    for number, body in enumerate((b"a" * 5 * 2**20, b"tail"), start=1):
        etag = client.upload_part(
            Bucket=bucket, Key=key, PartNumber=number, UploadId=upload, Body=body
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


def test_an_unreadable_checksum_read_is_copied_again(
    source: str, moto_server: MotoServer, s3_middleware: S3Middleware, tmp_path: Path
) -> None:
    """The one file ``--checksum`` must read fails for the whole retry bound: it is
    reported (a warning) and copied again instead of compared; the rest is compared and
    synced as usual (d3, new, is copied)."""
    plain = s3_storage_options(moto_server.endpoint_url)
    multipart_raw(moto_server.endpoint_url, source)
    dst = tmp_path / "copy"
    assert gens_fs("sync", source, str(dst), *through(s3_middleware)).returncode == 0
    DataRoot(source, storage_options=plain).store().write("draft", "d3", metadata=META, raw="3")
    s3_middleware.faults = FaultPlan(
        rate=1.0,
        kinds=("503",),
        only_ops=("GET",),
        paths=("*/gens/draft/d1/raw.txt",),
        per_path=ATTEMPTS,  # the hash's attempts all fail; the copy's read then works
    )
    s3_middleware.reset_counts()
    done = gens_fs("sync", source, str(dst), "--checksum", "--json", *through(s3_middleware))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [u["path"] for u in report["unhashed"]] == ["gens/draft/d1/raw.txt"]
    assert report["copied"] == 1 + 2  # d1's raw.txt again, d3's two files
    [warning] = [line for line in done.stderr.splitlines() if "warning" in line]
    assert warning.startswith("gens-fs: warning: gens/draft/d1/raw.txt: could not be read")
    assert warning.endswith("copied again instead")
    assert gets_of(s3_middleware, "/gens/draft/d1/raw.txt") == ATTEMPTS + 1
    assert mirror_problems(snapshot(source, plain), snapshot(str(dst))) == []
    assert snapshot(str(dst)) == snapshot(source, plain)
