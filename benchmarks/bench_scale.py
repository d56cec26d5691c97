"""Listing and planning a sync over 10^4, 10^5 and 10^6 files: time and peak memory.

    python -m benchmarks.bench_scale                  # 1e4, 1e5, 1e6 files
    python -m benchmarks.bench_scale --sizes 10000    # a quick look

The listings are fake but go through the real code: a stand-in for s3fs's ``_call_s3``
answers ``list_objects_v2`` with the dicts botocore parses from ListObjectsV2 pages (key,
size, ETag) for any ``Prefix`` and ``StartAfter``, and the real ``S3Backend.scan`` (its
sharded listing, filling compact ``FileTable``s) -> ``list_data_root`` -> ``Diff.of`` ->
``make_plan`` run on them. The destination is the source minus 1% of generations, plus 1%
of files with a new ETag (an incremental resync). Each size runs in a fresh process so its
peak RSS (``ru_maxrss``) is its own; "beyond the interpreter" is that peak less the peak
before the listing (the interpreter and its imports), per source file. Target: at most 300
bytes a file at 10^6 files, and time growing linearly.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import json
import resource
import subprocess
import sys
import time
from typing import Any

from fsspec.asyn import get_loop

from gens_fs.backends import SyncBackend
from gens_fs.backends.s3 import S3Backend
from gens_fs.layout import STAGES, generation_of
from gens_fs.listing import list_data_root
from gens_fs.sync.plan import Diff, make_plan
from gens_fs.sync.scope import SyncScope

FILES_PER_GENERATION = 4
NAMES = ("metadata.json", "parsed.txt", "prompt.txt", "raw.txt")


class FakeListingFS:
    """The parts of s3fs that ``S3Backend.scan`` uses: loop, split_path, ``_call_s3`` for
    ``list_objects_v2`` (and the client settings a backend names its service by).

    Its keys are a virtual sorted sequence (:class:`_Keys`), never held in memory, so any
    ``Prefix`` and ``StartAfter`` is answered by a bisection, as the sharded listing asks.
    """

    protocol = ("s3", "s3a")
    async_impl = True
    client_kwargs: dict[str, Any] = {}  # noqa: RUF012
    req_kw: dict[str, Any] = {}  # noqa: RUF012
    key = None
    anon = False

    def __init__(self, files: int, *, variant: int, root: str) -> None:
        self.loop = get_loop()
        self.variant = variant  # 0: source; 1: destination (1% missing, 1% changed)
        self.root = root  # the data root's key in the bucket
        self.drafts = max(1, files // (FILES_PER_GENERATION * 9))

    def split_path(self, path: str) -> tuple[str, str, None]:
        bucket, _, key = path.partition("/")
        return bucket, key, None

    async def _call_s3(self, method: str, **params: Any) -> dict[str, Any]:
        assert method == "list_objects_v2", method
        await asyncio.sleep(0)
        keys = _Keys(self.root, self.drafts, self.variant)
        prefix, after = params["Prefix"], params.get("StartAfter")
        index = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
        page: list[dict[str, Any]] = []
        while index < len(keys) and len(page) <= 1000:
            key = keys[index]
            if not key.startswith(prefix):
                break
            page.append(self._entry(key))
            index += 1
        return {"Contents": page[:1000], "IsTruncated": len(page) > 1000}

    def _entry(self, key: str) -> dict[str, Any]:
        # The dict botocore parses from a ListObjectsV2 <Contents> element.
        gen_id, name = key.split("/")[-2:]
        changed = bool(self.variant) and int(gen_id[1:]) % 100 == 13 and name == NAMES[3]
        etag = hashlib.md5(f"{key.partition('/')[2]}{changed}".encode()).hexdigest()
        size = 1000 + NAMES.index(name)
        return {"Key": key, "Size": size, "ETag": f'"{etag}"', "StorageClass": "STANDARD"}


class _Keys:
    """``<root>/gens/<stage>/<s><index:08d>/<name>`` in sorted order, as a sequence: drafts,
    twice as many essays, six times as many evaluations; ``variant`` 1 lacks every
    generation whose index ends in 07 (1% of them)."""

    def __init__(self, root: str, drafts: int, variant: int) -> None:
        self.root = root
        self.counts = [drafts, 2 * drafts, 6 * drafts]
        self.variant = variant
        self.present = [self._present(count) for count in self.counts]

    def _present(self, count: int) -> int:
        if not self.variant:
            return count
        return count // 100 * 99 + min(count % 100, 7) + max(0, count % 100 - 8)

    def __len__(self) -> int:
        return sum(self.present) * len(NAMES)

    def __getitem__(self, position: int) -> str:
        generation, name = divmod(position, len(NAMES))
        for stage, present in zip(STAGES, self.present, strict=True):
            if generation < present:
                gen_id = f"{stage[0]}{self._index(generation):08d}"
                return f"{self.root}/gens/{stage}/{gen_id}/{NAMES[name]}"
            generation -= present
        raise IndexError(position)

    def _index(self, rank: int) -> int:
        if not self.variant:
            return rank
        block, offset = divmod(rank, 99)
        return block * 100 + offset + (1 if offset >= 7 else 0)


def parent_of(key: tuple[str, str]) -> str:
    stage, gen_id = key
    index = int(gen_id[1:])
    return f"d{index // 2:08d}" if stage == "essay" else f"e{index // 3:08d}"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(files: int) -> dict[str, Any]:
    before = _peak_rss_mb()  # the interpreter and its imports
    scope = SyncScope.build()
    src = SyncBackend(S3Backend(FakeListingFS(files, variant=0, root="src"), "bench/src"))
    dst = SyncBackend(S3Backend(FakeListingFS(files, variant=1, root="dst"), "bench/dst"))
    t0 = time.perf_counter()
    src_files = scope.filter(list_data_root(src, scope.roots()).files)
    dst_files = list_data_root(dst, scope.roots()).files
    t1 = time.perf_counter()
    diff = Diff.of(src_files, dst_files, scope)
    needed = diff.parents_to_read()
    parents = {key: parent_of(key) for r in needed if (key := generation_of(r)) is not None}
    plan = make_plan(diff, parents=parents, delete=True)
    t2 = time.perf_counter()
    return {
        "files": len(src_files),
        "list_s": round(t1 - t0, 3),
        "plan_s": round(t2 - t1, 3),
        "copies": len(plan.copies),
        "skipped": plan.skipped,
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "bytes_per_file": round((_peak_rss_mb() - before) * 2**20 / len(src_files)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    rows = []
    for size in args.sizes:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_scale", "--one", str(size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out))
        print(f"{size}: {rows[-1]}", file=sys.stderr)
    base = rows[0]
    print(f"## bench_scale ({time.strftime('%Y-%m-%d %H:%M')}, `python -m benchmarks.bench_scale`)")
    print()
    print(
        "| files | list s | plan s | µs per file (list+plan) | copies planned | peak RSS MB "
        "| bytes per file beyond the interpreter |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        per_file = (row["list_s"] + row["plan_s"]) / row["files"] * 1e6
        print(
            f"| {row['files']:,} | {row['list_s']} | {row['plan_s']} | {per_file:.1f} | "
            f"{row['copies']:,} | {row['peak_rss_mb']} | {row['bytes_per_file']} |"
        )
    last = rows[-1]
    growth = (last["list_s"] + last["plan_s"]) / (base["list_s"] + base["plan_s"])
    print()
    print(f"Time grew {growth:.0f}x for {last['files'] / base['files']:.0f}x the files.")


if __name__ == "__main__":
    main()
