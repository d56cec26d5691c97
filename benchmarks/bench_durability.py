"""What durability costs on local disk: ``GensStore.write(durable=True)`` against a plain
write, and ``gens_fs.sync(..., fsync=True)`` (``sync --fsync``) against a plain sync, into
a folder of the machine's temporary directory (or ``--dir``).

    python -m benchmarks.bench_durability                 # the figures in the README
    python -m benchmarks.bench_durability --writes 50 --drafts 5 --runs 1   # a quick look

Each figure is the best of ``--runs`` (a fresh folder each run). What an ``fsync`` costs
depends on the disk and the file system (a laptop's NVMe, a VM's virtual disk, tmpfs, where
it costs nothing), so measure where the data lives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fsspec

from gens_fs import GensStore, sync
from gens_fs.testing.synthetic import make_store

META = {"task_id": "t", "template_id": "tpl", "model_id": "m"}
TEXT = "lorem ipsum " * 250  # about 3 kB, a generation's text


def best(
    runs: int, setup: Callable[[Path], None], timed: Callable[[Path], None], base: Path
) -> float:
    """The fastest of ``runs`` runs of ``timed`` (each in a fresh folder, ``setup`` first)."""
    times = []
    for run in range(runs):
        folder = base / f"run{run}"
        folder.mkdir()
        setup(folder)
        started = time.perf_counter()
        timed(folder)
        times.append(time.perf_counter() - started)
        shutil.rmtree(folder)
    return min(times)


def bench_writes(count: int, runs: int, base: Path) -> list[str]:
    rows = []
    figures = {}
    for durable in (False, True):

        def writes(folder: Path, durable: bool = durable) -> None:
            store = GensStore(folder / "gens")
            for i in range(count):
                store.write("draft", f"d{i}", metadata=META, raw=TEXT, parsed=TEXT, prompt=TEXT,
                            durable=durable)  # fmt: skip

        figures[durable] = best(runs, lambda _: None, writes, base)
    for durable, seconds in figures.items():
        per = seconds / count * 1000
        ratio = seconds / figures[False]
        rows.append(
            f"| `write(durable={durable})` | {count} | {seconds:.2f} | {per:.2f} | {ratio:.1f}x |"
        )
    return rows


def bench_sync(drafts: int, runs: int, base: Path) -> list[str]:
    source = base / "source"
    store = make_store(fsspec.filesystem("file"), str(source), drafts=drafts)
    files = sum(1 for _ in source.rglob("*") if _.is_file())
    figures = {}
    for fsync in (False, True):
        figures[fsync] = best(
            runs, lambda _: None, lambda folder, f=fsync: _sync(source, folder, f), base
        )
    rows = []
    for fsync, seconds in figures.items():
        per = seconds / files * 1000
        ratio = seconds / figures[False]
        label = "`sync --fsync`" if fsync else "`sync`"
        rows.append(f"| {label} ({store.generation_count:,} generations) | {files:,} files | "
                    f"{seconds:.2f} | {per:.2f} | {ratio:.1f}x |")  # fmt: skip
    return rows


def _sync(source: Path, folder: Path, fsync: bool) -> None:
    report = sync(source, folder / "copy", fsync=fsync)
    assert report.ok, report.errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200, help="generations written")
    parser.add_argument("--drafts", type=int, default=20, help="drafts of the synced store")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gens-fs-durability-", dir=args.dir))
    try:
        print(f"in {base} ({os.statvfs(base).f_bsize} B blocks), best of {args.runs}\n")
        print("| what | count | total s | ms each | time / plain |")
        print("|---|---|---|---|---|")
        for row in bench_writes(args.writes, args.runs, base):
            print(row)
        for row in bench_sync(args.drafts, args.runs, base):
            print(row)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
