"""``gens_fs.sync`` and ``gens-fs sync`` on real storage: local disk, memory and the moto S3
server. Request counts come from a counter on s3fs's ``_call_s3`` (one call per S3 request
s3fs sends; botocore's own retries are below it)."""

from __future__ import annotations

import collections
import errno
import os
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import pytest
import s3fs
from conftest import cli_options

from gens_fs import GensStore, StorageError, SyncReport, TooManyDeletes, sync, write_membership
from gens_fs.backends.local import LocalBackend
from gens_fs.backends.memory import MemoryBackend
from gens_fs.cli import main
from gens_fs.testing.invariants import mirror_problems, snapshot
from gens_fs.testing.s3 import new_bucket, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from tests.process import start, wait_until_held

KINDS = {
    "list_objects_v2": "LIST",
    "get_object": "GET",
    "head_object": "HEAD",
    "head_bucket": "HEAD",
    "put_object": "PUT",
    "copy_object": "COPY",
    "delete_objects": "DELETE",
    "delete_object": "DELETE",
}

# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """S3 requests by kind (LIST, GET, HEAD, PUT, COPY, DELETE) while the test runs."""
    counts: collections.Counter[str] = collections.Counter()
    original = s3fs.S3FileSystem._call_s3

    async def counting(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        counts[KINDS.get(method, method)] += 1
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counting)
    return counts


def meta(parent: str = "") -> dict[str, str]:
    return {"task_id": "t", "template_id": "tpl", "model_id": "m", "parent_gen_id": parent}


def write_store(root: str, options: dict[str, Any], n: int = 3) -> None:
    """``n`` lineages (draft, essay, evaluation), an extra file, two cohorts."""
    store = GensStore(f"{root}/gens", storage_options=options)
    for i in range(n):
        store.write("draft", f"d{i}", metadata=meta(), raw=f"draft {i}", parsed=f"d{i}")
        store.write("essay", f"e{i}", metadata=meta(f"d{i}"), raw=f"essay {i}", prompt="p")
        store.write("evaluation", f"v{i}", metadata=meta(f"e{i}"), raw=f"score {i}", parsed="5")
    fs, path = fsspec.core.url_to_fs(f"{root}/gens/essay/e0/raw_metadata.json", **options)
    fs.pipe_file(path, b'{"finish_reason": "stop"}')
    write_membership(root, "c1", [("evaluation", "v1")], storage_options=options)
    write_membership(root, "c2", [("draft", "d2")], storage_options=options)


def root_on(kind: str, tmp_path: Path, name: str, bucket: str) -> str:
    unique = uuid.uuid4().hex[:8]
    if kind == "local":
        return str(tmp_path / name)
    if kind == "memory":
        return f"memory://{unique}/{name}"
    return f"s3://{bucket}/{name}"


@pytest.fixture
def s3(moto_server: Any, s3_options: dict[str, Any]) -> dict[str, Any]:
    return s3_options


def opts(kind: str, s3_options: dict[str, Any]) -> dict[str, Any]:
    return dict(s3_options) if kind == "s3" else {}


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0)


# -- mirroring across backends -------------------------------------------------------------

PAIRS = [("local", "s3"), ("s3", "local"), ("s3", "s3"), ("local", "local"), ("memory", "memory")]


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_mirror_is_incremental_and_exact(
    src_kind: str,
    dst_kind: str,
    tmp_path: Path,
    s3: dict[str, Any],
    bucket: str,
    requests: collections.Counter[str],
) -> None:
    src, dst = (
        root_on(src_kind, tmp_path, "src", bucket),
        root_on(dst_kind, tmp_path, "dst", bucket),
    )
    so, do = opts(src_kind, s3), opts(dst_kind, s3)
    write_store(src, so)
    files = snapshot(src, so)

    requests.clear()
    first = sync(src, dst, src_options=so, dst_options=do)
    counts = collections.Counter(requests)
    assert (first.copied, first.skipped, first.errors) == (len(files), 0, [])
    assert first.bytes == sum(len(d) for d in files.values())
    assert snapshot(dst, do) == files
    if dst_kind == "s3":
        assert counts["HEAD"] == 0
        assert counts["PUT"] + counts["COPY"] == len(files)  # one request per file
    if (src_kind, dst_kind) == ("s3", "s3"):
        assert counts["COPY"] > 0  # server side on one endpoint

    requests.clear()
    again = sync(src, dst, src_options=so, dst_options=do)
    assert (again.copied, again.skipped) == (0, len(files))
    assert set(requests) <= {"LIST"}  # a no-op resync lists, nothing else

    # a same-size edit (mtime put back, too) is still caught
    src_fs, src_path = fsspec.core.url_to_fs(f"{src}/gens/essay/e1/raw.txt", **so)
    src_fs.pipe_file(src_path, b"ESSAY 1")
    if src_kind == "local":
        os.utime(src_path, (0, 0))
    if dst_kind == "local":
        os.utime(f"{dst}/gens/essay/e1/raw.txt", (0, 0))
    requests.clear()
    edited = sync(src, dst, src_options=so, dst_options=do)
    counts = collections.Counter(requests)
    assert (edited.copied, edited.skipped) == (1, len(files) - 1)
    assert snapshot(dst, do)["gens/essay/e1/raw.txt"] == b"ESSAY 1"
    if src_kind == "s3" or dst_kind == "s3":
        assert counts["HEAD"] == 0 and counts["DELETE"] == 0
        assert counts["PUT"] + counts["COPY"] == (1 if dst_kind == "s3" else 0)
        assert counts["GET"] == (1 if src_kind == "s3" and dst_kind != "s3" else 0)

    verified = sync(src, dst, src_options=so, dst_options=do, verify=True)
    assert verified.verified is True and verified.ok


@pytest.mark.parametrize("engine", ["fsspec", "obstore"])
def test_an_empty_destination_is_looked_at_once_and_not_listed(
    engine: str, tmp_path: Path, s3_middleware: S3Middleware
) -> None:
    bucket = new_bucket(s3_middleware.endpoint_url)
    options = s3_storage_options(s3_middleware.endpoint_url)
    src, dst = str(tmp_path / "src"), f"s3://{bucket}/data"
    write_store(src, {})
    files = snapshot(src, {})
    # a neighbour whose name starts like the destination's is not in it
    GensStore(f"s3://{bucket}/data2/gens", storage_options=options).write(
        "draft", "d9", metadata=meta(), raw="elsewhere"
    )
    s3_middleware.reset_counts()
    first = sync(src, dst, dst_options=options, engine=engine)  # type: ignore[arg-type]
    # the roots' check (one first-level listing) found nothing: the upload lists no more
    assert s3_middleware.counts() == {"LIST": 1, "PUT": len(files)}
    assert (first.copied, first.errors) == (len(files), [])
    assert snapshot(dst, options) == files
    s3_middleware.reset_counts()
    again = sync(src, dst, dst_options=options, engine=engine)  # type: ignore[arg-type]
    assert (again.copied, again.skipped) == (0, len(files))
    assert s3_middleware.counts()["LIST"] > 1  # no longer empty: listed


# -- scope -------------------------------------------------------------------------------


def test_cohort_brings_exactly_its_generations_and_their_ancestors(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src, {})
    report = sync(src, dst, cohort="c1")
    got = snapshot(dst, {})
    gens = {"/".join(r.split("/")[:3]) for r in got if r.startswith("gens/")}
    assert gens == {"gens/evaluation/v1", "gens/essay/e1", "gens/draft/d1"}
    assert {r for r in got if r.startswith("cohorts/")} == {"cohorts/c1/membership.csv"}
    assert report.copied == len(got)
    assert mirror_problems(snapshot(src, {}), got) == []


def test_stage_filter(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src, {})
    sync(src, dst, stages=["draft"])
    assert {r.split("/")[1] for r in snapshot(dst, {})} == {"draft"}
    held = sync(src, dst, stages=["evaluation"])  # essays are not there: nothing committed
    assert {e.path for e in held.errors} == {f"gens/evaluation/v{i}" for i in range(3)}
    assert held.copied == 0
    sync(src, dst, stages=["essay", "evaluation"])
    assert snapshot(dst, {}) == {r: d for r, d in snapshot(src, {}).items() if r[:5] == "gens/"}


def test_delete_is_scoped_and_max_delete_refuses(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src, {})
    sync(src, dst)
    GensStore(f"{src}/gens").delete("evaluation", "v2")
    GensStore(f"{src}/gens").delete("draft", "d0")  # out of the c1 scope below
    before = snapshot(dst, {})
    with pytest.raises(TooManyDeletes):
        sync(src, dst, delete=True, max_delete=2)
    assert snapshot(dst, {}) == before
    # cohort c1 is v1 and its ancestors: deleting in that scope touches nothing else
    assert sync(src, dst, cohort="c1", delete=True).deleted == 0
    report = sync(src, dst, stages=["evaluation"], delete=True)
    assert report.deleted == 3  # v2's metadata.json, raw.txt, parsed.txt
    assert "gens/draft/d0/raw.txt" in snapshot(dst, {})
    sync(src, dst, delete=True, max_delete=3)
    assert snapshot(dst, {}) == snapshot(src, {})


def test_dry_run_changes_nothing(
    tmp_path: Path, s3: dict[str, Any], bucket: str, requests: collections.Counter[str]
) -> None:
    src, dst = str(tmp_path / "src"), root_on("s3", tmp_path, "dst", bucket)
    write_store(src, {})
    sync(src, dst, dst_options=s3, stages=["draft"])
    for stage, gen_id in (("evaluation", "v1"), ("essay", "e1"), ("draft", "d1")):
        GensStore(f"{src}/gens").delete(stage, gen_id)  # the whole lineage: nothing held
    before = snapshot(dst, s3)
    requests.clear()
    plan = sync(src, dst, dst_options=s3, delete=True, dry_run=True)
    assert requests.keys() <= {"LIST"}
    assert plan.dry_run and plan.actions is not None
    assert plan.deleted == 3 and plan.copied == len(plan.actions) - 3
    assert snapshot(dst, s3) == before


# -- failures ------------------------------------------------------------------------------


def test_failed_file_leaves_its_lineage_uncommitted_and_rerun_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src, {})
    original = LocalBackend.write
    calls: collections.Counter[str] = collections.Counter()

    async def flaky(self: LocalBackend, files: Mapping[str, bytes]) -> None:
        for path in files:
            calls[path] += 1
            if path.endswith("essay/e1/raw.txt"):
                raise OSError(errno.EIO, "I/O error")  # the one failure; local disk: no retry
        await original(self, files)

    monkeypatch.setattr(LocalBackend, "write", flaky)
    report = sync(src, dst, delete=True)
    # c1 lists v1, left uncommitted: its membership waits; c2 (d2) does not.
    assert [e.path for e in report.errors] == ["gens/essay/e1/raw.txt", "cohorts/c1/membership.csv"]
    assert "evaluation/v1" in report.errors[1].error
    assert report.uncommitted == ["essay/e1", "evaluation/v1"]
    assert calls[f"{dst}/gens/essay/e1/raw.txt"] == 1
    got = snapshot(dst, {})
    assert (
        "gens/essay/e1/metadata.json" not in got and "gens/evaluation/v1/metadata.json" not in got
    )
    assert "cohorts/c1/membership.csv" not in got and "cohorts/c2/membership.csv" in got
    assert mirror_problems(snapshot(src, {}), got) == []
    monkeypatch.undo()
    assert sync(src, dst).ok
    assert snapshot(dst, {}) == snapshot(src, {})


def test_invariants_hold_after_every_single_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill can land between any two writes: check the destination after each one."""
    src, dst = str(tmp_path / "src"), f"memory://{uuid.uuid4().hex}/dst"
    write_store(src, {})
    src_files = snapshot(src, {})
    original = MemoryBackend.write
    checks = []

    async def checked(self: MemoryBackend, files: Mapping[str, bytes]) -> None:
        await original(self, files)
        assert mirror_problems(src_files, snapshot(dst, {})) == []
        checks.extend(files)

    monkeypatch.setattr(MemoryBackend, "write", checked)
    assert sync(src, dst, jobs=4).ok
    assert len(checks) == len(src_files)


# write_store(n=4) is 39 files: 25 in phase A, then 4 drafts' and 4 essays' metadata.json,
# ... Local -> S3 is held after K PUTs, i.e. K files written (5: inside phase A; 27 and 31:
# inside the drafts' and the essays' commit phases); S3 -> local after K GETs (the planner's
# reads of parents' metadata.json come first), its local writes cut wherever they are.
KILL_POINTS = [("local", "s3", 5), ("local", "s3", 27), ("local", "s3", 31), ("s3", "local", 30)]


@pytest.mark.parametrize(("src_kind", "dst_kind", "after"), KILL_POINTS)
def test_killed_run_leaves_a_valid_destination_and_rerun_completes(
    src_kind: str,
    dst_kind: str,
    after: int,
    tmp_path: Path,
    s3: dict[str, Any],
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    src, dst = (
        root_on(src_kind, tmp_path, "src", bucket),
        root_on(dst_kind, tmp_path, "dst", bucket),
    )
    so, do = opts(src_kind, s3), opts(dst_kind, s3)
    write_store(src, so, n=4)
    src_files = snapshot(src, so)
    kind = "PUT" if dst_kind == "s3" else "GET"
    through = cli_options(s3_storage_options(s3_middleware.endpoint_url))
    with s3_middleware.hold([kind], after=after) as hold:
        proc = start("sync", src, dst, "--jobs", "3", *through, stderr=subprocess.PIPE)
        try:
            assert wait_until_held(hold, proc), proc.communicate()
        finally:
            proc.kill()
            proc.communicate()
    killed = snapshot(dst, do)
    assert killed != src_files
    if kind == "PUT":  # exactly the requests that passed the hold landed
        assert len(killed) == after
    assert mirror_problems(src_files, killed) == []
    report = sync(src, dst, src_options=so, dst_options=do)
    assert report.ok and report.skipped == len(killed)
    assert snapshot(dst, do) == src_files


# -- configuration errors and the CLI ------------------------------------------------------


def test_storage_errors(tmp_path: Path, s3: dict[str, Any]) -> None:
    src = str(tmp_path / "src")
    write_store(src, {}, n=1)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        sync(src, "s3://no-such-bucket/data", dst_options=s3)
    with pytest.raises(StorageError, match="does not exist"):
        sync(str(tmp_path / "missing"), str(tmp_path / "dst"))
    with pytest.raises(StorageError, match="unknown protocol 'nosuchprotocol'"):
        sync(src, "nosuchprotocol://x")


def test_cli_exit_codes_and_json(
    tmp_path: Path, s3: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src, {}, n=1)
    assert cli("sync", src, dst, "--json", "--verify") == 0
    report = SyncReport.model_validate_json(capsys.readouterr().out)
    assert report.copied == len(snapshot(src, {})) and report.verified
    assert cli("sync", src, "s3://no-such-bucket/x", *cli_options(s3)) == 2
    err = capsys.readouterr().err
    assert err.startswith("gens-fs: error: bucket") and "Traceback" not in err
    assert cli("sync", src, dst, "--cohort", "nope") == 2
    assert cli("sync", src, dst, "--stage", "bogus") == 2
    assert cli("sync", src, str(tmp_path / "other"), "--stage", "essay") == 1
    err = capsys.readouterr().err  # failures go to stderr, the summary to stdout
    assert "not synced" in err and "gens/essay/e0" in err
    assert cli("sync", src, dst, "--dry-run") == 0
    assert "would copy 0 files" in capsys.readouterr().out
