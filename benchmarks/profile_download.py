"""Where a download sync's client CPU goes, per engine: ``cProfile`` on the event loop's
thread (where the sync's transfers run) and on the main thread (listing, planning).

    python -m benchmarks.profile_download            # 50 drafts: 1,801 files
    python -m benchmarks.profile_download --drafts 10 --top 20

The S3 endpoint is the benchmarks' (moto + proxy in a child process), at no added latency.
Printed per engine: process CPU (with the profiler on), files copied, and each thread's
functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import fsspec
from fsspec.asyn import get_loop

from benchmarks.harness import S3Service
from gens_fs import sync
from gens_fs.backends import ENGINES
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.synthetic import make_store


def on_loop(call: Callable[[], None]) -> None:
    """Run ``call`` on the event loop's thread and wait for it."""
    done = threading.Event()

    def wrapped() -> None:
        call()
        done.set()

    get_loop().call_soon_threadsafe(wrapped)
    done.wait()


def top(profile: cProfile.Profile, count: int) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(count)
    text = out.getvalue()
    return text[text.find("   ncalls") :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--drafts", type=int, default=50)
    parser.add_argument("--top", type=int, default=12, help="functions shown per thread")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, S3Service() as service:
        service.create_bucket("bench")
        options = s3_storage_options(service.endpoint_url)
        make_store(fsspec.filesystem("s3", **options), "bench/data", drafts=args.drafts)
        for engine in ENGINES:
            loop_profile, main_profile = cProfile.Profile(), cProfile.Profile()
            cpu = time.process_time()
            on_loop(loop_profile.enable)
            main_profile.enable()
            report = sync(
                "s3://bench/data", str(Path(tmp) / engine), src_options=options, engine=engine
            )
            main_profile.disable()
            on_loop(loop_profile.disable)
            cpu = time.process_time() - cpu
            print(f"{engine}: process CPU {cpu:.2f} s, {report.copied} files copied")
            print(f"== event loop thread\n{top(loop_profile, args.top)}")
            print(f"== main thread\n{top(main_profile, args.top)}")


if __name__ == "__main__":
    main()
