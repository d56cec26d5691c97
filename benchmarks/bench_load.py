"""Reading generations: gens_fs against a plain pathlib reader (local) and against
one-at-a-time and naive reads (S3, through the counting middleware with added latency).

    python benchmarks/bench_load.py                 # the figures in benchmarks/README.md
    python benchmarks/bench_load.py --drafts 20 --latencies 0   # a quick look

(a) local: ``GensStore.load`` of every generation against the earlier pipeline's reader
    (pathlib: read four files, ``json.loads`` the metadata). Target: within 1.5x.
(b) S3: ``load_many`` of every evaluation (1,000+) against ``load`` one at a time and a
    naive port (``exists()`` then read, per file, on an untuned s3fs), at 0, 10 and 100 ms
    of added latency per request. Target at 10 ms: at least 10x faster than one at a time,
    with no more requests than files read plus listing pages (no HEAD).
The slow baselines read a sample of the generations at high latency; their time is scaled
to the full count (they are sequential, so time is linear in the count) and marked ``~``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fsspec
import s3fs

from benchmarks.harness import S3Service, best_of, format_requests, measure
from gens_fs import GensStore
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.synthetic import make_store

ARTIFACTS = ("raw.txt", "parsed.txt", "prompt.txt", "metadata.json")


def pathlib_load(gens_root: Path, stage: str, gen_id: str) -> dict[str, Any]:
    """The earlier pipeline's reader: plain pathlib, no validation beyond json.loads."""
    base = gens_root / stage / gen_id

    def read(name: str) -> str | None:
        path = base / name
        return path.read_text(encoding="utf-8") if path.exists() else None

    meta = read("metadata.json")
    return {
        "raw_text": read("raw.txt"),
        "parsed_text": read("parsed.txt"),
        "prompt_text": read("prompt.txt"),
        "metadata": json.loads(meta) if meta is not None else None,
    }


def bench_local(drafts: int, runs: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = make_store(fsspec.filesystem("file"), f"{tmp}/data", drafts=drafts)
        gens_root = Path(tmp) / "data" / "gens"
        store = GensStore(gens_root)
        pairs = [(s, g) for s, ids in synthetic.gen_ids.items() for g in ids]

        def ours() -> None:
            for stage, gen_id in pairs:
                store.load(stage, gen_id)

        def plain() -> None:
            for stage, gen_id in pairs:
                pathlib_load(gens_root, stage, gen_id)

        def ours_batched() -> None:
            for stage, ids in synthetic.gen_ids.items():
                store.load_many(stage, ids)

        t_ours, t_plain, t_many = (
            best_of(runs, ours),
            best_of(runs, plain),
            best_of(runs, ours_batched),
        )
    n = len(pairs)
    return [
        f"### (a) local disk: {n} generations, best of {runs}",
        "",
        "| reader | total s | per generation µs | ratio to pathlib |",
        "|---|---|---|---|",
        _row("pathlib reader (baseline)", t_plain, n, t_plain),
        _row("`GensStore.load` one at a time", t_ours, n, t_plain),
        _row("`GensStore.load_many` per stage", t_many, n, t_plain),
        "",
    ]


def _row(name: str, seconds: float, count: int, baseline: float) -> str:
    return f"| {name} | {seconds:.3f} | {seconds / count * 1e6:.0f} | {seconds / baseline:.2f} |"


def bench_s3(drafts: int, latencies: list[float], samples: dict[float, int]) -> list[str]:
    lines = [
        "### (b) S3 through the counting middleware: every evaluation of the store",
        "",
        "| latency | method | generations | wall s | client CPU s | requests "
        "| time / load_many's |",
        "|---|---|---|---|---|---|---|",
    ]
    with S3Service() as service:
        service.create_bucket("bench")
        options = s3_storage_options(service.endpoint_url)
        fs = fsspec.filesystem("s3", **options)
        synthetic = make_store(fs, "bench/data", drafts=drafts)
        ids = list(synthetic.gen_ids["evaluation"])
        root = "s3://bench/data/gens"
        for latency in latencies:
            service.set_latency(latency)
            store = GensStore(root, storage_options=options)
            with measure("load_many", service) as many:
                got = store.load_many("evaluation", ids)
            assert len(got) == len(ids)
            sample = ids[: min(len(ids), samples.get(latency, len(ids)))]
            with measure("one at a time", service) as single:
                for gen_id in sample:
                    store.load("evaluation", gen_id)
            naive_fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
            naive_sample = sample[: max(1, len(sample) // 2)]
            with measure("naive", service) as naive:
                for gen_id in naive_sample:
                    for name in ARTIFACTS:
                        path = f"bench/data/gens/evaluation/{gen_id}/{name}"
                        if naive_fs.exists(path):
                            naive_fs.cat_file(path)
            for m, count in ((many, len(ids)), (single, len(sample)), (naive, len(naive_sample))):
                scale = len(ids) / count
                wall = m.wall_s * scale
                mark = "" if count == len(ids) else "~"
                reqs = {k: round(v * scale) for k, v in m.requests.items()}
                speedup = wall / (many.wall_s or 1e-9)
                lines.append(
                    f"| {latency * 1000:.0f} ms | {m.name} | {len(ids)}"
                    f"{'' if count == len(ids) else f' (ran {count})'} | {mark}{wall:.2f} | "
                    f"{mark}{m.cpu_s * scale:.2f} | {mark}{format_requests(reqs)} | "
                    f"{speedup:.1f}x |"
                )
            print(f"latency {latency}: done", file=sys.stderr)
    files = 4 * len(ids)
    lines += ["", f"Files read by load_many: {files} (4 per evaluation).", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--drafts",
        type=int,
        default=170,
        help="drafts in the store (x9 generations; evaluations = 6x)",
    )
    parser.add_argument(
        "--latencies", type=float, nargs="+", default=[0, 10, 100], help="added ms per request"
    )
    parser.add_argument("--runs", type=int, default=5, help="local runs (best of)")
    args = parser.parse_args()
    latencies = [ms / 1000 for ms in args.latencies]
    # Sequential baselines at high latency would take minutes; they read a sample.
    samples = {0.0: 10**9, 0.01: 200, 0.1: 40}
    started = time.strftime("%Y-%m-%d %H:%M")
    out = [
        f"## bench_load ({started}, `python benchmarks/bench_load.py {' '.join(sys.argv[1:])}`)",
        "",
    ]
    out += bench_local(args.drafts, args.runs)
    out += bench_s3(args.drafts, latencies, samples)
    print("\n".join(out))


if __name__ == "__main__":
    main()
