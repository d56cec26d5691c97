"""Where a no-op resync's wall time goes, tool by tool: how long each takes to send its
first request, how many it sends and when the last one arrives, and the S3 server's CPU
spent answering them (moto answers on one core at a time: Python, one GIL).

    python -m benchmarks.profile_noop                        # +10 ms, 5 rounds
    python -m benchmarks.profile_noop --latency-ms 100 --rounds 3

The store is ``bench_sync``'s (``make_store``, 200 drafts: 7,201 files), loaded into the
bucket once per tool (each its own prefix) with no HTTP; each tool runs once untimed (a
warm hash cache for gens-fs), then the tools take turns, ``--rounds`` times. A run cannot
end before the server has answered its requests, and those answers cannot start before
the first request: wall >= first request + server CPU, whatever the client.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import fsspec

from benchmarks.harness import S3Service
from benchmarks.peers import TOOLS, Command
from gens_fs.testing.synthetic import make_store

BUCKET = "profile-noop"
NAMES = ("ours", "ours-obstore", "s5cmd")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(service: S3Service, command: Command) -> dict[str, float]:
    """One run: wall, client CPU, server CPU, requests, first and last request's arrival
    (seconds after launch)."""
    service.reset_counts()
    server0, client0 = service.cpu(), _children_cpu()
    launched = time.monotonic()
    done = subprocess.run(command.argv, env=command.env, capture_output=True, text=True)
    wall = time.monotonic() - launched
    if done.returncode:
        raise SystemExit(f"{command.argv[:4]} failed: {done.stderr[-800:]}")
    arrivals = service.arrivals()
    return {
        "wall": wall,
        "client": _children_cpu() - client0,
        "server": service.cpu() - server0,
        "requests": len(arrivals),
        "first": arrivals[0] - launched,
        "last": arrivals[-1] - launched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, S3Service() as service:
        store = make_store(fsspec.filesystem("file"), f"{tmp}/store", drafts=200)
        service.create_bucket(BUCKET)
        commands = {}
        for name in NAMES:
            service.load(BUCKET, name, Path(store.data_root))
            dst = f"s3://{BUCKET}/{name}"
            commands[name] = TOOLS[name](store.data_root, dst, service.endpoint_url)
        service.set_latency(args.latency_ms / 1000)
        for command in commands.values():
            timed(service, command)  # untimed: the hash cache warm, connections made once
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
        for _ in range(args.rounds):
            for name, command in commands.items():
                runs[name].append(timed(service, command))
    print(
        f"no-op resync of {store.file_count:,} files, +{args.latency_ms:g} ms a request, "
        f"median of {args.rounds} (1-minute load before: {load:.1f})"
    )
    print(
        "| tool | wall s | first request s | last request s | requests | server CPU s "
        "| client CPU s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, got in runs.items():
        med = {k: statistics.median(r[k] for r in got) for k in got[0]}
        print(
            f"| {name} | {med['wall']:.2f} | {med['first']:.2f} | {med['last']:.2f} | "
            f"{med['requests']:.0f} | {med['server']:.2f} | {med['client']:.2f} |"
        )


if __name__ == "__main__":
    main()
