"""The distributed sync (``gens_fs.dask.sync``) against the single-machine one.

    python -m benchmarks.bench_dask_sync --out benchmarks/results/dask-sync.json
    python -m benchmarks.bench_dask_sync --drafts 20 --latencies 10 --repeat 1   # a look
    python -m benchmarks.bench_dask_sync --listing-keys 100000 --listing-only --latencies 100

One synthetic local store (``make_store``, ``--drafts`` drafts: 36 files each) is uploaded
to an empty S3 prefix (``upload``), then synced again unchanged (``noop``), through the
counting middleware around moto with ``--latencies`` ms added to every request (the S3
service runs in a child process: ``benchmarks.harness``). Three ways: ``gens_fs.sync`` in
this process (``here``), and ``gens_fs.dask.sync`` on a ``LocalCluster`` of 1 and of 2
worker processes (one thread each; ``dask-1``, ``dask-2``), each run to a prefix of its
own. Both clusters are started first; then, ``--repeat`` times, the three ways take turns
(here, dask-1, dask-2, here, ...), so a change in the machine's load falls on all of them.

Recorded per run: wall s (the cluster already up: its start is recorded on its own),
client CPU s (this process plus, for Dask, its workers' own ``process_time``), requests by
kind, the 1-minute load average before it, and whether the prefix ended a mirror of the
source (sizes and MD5 against the listing's ETags, at 0 ms, after the measured block).

``--listing-keys N`` also times the listing a sync makes of one side whose evaluation stage
holds N keys (four files for each of N/4 gen_ids, written straight into moto): here
(``list_data_root``), on each cluster (``ClusterLister``: a task per folder), and the stage
as one ListObjectsV2 page chain; wall, requests, and a cluster's longest task on its worker.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from distributed import Client, LocalCluster
from s3fs import S3FileSystem

from benchmarks.harness import S3Service, format_requests, measure
from gens_fs import sync as sync_here
from gens_fs.backends import SyncBackend, open_backend
from gens_fs.dask import sync as sync_on_cluster
from gens_fs.dask_sync import ClusterLister, Side
from gens_fs.listing import list_data_root
from gens_fs.sync import SyncReport
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.synthetic import make_store

BUCKET = "bench-dask"
LIST_BUCKET = "bench-dask-listing"
SCENARIOS = ("upload", "noop")


@dataclass
class Run:
    """One way of syncing, one scenario, one latency."""

    way: str
    scenario: str
    latency_ms: float
    files: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    copied: int = 0
    ok: bool = False
    mirror: bool | None = None
    load_before: float = 0.0
    repeat: int = 0


def digests(root: Path) -> dict[str, tuple[int, str | None]]:
    """``{relpath: (size, md5)}`` of every file under the local ``root``."""
    out: dict[str, tuple[int, str | None]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            out[path.relative_to(root).as_posix()] = (len(data), hashlib.md5(data).hexdigest())
    return out


def remote_digests(url: str, options: dict[str, Any]) -> dict[str, tuple[int, str | None]]:
    """The same from one listing of the prefix (an object's ETag is its MD5 here)."""
    backend = SyncBackend(open_backend(url, storage_options=options))
    listing = list_data_root(backend, ["gens", "cohorts"])
    return {r: (info.size, info.hash) for r, info in listing.files.items()}


@contextmanager
def clusters(sizes: list[int]) -> Iterator[dict[str, Client]]:
    """A client of a new ``LocalCluster`` of each size (``dask-N``: N worker processes)."""
    with ExitStack() as stack:
        clients = {}
        for workers in sizes:
            start = time.perf_counter()
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    processes=True,
                    threads_per_worker=1,
                    dashboard_address="127.0.0.1:0",
                )
            )
            client = stack.enter_context(Client(cluster, set_as_default=False))
            client.wait_for_workers(workers)
            print(f"LocalCluster of {workers}: up in {time.perf_counter() - start:.1f} s")
            clients[f"dask-{workers}"] = client
        yield clients


def workers_cpu(client: Client | None) -> float:
    """The CPU seconds the cluster's worker processes have used so far."""
    if client is None:
        return 0.0
    return float(sum(client.run(time.process_time).values()))


def bench_way(
    way: str,
    client: Client | None,
    service: S3Service,
    src: Path,
    want: dict[str, tuple[int, str | None]],
    latency_ms: float,
    repeat: int,
) -> list[Run]:
    options = s3_storage_options(service.endpoint_url)
    dst = f"s3://{BUCKET}/{latency_ms:g}ms-{way}-{repeat}/data"
    call: Callable[..., SyncReport] = (
        sync_here if client is None else functools.partial(sync_on_cluster, client=client)
    )
    runs = []
    for scenario in SCENARIOS:
        run = Run(way, scenario, latency_ms, len(want), repeat=repeat)
        run.load_before = round(os.getloadavg()[0], 2)
        service.set_latency(latency_ms / 1000)
        before = workers_cpu(client)
        with measure(f"{way} {scenario}", service) as m:
            report = call(str(src), dst, dst_options=options)
        after = workers_cpu(client)
        service.set_latency(0)
        run.wall_s, run.requests = round(m.wall_s, 2), m.requests
        run.cpu_s = round(m.cpu_s + after - before, 2)
        run.copied, run.ok = report.copied, report.ok
        run.mirror = remote_digests(dst, options) == want
        runs.append(run)
        print(
            f"{latency_ms:>5g} ms  {way:<7} {scenario:<7} wall {run.wall_s:7.2f} s  "
            f"cpu {run.cpu_s:6.2f} s  copied {run.copied:>5}  ok {run.ok}  mirror {run.mirror}"
            f"  load {run.load_before:.1f}  {format_requests(run.requests)}",
            flush=True,
        )
    return runs


def bench_listing(
    service: S3Service, clients: dict[str, Client], keys: int, latency_ms: float, repeat: int
) -> list[dict[str, Any]]:
    """The listing a sync makes of one side (each stage folder and ``cohorts/``), ``keys``
    keys in its evaluation stage: here (``list_data_root``), on each cluster
    (:class:`~gens_fs.dask_sync.ClusterLister`: a task per folder), and that stage as one
    page chain. Per run: wall, requests, and for a cluster its longest task's time on its
    worker."""
    from distributed import get_task_stream

    from benchmarks.bench_tables import LIST_STAGE, _listing_keys, _page_chain
    from gens_fs.backends import run

    service.create_bucket(LIST_BUCKET)
    service.put_objects(LIST_BUCKET, _listing_keys(keys))
    options = s3_storage_options(service.endpoint_url)
    side = Side.open(f"s3://{LIST_BUCKET}/list", options, "fsspec", None)
    folders = ["gens/draft", "gens/essay", "gens/evaluation", "cohorts"]
    fs = S3FileSystem(**options)
    ways: dict[str, Callable[[], int]] = {
        "one page chain (the stage)": lambda: run(_page_chain(fs, LIST_BUCKET, f"{LIST_STAGE}/")),
        "here (list_data_root)": lambda: len(list_data_root(side.root.backend, folders).files),
    }
    for name, client in clients.items():
        ways[name] = functools.partial(_list_on, ClusterLister(client, [side]), side, folders)
    service.set_latency(latency_ms / 1000)
    rows = []
    for n in range(repeat):
        for way, call in ways.items():
            load = round(os.getloadavg()[0], 2)
            on = clients.get(way)
            with ExitStack() as stack, measure(way, service) as m:
                stream = stack.enter_context(get_task_stream(on)) if on is not None else None
                listed = call()
            assert listed == keys, (way, listed)
            longest = max((_compute_s(t) for t in stream.data), default=0.0) if stream else None
            row = {
                "way": way,
                "repeat": n,
                "latency_ms": latency_ms,
                "keys": listed,
                "wall_s": round(m.wall_s, 2),
                "requests": m.requests,
                "longest_task_s": longest,
                "load_before": load,
            }
            print(row, flush=True)
            rows.append(row)
    service.set_latency(0)
    return rows


def _list_on(lister: ClusterLister, side: Side, folders: list[str]) -> int:
    return len(lister(side.root.backend, folders).files)


def _compute_s(task: dict[str, Any]) -> float:
    return float(
        sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
    )


def summary(runs: list[Run]) -> list[str]:
    """The median wall and CPU of each way, scenario and latency, one line each."""
    groups: dict[tuple[float, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.latency_ms, run.scenario, run.way), []).append(run)
    lines = []
    for (latency, scenario, way), group in sorted(groups.items()):
        walls = sorted(r.wall_s for r in group)
        cpus = sorted(r.cpu_s for r in group)
        lines.append(
            f"| {latency:g} ms | {scenario} | {way} | {statistics.median(walls):.2f} "
            f"({walls[0]:.2f}-{walls[-1]:.2f}) | {statistics.median(cpus):.2f} | "
            f"{format_requests(group[0].requests)} | {all(r.ok and r.mirror for r in group)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=100)
    parser.add_argument("--latencies", type=float, nargs="+", default=[10.0, 100.0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--listing-keys",
        type=int,
        default=0,
        help="also time the listing of a side whose evaluation stage holds this many keys",
    )
    parser.add_argument("--listing-only", action="store_true", help="the listing alone")
    args = parser.parse_args()

    runs: list[Run] = []
    listings: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-dask-sync-") as tmp,
        S3Service() as service,
        clusters(args.workers) as clients,
    ):
        if args.listing_keys:
            for latency in args.latencies:
                listings += bench_listing(service, clients, args.listing_keys, latency, args.repeat)
        if not args.listing_only:
            src = Path(tmp) / "src"
            store = make_store(fsspec.filesystem("file"), str(src), drafts=args.drafts)
            want = digests(src)
            print(f"{store.file_count} files", flush=True)
            service.create_bucket(BUCKET)
            ways: dict[str, Client | None] = {"here": None, **clients}
            for latency in args.latencies:
                for repeat in range(args.repeat):
                    for way, client in ways.items():
                        runs += bench_way(way, client, service, src, want, latency, repeat)
    for run in summary(runs):
        print(run)
    if args.out:
        out = (
            [asdict(r) for r in runs]
            if not listings
            else {"sync": [asdict(r) for r in runs], "listing": listings}
        )
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
