"""Sync through a fault-injecting S3 endpoint (:class:`S3Middleware` with a seeded
:class:`FaultPlan`: 5% of requests answered 500 / 503 SlowDown, delayed, or cut mid-body).

For local -> S3, S3 -> local and S3 -> S3, twice each:

* ``retried``: gens_fs's retry layer (the one there is: the clients make one attempt),
  faults on every request kind: the sync completes;
* ``no-retry``: that layer at one attempt, faults on the transfer requests: some files
  fail, and the report names exactly those (each request that got a 500 belongs to a
  reported file; each reported file had a faulted request).

Either way the destination keeps its invariants (no committed generation with a missing
file or parent, no partial file, only ``incomplete`` findings from ``gens_fs.check``), a
rerun without faults converges to an exact mirror, and a third run copies nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import pytest

from gens_fs import check, sync
from gens_fs.layout import generation_of, generation_relpath
from gens_fs.sync import RetryPolicy, SyncReport
from gens_fs.testing.invariants import mirror_problems, snapshot
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.s3_requests import FaultPlan
from gens_fs.testing.synthetic import make_store

DIRECTIONS = ["local-s3", "s3-local", "s3-s3"]
# drafts=3: 27 generations, 109 files, so at least 109 requests take part in the plan.
DRAFTS = 3
FAULT_WINDOW = 100


def _seeds(count: int) -> list[int]:
    """The first seeds whose 5% plan breaks, within the first ``FAULT_WINDOW`` requests it
    applies to, at least one with each of 500, 503 and cut: every test sees every kind."""
    found = [
        seed
        for seed in range(100)
        if {f for _, f in FaultPlan(rate=0.05, seed=seed).faulted(FAULT_WINDOW)}
        >= {"500", "503", "cut"}
    ]
    return found[:count]


# Each direction with and without retries, each case with its own seed.
CASES = [
    (direction, retries, seed)
    for (direction, retries), seed in zip(
        [(d, r) for d in DIRECTIONS for r in ("retried", "no-retry")], _seeds(6), strict=True
    )
]
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)  # the default attempts, tiny waits
NO_RETRY = RetryPolicy(attempts=1)
# Requests that move a file's bytes (GET also reads parents' metadata.json for the plan).
TRANSFER_OPS = {
    "local-s3": ("PUT",),
    "s3-local": ("GET",),
    "s3-s3": ("GET", "PUT", "COPY"),
}


def _roots(
    direction: str,
    tmp_path: Path,
    moto_server: MotoServer,
    bucket: str,
    middleware: S3Middleware,
    attempts: int,
) -> tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(src, dst, src options, dst options)`` through the middleware, then the same two
    options straight to moto (for setup and inspection, never faulted)."""
    prefix = f"s3://{bucket}"
    through = s3_storage_options(middleware.endpoint_url, max_attempts=attempts)
    direct = s3_storage_options(moto_server.endpoint_url)
    src_kind, dst_kind = direction.split("-")
    src = f"{prefix}/src" if src_kind == "s3" else str(tmp_path / "src")
    dst = f"{prefix}/dst" if dst_kind == "s3" else str(tmp_path / "dst")
    so, do = (through if k == "s3" else {} for k in (src_kind, dst_kind))
    so_direct, do_direct = (direct if k == "s3" else {} for k in (src_kind, dst_kind))
    return src, dst, so, do, so_direct, do_direct


def _relpath(request_path: str, root: str) -> str | None:
    """The data-root relative path of an object request (as logged) under ``root``."""
    key = request_path.lstrip("/")
    base = root.removeprefix("s3://").rstrip("/") + "/"
    return key[len(base) :] if key.startswith(base) else None


def report_problems(report: SyncReport, src: dict[str, bytes], dst: dict[str, bytes]) -> list[str]:
    """How the report disagrees with the destination it left (which started empty).

    A reported path (a file, or a held generation directory) is absent, or whole (a PUT
    whose response was cut did land); every file not reported is byte-identical, except the
    ``metadata.json`` of a generation the report lists as uncommitted, which is absent; and
    every uncommitted generation has a reported file or an uncommitted/held parent."""
    problems: list[str] = []
    failed = {e.path for e in report.errors}
    uncommitted = {f"gens/{g}" for g in report.uncommitted}

    def reported(relpath: str) -> bool:
        return relpath in failed or generation_dir(relpath) in failed

    for relpath, data in sorted(src.items()):
        got = dst.get(relpath)
        gen = generation_dir(relpath)
        if reported(relpath):
            if got is not None and got != data:
                problems.append(f"{relpath}: reported failed, holds other bytes")
        elif gen in uncommitted and relpath == f"{gen}/metadata.json":
            if got is not None:
                problems.append(f"{gen}: reported uncommitted, but committed")
        elif got != data:
            problems.append(f"{relpath}: not reported, yet not copied")
    problems += [f"{r}: not in the source" for r in sorted(set(dst) - set(src))]
    parents = _parents(src)
    for gen in sorted(uncommitted):
        parent = parents.get(gen)
        own = any(generation_dir(p) == gen or p == gen for p in failed)
        if not own and parent not in uncommitted and parent not in failed:
            problems.append(f"{gen}: uncommitted without a failed file or parent")
    return problems


def generation_dir(relpath: str) -> str | None:
    """``gens/<stage>/<gen_id>`` of a file in a generation folder, else ``None``."""
    key = generation_of(relpath)
    return None if key is None else generation_relpath(key)


def _parents(files: dict[str, bytes]) -> dict[str, str]:
    """``gens/<stage>/<id>`` -> its parent's directory, from the metadata in ``files``."""
    parent_stage = {"essay": "draft", "evaluation": "essay"}
    out = {}
    for relpath, data in files.items():
        gen = generation_dir(relpath)
        if gen is not None and relpath.endswith("/metadata.json"):
            stage = gen.split("/")[1]
            if stage in parent_stage:
                out[gen] = f"gens/{parent_stage[stage]}/{json.loads(data)['parent_gen_id']}"
    return out


@pytest.mark.parametrize(("direction", "retries", "seed"), CASES)
def test_sync_under_faults_reports_exactly_what_failed_and_converges(
    direction: str,
    retries: str,
    seed: int,
    tmp_path: Path,
    moto_server: MotoServer,
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    attempts = 5 if retries == "retried" else 1
    src, dst, so, do, so_direct, do_direct = _roots(
        direction, tmp_path, moto_server, bucket, s3_middleware, attempts
    )
    src_fs, src_path = fsspec.core.url_to_fs(src, **so_direct)
    store = make_store(src_fs, src_path, drafts=DRAFTS, seed=seed)
    membership = f"cohorts/{store.cohort_id}/membership.csv"  # lists every generation
    src_files = snapshot(src, so_direct)

    ops = None if retries == "retried" else TRANSFER_OPS[direction]
    s3_middleware.faults = FaultPlan(rate=0.05, seed=seed, only_ops=ops, delay_s=0.2)
    s3_middleware.reset_counts()
    report = sync(
        src, dst, src_options=so, dst_options=do, retry=FAST if attempts > 1 else NO_RETRY
    )
    assert s3_middleware.wait_idle()
    faulted = [r for r in s3_middleware.log if r.fault is not None]
    assert {r.fault for r in faulted} >= {"500", "503", "cut"}, "the plan injected too little"

    dst_files = snapshot(dst, do_direct)
    assert mirror_problems(src_files, dst_files) == []
    assert report_problems(report, src_files, dst_files) == []
    findings = check(dst, storage_options=do_direct).findings
    assert [f for f in findings if f.severity == "error" and f.kind != "incomplete"] == []
    if retries == "retried":
        assert report.ok, report.errors
        assert dst_files == src_files
    else:
        # Each file whose request got a 500 (not retried) is reported, and each
        # reported file had a faulted request: the report is exact, from both sides.
        roots = [src, dst]
        broken = {
            rel
            for r in faulted
            if r.fault == "500"
            for root in roots
            if (rel := _relpath(r.path, root)) is not None
        }
        failed = {e.path for e in report.errors}
        assert broken and not report.ok
        assert all(p in failed or generation_dir(p) in failed for p in broken), (broken, failed)
        touched = {
            rel for r in faulted for root in roots if (rel := _relpath(r.path, root)) is not None
        }
        waiting = {e.path for e in report.errors if e.error.startswith("not synced")}
        held = {p for p in waiting if p.startswith("gens/")}
        assert failed - waiting <= touched
        # the membership waits exactly when a generation it lists was left uncommitted
        assert waiting - held <= {membership}
        assert (membership in waiting) == bool(held or report.uncommitted)
        parents = _parents(src_files)
        for gen in held:  # its metadata.json could not be read, or its parent is held
            assert f"{gen}/metadata.json" in touched or parents.get(gen) in held, gen

    s3_middleware.faults = None
    again = sync(src, dst, src_options=so, dst_options=do, retry=FAST, verify=True)
    assert again.ok and again.verified, again.errors
    assert again.copied == sum(1 for r, d in src_files.items() if dst_files.get(r) != d)
    assert snapshot(dst, do_direct) == src_files
    assert check(dst, storage_options=do_direct).ok
    third = sync(src, dst, src_options=so, dst_options=do)
    assert (third.copied, third.skipped, third.errors) == (0, len(src_files), [])
