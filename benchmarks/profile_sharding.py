"""How many listings the sharded listing makes, and how many follow one another, for keys of
several shapes and counts: pure, on pages cut from the sorted keys in memory (no server).

    python -m benchmarks.profile_sharding                       # 10^4, 10^5, 10^6 keys
    python -m benchmarks.profile_sharding --keys 100000

Each key set is ``<stage>/<id>/<file>``, four files per id: random base36 ids of 16
characters (``new_gen_id``'s shape), random hex UUIDs, sequential ids (``g000000001``...),
random base62 ids of 10. "read / keys" counts the keys the listings returned, those another
shard lists too included (a shard bounded above still gets a full page).
"""

from __future__ import annotations

import argparse
import random
import string
import uuid
from collections.abc import Iterator

from benchmarks.bench_tables import NAMES, shard_profile

PREFIX = "data/gens/evaluation/"


def id_sets(count: int) -> Iterator[tuple[str, list[str]]]:
    """``count`` ids of each shape, the same for the same count."""
    rng = random.Random(count)
    base36 = string.digits + string.ascii_lowercase
    base62 = string.digits + string.ascii_letters
    yield "base36 x16", ["".join(rng.choices(base36, k=16)) for _ in range(count)]
    yield "hex UUID", [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(count)]
    yield "sequential", [f"g{i:09d}" for i in range(count)]
    yield "base62 x10", ["".join(rng.choices(base62, k=10)) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    print("| keys | ids | one chain's pages | listings | x pages | round trips | read / keys |")
    print("|---|---|---|---|---|---|---|")
    for count in args.keys:
        for shape, ids in id_sets(count // len(NAMES)):
            keys = sorted({f"{PREFIX}{i}/{name}" for i in ids for name in NAMES})
            listings, rounds, read = shard_profile(keys, PREFIX)
            pages = -(-len(keys) // 1000)
            print(
                f"| {len(keys):,} | {shape} | {pages:,} | {listings:,} | "
                f"{listings / pages:.2f} | {rounds} | {read / len(keys):.2f} |"
            )


if __name__ == "__main__":
    main()
