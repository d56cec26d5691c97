"""Syncing a store to and from S3: gens_fs against aws s3 sync, rclone, s5cmd, fsspec rsync.

    bash benchmarks/setup_peers.sh                       # once: rclone, awscli, s5cmd
    python -m benchmarks.bench_sync --out benchmarks/results/sync.json
    python -m benchmarks.bench_sync --drafts 10 --latencies 0 --tools ours s5cmd  # a look

For each added latency (ms per request, at the counting middleware around moto) and each
tool, on the same synthetic store (``make_store``, ``--drafts`` drafts, 9 generations and
~36 files each), every tool with its own copy of the local source and its own S3 prefix:

1. ``upload``   local -> empty prefix
2. ``noop``     the same sync again (nothing changed)
3. ``mutated``  ``mutate(fraction=0.01)`` of the local copy (half of the edits keep their
                size and their old mtime), then the same sync
4. ``download`` the prefix -> an empty local folder

Each run is a subprocess; recorded: wall s, client CPU s (``RUSAGE_CHILDREN``), requests by
kind (middleware counts), exit code, timeout, and whether the destination ended a correct mirror
of the source. The check runs after the measured block, at 0 ms, and lists both sides: every
relative path on both, same sizes, and the same MD5 (local files are read; an S3 object's
ETag is the MD5 moto computed over the bytes it stored, single-part uploads only, which is
asserted) — byte for byte without a GET per object. Results go to ``--out`` as JSON;
``plot_sync.py`` draws them and writes the README table.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import fsspec

from benchmarks.harness import S3Service, format_requests, measure
from benchmarks.peers import PEERS_BIN, TOOLS, Command
from gens_fs.testing.s3 import boto3_client
from gens_fs.testing.synthetic import SyntheticStore, make_store, mutate

SCENARIOS: Final = ("upload", "noop", "mutated", "download")
BUCKET: Final = "bench"
LIST_PAGE: Final = 1000


@dataclass
class Run:
    """One tool, one scenario, one latency."""

    tool: str
    scenario: str
    latency_ms: float
    drafts: int
    files: int
    wall_s: float | None = None
    cpu_s: float | None = None
    requests: dict[str, int] = field(default_factory=dict)
    returncode: int | None = None
    timeout: bool = False
    correct: bool | None = None
    mismatch: str = ""
    must_copy: int = 0
    list_pages: int = 0
    stderr_tail: str = ""
    skipped: str = ""
    load_before: float | None = None  # 1-minute load average: other work on the machine


def run_command(command: Command, timeout_s: float) -> tuple[int | None, bool, str]:
    """Run to completion or kill its process group at ``timeout_s``: (rc, timed out, stderr)."""
    process = subprocess.Popen(
        command.argv,
        env=command.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _, err = process.communicate(timeout=timeout_s)
        return process.returncode, False, err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate()
        return None, True, err.decode(errors="replace")


# -- checking a mirror ------------------------------------------------------------------


def local_digests(root: Path) -> dict[str, tuple[int, str]]:
    """``{relpath: (size, md5)}`` of every file under ``root``."""
    out: dict[str, tuple[int, str]] = {}
    if not root.exists():
        return out
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            data = path.read_bytes()
            out[path.relative_to(root).as_posix()] = (len(data), hashlib.md5(data).hexdigest())
    return out


def s3_digests(endpoint: str, prefix: str) -> dict[str, tuple[int, str]]:
    """``{relpath: (size, md5)}`` of every object under ``s3://BUCKET/prefix/`` (ETags)."""
    client = boto3_client(endpoint)
    base = prefix.rstrip("/") + "/"
    out: dict[str, tuple[int, str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=base):
        for obj in page.get("Contents", []):
            etag = obj["ETag"].strip('"')
            if "-" in etag:
                raise AssertionError(f"multipart ETag, not an MD5: {obj['Key']}")
            out[obj["Key"][len(base) :]] = (obj["Size"], etag)
    return out


def compare(want: dict[str, tuple[int, str]], got: dict[str, tuple[int, str]]) -> str:
    """'' when ``got`` mirrors ``want``; else a short description of the differences."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    same_size = sum(1 for k in differ if want[k][0] == got[k][0])
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} extra (e.g. {extra[0]})")
    if differ:
        parts.append(f"{len(differ)} differ ({same_size} of them same-size)")
    return "; ".join(parts)


# -- one tool through the scenarios -----------------------------------------------------


def bench_tool(
    tool: str,
    service: S3Service,
    base: Path,
    store: SyntheticStore,
    workdir: Path,
    latency_s: float,
    scenarios: list[str],
    timeout_s: float,
    on_run: Callable[[Run], None],
) -> list[Run]:
    """Run ``tool`` through the scenarios; ``on_run`` is called with each recorded run."""
    endpoint = service.endpoint_url
    src = workdir / tool / "src"
    shutil.copytree(base, src)  # copy2: same mtimes as the base store for every tool
    prefix = f"{latency_s * 1000:g}ms-{tool}/data"
    remote = f"s3://{BUCKET}/{prefix}"
    download = workdir / tool / "download"
    files = store.file_count
    pages = -(-files // LIST_PAGE)
    wanted = [s for s in SCENARIOS if s in scenarios]
    last = max(SCENARIOS.index(s) for s in wanted)
    runs: list[Run] = []
    failed = ""
    for scenario in SCENARIOS[: last + 1]:
        run = Run(tool, scenario, latency_s * 1000, store_drafts(store), files)
        if failed:
            run.skipped = failed
            if scenario in wanted:
                runs.append(run)
                on_run(run)
            continue
        if scenario == "mutated":
            changed = mutate(fsspec.filesystem("file"), str(src), store, fraction=0.01)
            run.must_copy = len(changed)
        elif scenario in ("upload", "download"):
            run.must_copy = files
        run.list_pages = pages
        source, dest = (remote, str(download)) if scenario == "download" else (str(src), remote)
        command = TOOLS[tool](source, dest, endpoint)
        service.set_latency(latency_s)
        run.load_before = round(os.getloadavg()[0], 2)
        with measure(f"{tool} {scenario}", service) as m:
            rc, timed_out, err = run_command(command, timeout_s)
        service.set_latency(0)
        run.wall_s, run.cpu_s, run.requests = m.wall_s, m.cpu_s, m.requests
        run.returncode, run.timeout = rc, timed_out
        run.stderr_tail = err.strip()[-600:]
        if scenario == "download":
            want, got = s3_digests(endpoint, prefix), local_digests(download)
        else:
            want, got = local_digests(src), s3_digests(endpoint, prefix)
        run.mismatch = compare(want, got)
        run.correct = not run.mismatch and not timed_out
        service.reset_counts()
        status = "TIMEOUT" if timed_out else ("ok" if run.correct else f"WRONG: {run.mismatch}")
        print(
            f"  {latency_s * 1000:>4g} ms {tool:<13} {scenario:<9} wall {m.wall_s:7.2f}s "
            f"cpu {m.cpu_s:6.2f}s rc={rc} {format_requests(m.requests)} [{status}]",
            file=sys.stderr,
            flush=True,
        )
        if timed_out and scenario == "upload":
            failed = "upload timed out"
        if scenario in wanted:
            runs.append(run)
            on_run(run)
    shutil.rmtree(workdir / tool, ignore_errors=True)
    return runs


def store_drafts(store: SyntheticStore) -> int:
    return len(store.gen_ids["draft"])


@functools.cache
def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as exc:
            return f"unavailable ({exc.__class__.__name__})"
        return (out.stdout or out.stderr).strip().splitlines()[0]

    import botocore
    import s3fs

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,
    ).stdout.strip()
    return {
        "gens_fs": f"git {head}",
        "aws": first_line([str(PEERS_BIN / "aws"), "--version"]),
        "rclone": first_line(["rclone", "version"]),
        "s5cmd": first_line([str(PEERS_BIN / "s5cmd"), "version"]),
        "fsspec": f"fsspec {fsspec.__version__}, s3fs {s3fs.__version__}, "
        f"botocore {botocore.__version__}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drafts", type=int, default=200, help="drafts (x36 files)")
    parser.add_argument(
        "--latencies", type=float, nargs="+", default=[0, 10, 100], help="added ms per request"
    )
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="gens-fs-bench-sync-") as tmp:
        base = Path(tmp) / "base"
        store = make_store(fsspec.filesystem("file"), str(base), drafts=args.drafts)

        def record(run: Run) -> None:
            runs.append(run)
            if args.out:  # after every run: keep what is done if a later one is cut short
                _write(args.out, started, store, runs)

        print(
            f"store: {args.drafts} drafts, {store.generation_count} generations, "
            f"{store.file_count} files, {store.total_bytes / 1e6:.1f} MB",
            file=sys.stderr,
        )
        with S3Service() as service:
            for latency_ms in args.latencies:
                service.create_bucket(BUCKET)  # a fresh one per latency, deleted after it
                for tool in args.tools:
                    bench_tool(
                        tool,
                        service,
                        base,
                        store,
                        Path(tmp) / "work",
                        latency_ms / 1000,
                        args.scenarios,
                        args.timeout,
                        record,
                    )
                service.delete_bucket(BUCKET)
    if args.out:
        _write(args.out, started, store, runs)
        print(f"wrote {args.out}", file=sys.stderr)


def _write(out: Path, started: str, store: SyntheticStore, runs: list[Run]) -> None:
    result: dict[str, Any] = {
        "date": started,
        "command": "python -m benchmarks.bench_sync " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores; moto server + middleware in one child process",
        "store": {
            "drafts": store_drafts(store),
            "generations": store.generation_count,
            "files": store.file_count,
            "bytes": store.total_bytes,
        },
        "versions": versions(),
        "runs": [asdict(r) for r in runs],
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
