"""``gens_fs.dask.sync`` on ``LocalCluster(n_workers=2, processes=True)`` against the moto
server: the workers are processes of their own, which reach moto over HTTP on 127.0.0.1.

The same store is synced with ``gens_fs.sync`` (this process) and with the Dask sync, and
the two must agree: the destination (byte for byte), the report (field by field), and the
requests of a no-op resync. A worker is SIGKILLed mid-sync at a known point (the
middleware holds every PUT after the K-th: see README, Development): while it is held, the
destination keeps the mirror invariants; Dask runs the lost task again elsewhere and the
sync completes, or (with Dask told to give up on a task at its first lost worker) the lost
files fail like any failed file and a rerun converges.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import fsspec
import pytest
from conftest import cli_options
from distributed import Client, LocalCluster

from gens_fs import DataRoot, StorageError, check
from gens_fs import sync as sync_here
from gens_fs.dask import ClusterUnavailable
from gens_fs.dask import sync as sync_on_cluster
from gens_fs.sync import SyncReport, plan_sync
from gens_fs.testing.invariants import mirror_problems, snapshot
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.synthetic import make_store
from tests.process import gens_fs, one_error_line, start, wait_until_held

# The scheduler's HTTP endpoint on a free port of the loopback interface.
LOOPBACK = "127.0.0.1:0"
# What a report says about the run, not about where it ran or how long it took.
RUN_FIELDS = {"src", "dst", "seconds"}


def new_cluster(**config: Any) -> LocalCluster:
    """Two worker processes of one thread each (``config``: Dask settings for the
    scheduler, which runs in this process)."""
    with dask.config.set(config):
        return LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=LOOPBACK
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with new_cluster() as running:
        yield running


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A client of the module's cluster, both workers up (a test may have killed one: its
    nanny starts a new one)."""
    with Client(cluster, set_as_default=False) as connected:
        connected.wait_for_workers(2, timeout=60)
        yield connected


def roots(
    direction: str, tmp_path: Path, bucket: str, options: dict[str, Any]
) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """The source and two fresh destinations (one per sync) for ``direction``, each with
    its storage options."""
    src_kind, dst_kind = direction.split("-")

    def side(kind: str, name: str) -> tuple[str, dict[str, Any]]:
        if kind == "local":
            return str(tmp_path / name), {}
        return f"s3://{bucket}/{name}", options

    return side(src_kind, "src"), side(dst_kind, "dst_dask"), side(dst_kind, "dst_here")


def make_source(url: str, options: dict[str, Any], *, drafts: int = 3) -> dict[str, bytes]:
    fs, path = fsspec.core.url_to_fs(url, **options)
    make_store(fs, path, drafts=drafts, seed=11)  # drafts=3: 27 generations, 109 files
    return snapshot(url, options)


def same_report(on_cluster: SyncReport, here: SyncReport) -> None:
    assert on_cluster.model_dump(exclude=RUN_FIELDS) == here.model_dump(exclude=RUN_FIELDS)


@pytest.mark.parametrize("direction", ["local-s3", "s3-s3", "s3-local"])
def test_exact_mirror_the_same_report_and_a_noop_rerun(
    direction: str,
    client: Client,
    tmp_path: Path,
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    through = s3_storage_options(s3_middleware.endpoint_url)
    (src, src_opts), (dst, dst_opts), (dst2, dst2_opts) = roots(
        direction, tmp_path, bucket, through
    )
    files = make_source(src, src_opts)

    report = sync_on_cluster(src, dst, src_options=src_opts, dst_options=dst_opts, client=client)
    assert report.ok and report.copied == len(files), report
    assert snapshot(dst, dst_opts) == files
    same_report(report, sync_here(src, dst2, src_options=src_opts, dst_options=dst2_opts))

    s3_middleware.reset_counts()
    again = sync_on_cluster(src, dst, src_options=src_opts, dst_options=dst_opts, client=client)
    assert (again.copied, again.skipped, again.ok) == (0, len(files), True)
    assert s3_middleware.wait_idle()
    on_cluster = s3_middleware.counts()
    s3_middleware.reset_counts()
    sync_here(src, dst2, src_options=src_opts, dst_options=dst2_opts)
    assert s3_middleware.wait_idle()
    assert on_cluster == s3_middleware.counts()  # listing pages, nothing else
    assert set(on_cluster) == {"LIST"}


def test_held_generations_cohorts_and_deletes_report_as_here(
    client: Client, tmp_path: Path, bucket: str, s3_options: dict[str, Any]
) -> None:
    """A source with an orphan (a draft lost its metadata.json: its essays and evaluations
    are held, and the cohort listing them), synced into destinations holding files the
    source lacks: the same plan, the same held lists and withheld deletes, the same bytes;
    then, the orphan fixed, the deletes run (as tasks, children first)."""
    src = str(tmp_path / "src")
    files = make_source(src, {})
    draft_meta = min(r for r in files if r.startswith("gens/draft/") and r.endswith(".json"))
    Path(src, draft_meta).unlink()
    dsts = [f"s3://{bucket}/dask", f"s3://{bucket}/here"]
    for dst in dsts:
        fs, path = fsspec.core.url_to_fs(dst, **s3_options)
        make_store(fs, path, drafts=1, seed=99, cohort_id="old")  # to delete
    kwargs: dict[str, Any] = {"dst_options": s3_options, "delete": True, "max_delete": 100}

    held = sync_on_cluster(src, dsts[0], client=client, **kwargs)
    assert held.held and held.held_memberships and held.deletes_skipped
    same_report(held, sync_here(src, dsts[1], **kwargs))
    assert snapshot(dsts[0], s3_options) == snapshot(dsts[1], s3_options)

    Path(src, draft_meta).write_bytes(files[draft_meta])
    fixed = sync_on_cluster(src, dsts[0], client=client, **kwargs)
    assert fixed.ok and fixed.deleted > 0, fixed
    same_report(fixed, sync_here(src, dsts[1], **kwargs))
    assert snapshot(dsts[0], s3_options) == files == snapshot(dsts[1], s3_options)


def test_dry_run_and_cohort_scope_as_here(
    client: Client, tmp_path: Path, bucket: str, s3_options: dict[str, Any]
) -> None:
    src = f"s3://{bucket}/src"
    make_source(src, s3_options)
    dst = str(tmp_path / "dst")
    kwargs: dict[str, Any] = {"src_options": s3_options, "cohort": "bench", "stages": ["essay"]}
    dry = sync_on_cluster(src, dst, client=client, dry_run=True, **kwargs)
    assert dry.actions and not Path(dst).exists()
    same_report(dry, sync_here(src, dst, dry_run=True, **kwargs))
    done = sync_on_cluster(src, dst, client=client, verify=True, **kwargs)
    assert done.ok and done.verified and done.copied == dry.copied


# -- a worker killed mid-sync -------------------------------------------------------------


def busy_worker_pid(client: Client) -> int:
    """The process id of a worker running a task now."""
    busy = [worker for worker, tasks in client.processing().items() if tasks]
    assert busy, "no worker is running a task"
    return int(client.run(os.getpid, workers=busy[:1])[busy[0]])


def in_background(call: Callable[[], SyncReport]) -> tuple[threading.Thread, list[Any]]:
    """``call`` started in a thread; the list gets its report or its exception."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def kill_point(src: str, phase: str) -> int:
    """How many PUTs an upload of ``src`` makes before the kill: half of its text files, or
    into the essays' commits (the drafts' all landed)."""
    plan = plan_sync(src, "memory://dasksync-kill-point/nothing", allow_empty_source=True).plan
    if phase == "files":
        return len(plan.files) // 2
    return len(plan.files) + len(plan.commits[0]) + len(plan.commits[1]) // 2


def destination_problems(
    src_files: dict[str, bytes], dst: str, options: dict[str, Any]
) -> list[str]:
    """The mirror invariants, plus every ``check`` error but ``incomplete``."""
    problems = mirror_problems(src_files, snapshot(dst, options))
    findings = check(dst, storage_options=options).findings
    return problems + [
        f"check: {f.kind} {f.path}"
        for f in findings
        if f.severity == "error" and f.kind != "incomplete"
    ]


@pytest.mark.parametrize(
    ("phase", "task_rerun"), [("files", True), ("commits", True), ("commits", False)]
)
def test_a_worker_killed_mid_sync_keeps_invariants_and_a_rerun_converges(
    phase: str,
    task_rerun: bool,
    cluster: LocalCluster,
    tmp_path: Path,
    moto_server: MotoServer,
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    """``task_rerun``: Dask runs a task lost with its worker again (its default), or gives
    up at once (``allowed-failures: 0``): ``KilledWorker``, the batch's files failed."""
    src, dst = str(tmp_path / "src"), f"s3://{bucket}/dst"
    direct = s3_storage_options(moto_server.endpoint_url)  # inspection: never held
    through = s3_storage_options(s3_middleware.endpoint_url)
    files = make_source(src, {})
    with contextlib.ExitStack() as stack:
        if not task_rerun:
            cluster = stack.enter_context(
                new_cluster(**{"distributed.scheduler.allowed-failures": 0})
            )
        client = stack.enter_context(Client(cluster, set_as_default=False))
        client.wait_for_workers(2, timeout=60)
        with s3_middleware.hold(["PUT"], after=kill_point(src, phase)) as hold:
            thread, outcome = in_background(
                lambda: sync_on_cluster(src, dst, dst_options=through, client=client)
            )
            assert hold.wait_holding(timeout=60), outcome
            killed = busy_worker_pid(client)
            os.kill(killed, signal.SIGKILL)
            partial = snapshot(dst, direct)
            assert 0 < len(partial) < len(files)  # mid-sync
            assert destination_problems(files, dst, direct) == []
        thread.join(timeout=120)
        assert not thread.is_alive()
        (report,) = outcome
        assert isinstance(report, SyncReport), report
        assert destination_problems(files, dst, direct) == []
        assert killed not in client.run(os.getpid).values()
        if task_rerun:
            assert report.ok, report.errors
        else:
            assert not report.ok and report.uncommitted
            assert any("KilledWorker" in e.error for e in report.errors)
            client.wait_for_workers(2, timeout=60)
            rerun = sync_on_cluster(src, dst, dst_options=through, client=client)
            assert rerun.ok and rerun.copied > 0, rerun.errors
    assert snapshot(dst, direct) == files
    assert check(dst, storage_options=direct).ok


# -- what it refuses ----------------------------------------------------------------------


def test_memory_roots_only_with_workers_in_this_process(client: Client, tmp_path: Path) -> None:
    src = "memory://dasksync-memory/src"
    fs, path = fsspec.core.url_to_fs(src)
    make_store(fs, path, drafts=1)
    with pytest.raises(StorageError, match="cannot reach"):
        sync_on_cluster(src, str(tmp_path / "dst"), client=client)
    with (
        LocalCluster(n_workers=2, processes=False, dashboard_address=LOOPBACK) as threads,
        Client(threads, set_as_default=False) as in_process,
    ):
        report = sync_on_cluster(src, "memory://dasksync-memory/dst", client=in_process)
    assert report.ok and snapshot("memory://dasksync-memory/dst") == snapshot(src)
    fs.rm("/dasksync-memory", recursive=True)


def test_roots_as_urls_and_a_client_needed(client: Client, tmp_path: Path) -> None:
    src = str(tmp_path / "src")
    make_source(src, {}, drafts=1)
    with pytest.raises(TypeError, match="path or URL"):
        sync_on_cluster(DataRoot(src), str(tmp_path / "dst"), client=client)  # type: ignore[arg-type]
    with pytest.raises(ClusterUnavailable, match="no Dask client"):
        sync_on_cluster(src, str(tmp_path / "dst"))


# -- the command line ---------------------------------------------------------------------


def test_cli_sync_on_a_dask_scheduler(
    cluster: LocalCluster, tmp_path: Path, bucket: str, s3_options: dict[str, Any]
) -> None:
    """Storage options travel to the workers; credentials from the environment do not: the
    CLI's environment is not the workers' (one line, exit 2, nothing written)."""
    src, dst = str(tmp_path / "src"), f"s3://{bucket}/dst"
    files = make_source(src, {})
    args = ["sync", src, dst, "--dask-scheduler", cluster.scheduler_address, "--json"]
    done = gens_fs(*args, *cli_options(s3_options))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copied"] == len(files)
    assert snapshot(dst, s3_options) == files

    endpoint = s3_options["client_kwargs"]["endpoint_url"]
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}
    line = one_error_line(gens_fs(*args[:2], f"s3://{bucket}/other", *args[3:], env=env))
    assert line.startswith(f"gens-fs: error: no credentials for s3://{bucket}/other"), line
    assert re.search(r"\(met by a Dask worker listing [a-z/]+\)$", line), line


def test_cli_interrupted_mid_sync_says_so_in_one_line_and_a_rerun_converges(
    cluster: LocalCluster,
    tmp_path: Path,
    moto_server: MotoServer,
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    """Ctrl-C while the essays' commits are held: exit 130, one line, the destination keeps
    its invariants (the tasks running finish their batch, of that phase only)."""
    src, dst = str(tmp_path / "src"), f"s3://{bucket}/dst"
    direct = s3_storage_options(moto_server.endpoint_url)
    through = s3_storage_options(s3_middleware.endpoint_url)
    files = make_source(src, {})
    args = ["sync", src, dst, "--dask-scheduler", cluster.scheduler_address]
    args += cli_options(through)
    with s3_middleware.hold(["PUT"], after=kill_point(src, "commits")) as hold:
        proc = start(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert wait_until_held(hold, proc)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()  # nothing if it has exited
        assert proc.returncode == 130, err.decode()
        (line,) = err.decode().splitlines()
        assert line.startswith("gens-fs: interrupted after "), line
        assert line.endswith("the destination is consistent; run the same command again to finish")
        assert destination_problems(files, dst, direct) == []
    final = gens_fs(*args, "--verify")
    assert final.returncode == 0, final.stderr
    assert snapshot(dst, direct) == files


def test_cli_refuses_an_unreachable_scheduler_in_one_line(tmp_path: Path) -> None:
    src = str(tmp_path / "src")
    make_source(src, {}, drafts=1)
    env = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}  # Dask's own setting
    args = ["sync", src, str(tmp_path / "dst"), "--dask-scheduler"]
    line = one_error_line(gens_fs(*args, "tcp://127.0.0.1:9", env=env))
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in line
    line = one_error_line(gens_fs(*args, "scheduler-without-port"))
    assert "bad Dask scheduler address 'scheduler-without-port'" in line
    assert not (tmp_path / "dst").exists()


def test_cli_without_the_dask_extra_says_which_to_install(tmp_path: Path) -> None:
    """A process where ``import distributed`` fails (``None`` in ``sys.modules`` makes it)."""
    code = (
        "import sys; sys.modules['distributed'] = None; from gens_fs.cli import main; "
        f"main(['sync', {str(tmp_path)!r}, 'x', '--dask-scheduler', 'tcp://127.0.0.1:9'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (
        "gens-fs: error: a distributed sync needs Dask's distributed scheduler: "
        "pip install 'gens_fs[dask]'\n"
    )
