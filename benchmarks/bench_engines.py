"""The two engines side by side: fsspec (s3fs + botocore) against obstore, in one run.

    python -m benchmarks.bench_engines --out benchmarks/results/engines.json
    python -m benchmarks.bench_engines --drafts 10 --latencies 0     # a quick look

At each added latency (ms per request, at the counting proxy in front of moto, both in a
child process so that the CPU measured here is the client's alone), for each engine, on
the same synthetic store (``make_store``, ``--drafts`` drafts: 9 generations and ~36 files
each):

1. ``read_many``  the backend primitive alone: every evaluation's four files, one
                  ``SyncBackend.read_many`` (GETs, up to 128 in flight);
2. ``write_many`` the backend primitive alone: as many small files written (PUTs);
3. ``load_many``  ``GensStore.load_many`` of every evaluation (GETs, then parsing);
4. ``upload``     ``sync`` of the local store to an empty prefix (one PUT per file);
5. ``download``   ``sync`` of that prefix to an empty local folder (one GET per file).

Recorded per run: wall s, client CPU s (``time.process_time`` of this process), requests
by kind (the proxy's counts), client CPU per request, and for the syncs whether the
destination ended an exact mirror (paths, sizes, MD5s). The two engines alternate at each
step, so a change in the machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import fsspec

from benchmarks.bench_sync import BUCKET, compare, local_digests, s3_digests
from benchmarks.harness import S3Service, format_requests, measure
from gens_fs import GensStore, sync
from gens_fs.backends import Engine, SyncBackend, open_backend
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.synthetic import SyntheticStore, make_store

ENGINES: Final[tuple[Engine, ...]] = ("fsspec", "obstore")
STEPS: Final = ("read_many", "write_many", "load_many", "upload", "download")


@dataclass
class Run:
    """One engine, one step, one latency."""

    engine: str
    step: str
    latency_ms: float
    items: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    correct: bool | None = None
    load_before: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        total = sum(self.requests.values())
        return self.cpu_s * 1000 / total if total else 0.0


def bench_step(
    service: S3Service, run: Run, action: Callable[[], bool | None], latency_s: float
) -> Run:
    """Run ``action`` at ``latency_s`` and fill ``run`` with what it cost."""
    service.set_latency(latency_s)
    run.load_before = round(os.getloadavg()[0], 2)
    with measure(run.step, service) as m:
        run.correct = action()
    service.set_latency(0)
    run.wall_s, run.cpu_s, run.requests = m.wall_s, m.cpu_s, m.requests
    print(
        f"  {run.latency_ms:>4g} ms {run.engine:<8} {run.step:<10} wall {m.wall_s:7.2f}s "
        f"cpu {m.cpu_s:6.2f}s ({run.cpu_ms_per_request:.2f} ms/request) "
        f"{format_requests(m.requests)}"
        f"{'' if run.correct is None else ' [ok]' if run.correct else ' [WRONG]'}",
        file=sys.stderr,
        flush=True,
    )
    return run


def engine_steps(
    engine: Engine, service: S3Service, store: SyntheticStore, base: Path, work: Path, ms: float
) -> dict[str, tuple[int, Callable[[], bool | None]]]:
    """Each step's item count and action for ``engine`` (prefixes of its own)."""
    options = s3_storage_options(service.endpoint_url)
    prefix = f"{ms:g}ms-{engine}"
    ids = list(store.gen_ids["evaluation"])
    names = ("raw.txt", "parsed.txt", "prompt.txt", "metadata.json")
    reads = [f"{BUCKET}/base/gens/evaluation/{g}/{n}" for g in ids for n in names]
    backend = SyncBackend(open_backend(f"s3://{BUCKET}", storage_options=options, engine=engine))
    blobs = {f"{BUCKET}/{prefix}/put/{i:05d}.txt": b"x" * 2000 for i in range(len(reads))}
    gens = GensStore(f"s3://{BUCKET}/base/gens", storage_options=options, engine=engine)
    remote, download = f"s3://{BUCKET}/{prefix}/data", work / f"{prefix}-download"

    def read() -> bool:
        return all(v is not None for v in backend.read_many(reads).values())

    def write() -> None:
        backend.write_many(blobs)

    def load() -> bool:
        return len(gens.load_many("evaluation", ids)) == len(ids)

    def upload() -> bool:
        report = sync(str(base), remote, dst_options=options, engine=engine)
        got = s3_digests(service.endpoint_url, BUCKET, f"{prefix}/data")
        return report.ok and not compare(local_digests(base), got)

    def down() -> bool:
        report = sync(remote, str(download), src_options=options, engine=engine)
        return report.ok and not compare(local_digests(base), local_digests(download))

    return {
        "read_many": (len(reads), read),
        "write_many": (len(blobs), write),
        "load_many": (len(ids), load),
        "upload": (store.file_count, upload),
        "download": (store.file_count, down),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drafts", type=int, default=200, help="drafts (x36 files)")
    parser.add_argument(
        "--latencies", type=float, nargs="+", default=[0, 10, 100], help="added ms per request"
    )
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="gens-fs-bench-engines-") as tmp:
        base = Path(tmp) / "base"
        store = make_store(fsspec.filesystem("file"), str(base), drafts=args.drafts)
        print(
            f"store: {args.drafts} drafts, {store.generation_count} generations, "
            f"{store.file_count} files, {store.total_bytes / 1e6:.1f} MB",
            file=sys.stderr,
        )
        with S3Service() as service:
            service.create_bucket(BUCKET)
            remote_fs = fsspec.filesystem("s3", **s3_storage_options(service.endpoint_url))
            make_store(remote_fs, f"{BUCKET}/base", drafts=args.drafts)
            for ms in args.latencies:
                steps = {e: engine_steps(e, service, store, base, Path(tmp), ms) for e in ENGINES}
                for step in STEPS:
                    for engine in ENGINES:
                        items, action = steps[engine][step]
                        run = Run(engine, step, ms, items)
                        runs.append(bench_step(service, run, action, ms / 1000))
                        if args.out:
                            _write(args.out, started, store, runs)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    print("\n".join(table(runs)))


def table(runs: list[Run]) -> list[str]:
    """The README table: each step's two engines side by side."""
    lines = [
        "| latency | step | engine | items | requests | wall s | client CPU s "
        "| CPU ms / request | wall / fsspec's | correct |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fsspec_wall = {(r.latency_ms, r.step): r.wall_s for r in runs if r.engine == "fsspec"}
    for r in runs:
        ratio = r.wall_s / fsspec_wall.get((r.latency_ms, r.step), r.wall_s or 1.0)
        correct = "-" if r.correct is None else "yes" if r.correct else "**no**"
        lines.append(
            f"| {r.latency_ms:g} ms | {r.step} | {r.engine} | {r.items} | "
            f"{format_requests(r.requests)} | {r.wall_s:.2f} | {r.cpu_s:.2f} | "
            f"{r.cpu_ms_per_request:.2f} | {ratio:.2f} | {correct} |"
        )
    return lines


def _write(out: Path, started: str, store: SyntheticStore, runs: list[Run]) -> None:
    import obstore
    import s3fs

    result: dict[str, Any] = {
        "date": started,
        "command": "python -m benchmarks.bench_engines " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores; moto server + proxy in one child process",
        "store": {"files": store.file_count, "bytes": store.total_bytes},
        "versions": {"s3fs": s3fs.__version__, "obstore": obstore.__version__},
        "runs": [{**asdict(r), "cpu_ms_per_request": r.cpu_ms_per_request} for r in runs],
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
