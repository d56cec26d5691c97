"""The two listings of a sync at once (``gens_fs.sync.sides``): the local side is scanned
and hashed while the remote listing is on its way, and a listing started on the event
loop and never collected is cancelled and unwound (``Pending``).

What the planning thread read is its own ``rchar`` (``/proc/self/task/<tid>/io``: bytes
through ``read`` calls, page cache included), observed while the middleware holds the
destination's listing: no timing is involved.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gens_fs import GensStore, sync
from gens_fs.sync import PlannedSync, plan_sync
from gens_fs.sync.roots import open_root
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware

META = {"task_id": "t", "template_id": "x", "model_id": "m"}


def read_by(thread_id: int) -> int:
    with open(f"/proc/self/task/{thread_id}/io") as handle:
        fields = dict(line.split(": ") for line in handle.read().splitlines())
    return int(fields["rchar"])


def wait_for(condition: Any, timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds (the planning thread gets there on its own)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_local_side_is_hashed_while_the_remote_listing_is_held(
    tmp_path: Path, s3_middleware: S3Middleware, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    store = GensStore(str(src / "gens"))
    for n in range(20):
        store.write("draft", f"d{n}", metadata=META, raw="r" * 50_000, parsed="p" * 50_000)
    local_bytes = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    options = s3_storage_options(s3_middleware.endpoint_url)
    dst = f"s3://{bucket}/data"
    assert sync(str(src), dst, dst_options=options).ok  # the same files at both sides
    # A hash cache of its own, empty: the upload may have hashed the files while waiting
    # for the (empty) destination's listing, and kept their MD5s if they were old enough.
    monkeypatch.setenv("GENS_FS_CACHE_DIR", str(tmp_path / "empty-cache"))

    planned: list[PlannedSync] = []
    started = threading.Event()
    thread_id: list[int] = []

    def plan() -> None:
        thread_id.append(threading.get_native_id())
        started.set()
        planned.append(plan_sync(str(src), dst, dst_options=options))

    # the destination's first-level listing passes (the roots' check); its listing waits
    with s3_middleware.hold(["LIST"], after=1) as hold:
        worker = threading.Thread(target=plan)
        worker.start()
        assert started.wait(10)
        assert hold.wait_holding(30)
        # every local file is read (hashed) while the destination's listing is held
        assert wait_for(lambda: read_by(thread_id[0]) >= local_bytes)
        assert not planned  # still waiting for the listing
    worker.join(60)  # the held pages were answered 503 when the block ended: retried
    assert planned and planned[0].plan.copies == () and planned[0].plan.skipped == 60


def test_a_listing_never_collected_is_cancelled_and_unwound(
    s3_middleware: S3Middleware, bucket: str
) -> None:
    options = s3_storage_options(s3_middleware.endpoint_url)
    backend = open_root(f"s3://{bucket}/data", options, "fsspec", None)
    with s3_middleware.hold(["LIST"]) as hold:
        pending = backend.scan_started([f"{bucket}/data/gens/draft"])
        assert hold.wait_holding(30)
        pending.cancel()  # returns once the coroutine has unwound
        assert pending.done()
