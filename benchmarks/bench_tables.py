"""Analysis at scale (issue 11): a stage as a table, the Dask reader, and listing a large
stage in shards, on S3 through the counting middleware with added latency.

    python -m benchmarks.bench_tables                    # the figures in benchmarks/README.md
    python -m benchmarks.bench_tables --drafts 20 --latencies 10 --list-keys 5000   # a look

(a) ``gens-fs export ROOT --stage evaluation --lineage --output x.parquet`` of every
    evaluation (``--drafts 1667``: 10,002 of them), at each latency, against
    - the original's loop: ``load_generation`` of each evaluation, then of its essay and of
      its draft, one at a time (a sample, scaled to the count: marked ``~``);
    - ``load_many`` of the evaluations, then of their essays, then of their drafts;
    - the same files: one ``read_many`` of exactly the files the export reads (the floor).
    Each runs in a fresh process: wall, client CPU, peak RSS (imports included; the
    "imports" row is a process that only imports), requests by kind.
(b) the Dask reader, ``read_generations(..., lineage=True).compute()`` (its default
    ``partition_size``, 1,000 rows) on a ``LocalCluster`` of 1 and of 2 worker processes
    (one thread each): wall, the driver's and the workers' CPU, requests, and the load
    average before and after each run (the machine's other work during it).
(c) listing ``--list-keys`` keys of one stage: ``S3Backend.scan`` (sharded by key prefix)
    against one ListObjectsV2 page chain, the same client, at each latency, and the same
    with the obstore engine (``ObstoreBackend.scan`` against obstore's page chain): wall,
    requests, client CPU, the server's CPU (moto and the middleware, in their own process).
Targets: requests at the minimum; export within 1.5x of ``load_many`` of the same
generations; the sharded listing at least 5x faster than one page chain at 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fsspec

from benchmarks.harness import S3Service, format_requests
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.synthetic import make_store

BUCKET = "bench-tables"
LIST_BUCKET = "bench-listing"
LIST_STAGE = "list/gens/evaluation"
NAMES = ("metadata.json", "parsed.txt", "prompt.txt", "raw.txt")
# The slow loop reads this many evaluations at each latency (ms), scaled to the count.
LOOP_SAMPLE = {0: 400, 10: 200, 100: 40}
# Every measurement as measured, for ``--out``.
RAW: list[dict[str, Any]] = []


def seed_store(service: S3Service, drafts: int) -> dict[str, Any]:
    """A synthetic store written into the bucket (straight into moto's state); returns the
    gen_ids by stage and each generation's parent, for the child processes."""
    with tempfile.TemporaryDirectory() as tmp:
        # On local disk: the memory filesystem looks its folders up by scanning every file.
        synthetic = make_store(fsspec.filesystem("file"), f"{tmp}/data", drafts=drafts)
        files = {
            str(path.relative_to(tmp)): path.read_bytes()
            for path in Path(tmp).rglob("*")
            if path.is_file()
        }
    service.create_bucket(BUCKET)
    service.put_objects(BUCKET, files)
    return {"gen_ids": synthetic.gen_ids, "parents": synthetic.parents, "files": len(files)}


def run_case(case: str, endpoint: str, ids_file: str, extra: list[str]) -> dict[str, Any]:
    """``case`` in a fresh process (its own peak RSS); what it reports."""
    command = ["-m", "benchmarks.bench_tables", "--one", case, endpoint, ids_file, *extra]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def one(case: str, endpoint: str, ids_file: str, extra: list[str]) -> None:
    """In the child: run ``case`` and print wall, CPU and peak RSS as JSON."""
    # Every case pays the same imports (the "imports" case only these).
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import gens_fs.dask
    import gens_fs.tables  # noqa: F401

    ids = json.loads(Path(ids_file).read_text())
    # More attempts than the tests' 5: on a loaded 2-core machine the server's accept queue
    # can leave a connection waiting past botocore's connect timeout.
    options = s3_storage_options(endpoint, max_attempts=10)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    found = CASES[case](ids, options, extra)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": _rss_mb(), **found}))


def _rss_mb() -> float:
    """This process's peak RSS since its exec (``VmHWM``; ``ru_maxrss`` would start from
    the parent's size at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Found = dict[str, Any]


def _imports(ids: dict[str, Any], options: dict[str, Any], extra: list[str]) -> Found:
    return {"rows": 0}


def _export(ids: dict[str, Any], options: dict[str, Any], extra: list[str]) -> Found:
    from gens_fs.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/evaluations.parquet"
        args = ["export", f"s3://{BUCKET}/data", "--stage", "evaluation", "--lineage"]
        try:
            main([*args, "--output", out, "--json", *_option_flags(options)])
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        import pyarrow.parquet

        return {"rows": pyarrow.parquet.read_metadata(out).num_rows}


def _option_flags(options: dict[str, Any], prefix: str = "") -> list[str]:
    """Storage options as ``-o key=value`` flags (dotted keys for nested ones)."""
    flags: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            flags += _option_flags(value, f"{prefix}{key}.")
        else:
            flags += ["-o", f"{prefix}{key}={json.dumps(value)}"]
    return flags


def _loop(ids: dict[str, Any], options: dict[str, Any], extra: list[str]) -> Found:
    from gens_fs import load_generation

    gens_root = f"s3://{BUCKET}/data/gens"
    for gen_id in ids["gen_ids"]["evaluation"][: int(extra[0])]:
        evaluation = load_generation(gens_root, "evaluation", gen_id, storage_options=options)
        essay = load_generation(
            gens_root, "essay", evaluation["parent_gen_id"], storage_options=options
        )
        load_generation(gens_root, "draft", essay["parent_gen_id"], storage_options=options)
    return {"rows": int(extra[0])}


def _load_many(ids: dict[str, Any], options: dict[str, Any], extra: list[str]) -> Found:
    from gens_fs import GensStore

    store = GensStore(f"s3://{BUCKET}/data/gens", storage_options=options)
    evaluations = store.load_many("evaluation", ids["gen_ids"]["evaluation"])
    essays = store.load_many("essay", {g.parent_gen_id or "" for g in evaluations.values()})
    store.load_many("draft", {g.parent_gen_id or "" for g in essays.values()})
    return {"rows": len(evaluations)}


def _same_files(ids: dict[str, Any], options: dict[str, Any], extra: list[str]) -> Found:
    """One ``read_many`` of what the export reads: each evaluation's metadata.json and
    parsed.txt, and each of their essays' and drafts' metadata.json."""
    from gens_fs import DataRoot

    root = DataRoot(f"s3://{BUCKET}/data", storage_options=options)
    store = root.store()
    evaluations = ids["gen_ids"]["evaluation"]
    essays = {ids["parents"][g] for g in evaluations}
    drafts = {ids["parents"][g] for g in essays}
    paths = [store.path("evaluation", g, n) for g in evaluations for n in NAMES[:2]]
    paths += [store.path("essay", g, NAMES[0]) for g in essays]
    paths += [store.path("draft", g, NAMES[0]) for g in drafts]
    root.backend.read_many(paths)
    return {"rows": len(evaluations)}


def _dask(ids: dict[str, Any], options: dict[str, Any], extra: list[str]) -> Found:
    """The wall time is the listing and the compute, not the cluster's start."""
    from distributed import Client, LocalCluster

    from gens_fs.dask import read_generations

    workers = int(extra[0])
    with (
        LocalCluster(
            n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        workers_cpu = sum(client.run(time.process_time).values())
        started, cpu = time.perf_counter(), time.process_time()
        lazy = read_generations(
            f"s3://{BUCKET}/data", stage="evaluation", lineage=True, storage_options=options
        )
        frame = lazy.compute()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        workers_cpu = sum(client.run(time.process_time).values()) - workers_cpu
    return {
        "rows": len(frame),
        "wall": wall,
        "cpu": cpu,
        "workers_cpu": workers_cpu,
        "partitions": lazy.npartitions,
    }


CASES = {
    "imports": _imports,
    "export": _export,
    "loop": _loop,
    "load_many": _load_many,
    "same_files": _same_files,
    "dask": _dask,
}


# -- the parent: seed, run each case, count its requests, print the tables ------------------


def bench_export(
    service: S3Service, ids_file: str, count: int, latencies: list[int], methods: list[str]
) -> list[str]:
    lines = [
        f"### (a) export with lineage of {count:,} evaluations, against the loops",
        "",
        "| latency | method | wall s | client CPU s | peak RSS MB | requests | wall / export's "
        "| load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    endpoint = service.endpoint_url
    imports = run_case("imports", endpoint, ids_file, [])["rss_mb"]
    for latency in latencies:
        service.set_latency(latency / 1000)
        measured: list[tuple[str, dict[str, Any], float]] = []
        sample = min(count, LOOP_SAMPLE.get(latency, 40))
        for name, case, extra in (
            ("`gens-fs export --lineage` (Parquet)", "export", []),
            (f"original's `load_generation` loop (ran {sample})", "loop", [str(sample)]),
            ("`load_many`: evaluations, essays, drafts", "load_many", []),
            ("the same files, one `read_many`", "same_files", []),
        ):
            if case not in methods:
                continue
            service.reset_counts()
            load = os.getloadavg()[0]
            try:
                result = run_case(case, endpoint, ids_file, extra)
            except RuntimeError as exc:  # one line in the table, the rest still measured
                lines.append(f"| {latency} ms | {name} | failed: {_last_line(exc)} |")
                print(exc, file=sys.stderr)
                continue
            result["requests"], result["load"] = service.counts(), load
            scale = count / result["rows"]
            result["case"] = case
            measured.append((name, result, scale))
            RAW.append({"part": "export", "latency_ms": latency, **result})
            print(f"{latency} ms {case}: {result}", file=sys.stderr)
        export_wall = next((r["wall"] for _, r, _ in measured if r["case"] == "export"), 1.0)
        for name, result, scale in measured:
            mark = "~" if scale != 1 else ""
            requests = {k: round(v * scale) for k, v in result["requests"].items()}
            lines.append(
                f"| {latency} ms | {name} | {mark}{result['wall'] * scale:.2f} | "
                f"{mark}{result['cpu'] * scale:.2f} | {result['rss_mb']:.0f} | "
                f"{mark}{format_requests(requests)} | {result['wall'] * scale / export_wall:.2f} "
                f"| {result['load']:.1f} |"
            )
    lines += [
        "",
        f"Peak RSS of a process that only imports the same modules: {imports:.0f} MB.",
        "",
    ]
    return lines


def bench_dask(service: S3Service, ids_file: str, count: int, latencies: list[int]) -> list[str]:
    lines = [
        f"### (b) the Dask reader: `read_generations(lineage=True).compute()`, {count:,} rows",
        "",
        "| latency | workers | partitions | wall s | driver CPU s | workers' CPU s | requests "
        "| load before | load after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for latency in latencies:
        service.set_latency(latency / 1000)
        for workers in (1, 2):
            service.reset_counts()
            load = os.getloadavg()[0]
            try:
                result = run_case("dask", service.endpoint_url, ids_file, [str(workers)])
            except RuntimeError as exc:
                lines.append(f"| {latency} ms | {workers} | failed: {_last_line(exc)} |")
                continue
            result["requests"], result["load"] = service.counts(), load
            # The 1-minute load as the run ends: the machine's other work during it.
            result["load_after"] = os.getloadavg()[0]
            requests = format_requests(result["requests"])
            print(f"{latency} ms dask {workers}: {result}", file=sys.stderr)
            RAW.append({"part": "dask", "latency_ms": latency, "workers": workers, **result})
            lines.append(
                f"| {latency} ms | {workers} | {result['partitions']} | {result['wall']:.2f} | "
                f"{result['cpu']:.2f} | {result['workers_cpu']:.2f} | {requests} | {load:.1f} "
                f"| {result['load_after']:.1f} |"
            )
    return [*lines, ""]


def _last_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1][:160]


async def _page_chain(fs: Any, bucket: str, prefix: str) -> int:
    """One ListObjectsV2 page after the other (continuation tokens): the keys it saw."""
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    seen = 0
    while True:
        page = await fs._call_s3("list_objects_v2", **params)
        seen += len(page.get("Contents", []))
        if not page.get("IsTruncated"):
            return seen
        params["ContinuationToken"] = page["NextContinuationToken"]


def shard_profile(keys: list[str], prefix: str, page_size: int = 1000) -> tuple[int, int, int]:
    """The sharded listing of sorted ``keys`` run on pages cut from them in memory (the
    same :func:`~gens_fs.backends.sharded.list_prefix`, no server): how many listings it
    makes, how many of them follow one another on its longest path (round trips), and how
    many keys the listings returned in all."""
    import asyncio
    import bisect
    import contextvars

    from gens_fs.backends.sharded import Page, Shard, list_prefix

    depth: contextvars.ContextVar[int] = contextvars.ContextVar("depth", default=0)
    deepest, listings, read = 0, 0, 0

    async def fetch(shard: Shard) -> Page[None]:
        nonlocal deepest, listings, read
        # Each split runs its shards as tasks, which copy the context: a shard's depth is
        # its parent's plus one, and a page that goes on after the last adds one too.
        depth.set(depth.get() + 1)
        deepest, listings = max(deepest, depth.get()), listings + 1
        index = bisect.bisect_left(keys, shard.prefix)
        if shard.start_after is not None:
            index = max(index, bisect.bisect_right(keys, shard.start_after))
        found = [k for k in keys[index : index + page_size + 1] if k.startswith(shard.prefix)]
        read += len(found[:page_size])
        return Page([(k, None) for k in found[:page_size]], len(found) > page_size)

    listed: list[str] = []
    asyncio.run(list_prefix(fetch, prefix, lambda page: listed.extend(k for k, _ in page)))
    assert sorted(listed) == [k for k in keys if k.startswith(prefix)]
    return listings, deepest, read


def _listing_keys(keys: int) -> dict[str, bytes]:
    from gens_fs import new_gen_id

    gen_ids = [new_gen_id("evaluation", f"t{i}") for i in range((keys + 3) // 4)]
    return {f"{LIST_STAGE}/{g}/{name}": b"x" for g in gen_ids for name in NAMES}


def bench_listing(service: S3Service, keys: int, latencies: list[int], repeat: int) -> list[str]:
    from gens_fs import DataRoot
    from gens_fs.backends import run
    from gens_fs.backends.base import WrappedBackend
    from gens_fs.backends.obstore import ObstoreBackend
    from gens_fs.backends.obstore_listing import list_chain
    from gens_fs.backends.s3 import S3Backend

    files = _listing_keys(keys)
    service.create_bucket(LIST_BUCKET)
    service.put_objects(LIST_BUCKET, files)
    url, options = f"s3://{LIST_BUCKET}/list", s3_storage_options(service.endpoint_url)
    root = DataRoot(url, storage_options=options)
    obstore_root = DataRoot(url, storage_options=options, engine="obstore")
    s3, engine = root.backend.backend, obstore_root.backend.backend
    while isinstance(s3, WrappedBackend):  # the retry layer around it
        s3 = s3.inner
    while isinstance(engine, WrappedBackend):
        engine = engine.inner
    assert isinstance(s3, S3Backend), s3
    assert isinstance(engine, ObstoreBackend), engine
    store, key = engine._locate(f"{LIST_BUCKET}/{LIST_STAGE}")
    listings, rounds, _ = shard_profile(sorted(files), f"{LIST_STAGE}/")
    lines = [
        f"### (c) listing {len(files):,} keys of one stage",
        "",
        f"The sharded listing of these keys, on pages cut in memory: {listings} listings, "
        f"{rounds} on its longest path (round trips).",
        "",
        "| latency | listing | wall s | requests | client CPU s | server CPU s "
        "| one chain's wall / this | load before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ways = {
        "one page chain": lambda: run(_page_chain(s3.fs, LIST_BUCKET, f"{LIST_STAGE}/")),
        "sharded (`S3Backend.scan`)": lambda: len(
            root.backend.scan([f"{LIST_BUCKET}/{LIST_STAGE}"]).files
        ),
        "obstore: one page chain": lambda: len(list_chain(store, key, "", True)),
        "obstore: sharded (`ObstoreBackend.scan`)": lambda: len(
            obstore_root.backend.scan([f"{LIST_BUCKET}/{LIST_STAGE}"]).files
        ),
    }
    for latency in latencies:
        service.set_latency(latency / 1000)
        for _ in range(repeat):
            measured = {name: _time_listing(service, way, len(files)) for name, way in ways.items()}
            chain_wall = measured["one page chain"]["wall"]
            for name, m in measured.items():
                lines.append(
                    f"| {latency} ms | {name} | {m['wall']:.2f} | {m['requests']} | "
                    f"{m['cpu']:.2f} | {m['server_cpu']:.2f} | {chain_wall / m['wall']:.1f}x "
                    f"| {m['load']:.1f} |"
                )
            print(f"{latency} ms listing: {measured}", file=sys.stderr)
            RAW.append({"part": "listing", "latency_ms": latency, "keys": len(files), **measured})
    return [*lines, ""]


def _time_listing(service: S3Service, way: Any, expected: int) -> dict[str, Any]:
    service.reset_counts()
    load, server_cpu = os.getloadavg()[0], service.cpu()
    wall, cpu = time.perf_counter(), time.process_time()
    seen = way()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    requests = format_requests(service.counts())
    assert seen == expected, (seen, expected)
    return {
        "wall": wall,
        "cpu": cpu,
        "server_cpu": service.cpu() - server_cpu,
        "requests": requests,
        "load": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drafts", type=int, default=1667, help="x6 evaluations (1667: 10,002)")
    parser.add_argument("--latencies", type=int, nargs="+", default=[10, 100], help="added ms")
    parser.add_argument("--dask-latencies", type=int, nargs="+", default=[10, 100])
    parser.add_argument(
        "--methods", nargs="+", default=["export", "loop", "load_many", "same_files"]
    )
    parser.add_argument("--list-keys", type=int, default=100_000, help="keys to list in (c)")
    parser.add_argument("--list-latencies", type=int, nargs="+", default=[0, 10, 100])
    parser.add_argument("--list-repeat", type=int, default=1, help="runs of each listing")
    parser.add_argument("--skip", nargs="*", default=[], choices=["export", "dask", "listing"])
    parser.add_argument("--out", help="also write every measurement to this JSON file")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], args.one[1], args.one[2], args.one[3:])
        return
    command = " ".join(["python -m benchmarks.bench_tables", *sys.argv[1:]])
    out = [f"## bench_tables ({time.strftime('%Y-%m-%d %H:%M')}, `{command}`)", ""]
    with S3Service() as service, tempfile.TemporaryDirectory() as tmp:
        if {"export", "dask"} - set(args.skip):
            ids = seed_store(service, args.drafts)
            count = len(ids["gen_ids"]["evaluation"])
            out += [
                f"Store: {args.drafts:,} drafts, {count:,} evaluations, {ids['files']:,} files.",
                "",
            ]
            ids_file = f"{tmp}/ids.json"
            Path(ids_file).write_text(json.dumps(ids))
            if "export" not in args.skip:
                out += bench_export(service, ids_file, count, args.latencies, args.methods)
            if "dask" not in args.skip:
                out += bench_dask(service, ids_file, count, args.dask_latencies)
        if "listing" not in args.skip:
            out += bench_listing(service, args.list_keys, args.list_latencies, args.list_repeat)
    print("\n".join(out))
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True)
        header = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M")}
        header["commit"] = commit.stdout.decode().strip()
        Path(args.out).write_text(json.dumps({**header, "runs": RAW}, indent=1) + "\n")


if __name__ == "__main__":
    main()
