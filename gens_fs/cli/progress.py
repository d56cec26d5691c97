"""A sync's progress for people: a bar on a terminal, lines in a log.

On a terminal (stderr) a rich progress bar. Otherwise (a cron job's mail, a cloud job's
log, ``2> sync.log``) a bar would be one endless line of redraws, so a thread of its own
prints one line every ``--progress-interval`` seconds, whether or not a file finished
since (a job stuck on one large file still says so):

``gens-fs: progress: 32/109 files, 1.2 MB/3.4 MB, 250.0 kB/s, ETA 9 s (elapsed 5 s)``

The rate is the average since the copies began. The ETA is the longer of what is left at
that rate and the files left at the files' own rate: many small files (thousands of
``metadata.json`` commits at the end) cost requests, not bytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from gens_fs.cli._common import err_console, human_size, plural, say
from gens_fs.sync import SyncProgress
from gens_fs.sync.execute import ProgressCallback

DEFAULT_INTERVAL: Final = 10.0
"""Seconds between two progress lines, by default."""


class LastProgress:
    """The sync's latest progress, kept for the line a Ctrl-C prints and for the progress
    lines."""

    def __init__(self) -> None:
        self.latest: SyncProgress | None = None
        self.began: float | None = None  # when the plan was made and the copies began

    def __call__(self, state: SyncProgress) -> None:
        self.latest = state

    def copying(self) -> None:
        """The plan is made: the copies begin now (what the rate is measured from)."""
        self.began = time.monotonic()

    def interrupted_message(self) -> str:
        state = self.latest
        done = (
            "before any file was copied"
            if state is None
            else f"after {state.files_done:,} of {plural(state.files_total, 'file')}"
        )
        # True at every moment of a sync (see README, "Ordering guarantee"): files land
        # whole, metadata.json last, parents before children.
        return (
            f"interrupted {done}; the destination is consistent; "
            "run the same command again to finish"
        )


def progress_line(state: SyncProgress | None, elapsed: float, copying: float) -> str:
    """One progress line: files, bytes, rate and ETA (``elapsed``: seconds since the sync
    started; ``copying``: since its copies began)."""
    since = f"(elapsed {_duration(elapsed)})"
    if state is None and copying <= 0:
        return f"gens-fs: progress: planning: listing and comparing both sides {since}"
    if state is None:
        return f"gens-fs: progress: copying, no file done yet {since}"
    rate = state.bytes_done / copying if copying > 0 else 0.0
    if state.files_done >= state.files_total:
        eta = "0 s"
    elif rate > 0:
        by_bytes = (state.bytes_total - state.bytes_done) / rate
        files_left = state.files_total - state.files_done
        by_files = files_left * copying / state.files_done if state.files_done else 0.0
        eta = _duration(max(by_bytes, by_files))
    else:
        eta = "unknown"
    return (
        f"gens-fs: progress: {state.files_done:,}/{plural(state.files_total, 'file')}, "
        f"{human_size(state.bytes_done)}/{human_size(state.bytes_total)}, "
        f"{human_size(int(rate))}/s, ETA {eta} {since}"
    )


def _duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@contextmanager
def progress_shown(
    seen: LastProgress, *, bar: bool, lines_every: float | None
) -> Iterator[ProgressCallback]:
    """The sync's progress callback: it feeds ``seen`` and, with ``bar``, a rich bar on
    stderr; with ``lines_every`` (seconds; 0: after every file), progress lines."""
    if bar:
        with _bar(seen) as update:
            yield update
    elif lines_every is not None:
        with _lines(seen, lines_every) as update:
            yield update
    else:
        yield seen


@contextmanager
def _lines(seen: LastProgress, every: float) -> Iterator[ProgressCallback]:
    started = time.monotonic()
    stop = threading.Event()

    def show() -> None:
        now = time.monotonic()
        copying = now - seen.began if seen.began is not None else 0.0
        say(progress_line(seen.latest, now - started, copying), err=True, log=logging.INFO)

    def every_interval() -> None:
        while not stop.wait(every):
            show()

    def after_each_file(state: SyncProgress) -> None:
        seen(state)
        show()

    if every <= 0:
        yield after_each_file
        return
    ticker = threading.Thread(target=every_interval, name="gens-fs-progress", daemon=True)
    ticker.start()
    try:
        yield seen
    finally:
        stop.set()
        ticker.join()


@contextmanager
def _bar(seen: LastProgress) -> Iterator[ProgressCallback]:
    columns = (
        TextColumn("syncing"),
        BarColumn(),
        TextColumn("{task.fields[files]}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("sync", total=None, files="")

        def update(state: SyncProgress) -> None:
            seen(state)
            progress.update(
                task,
                completed=state.bytes_done,
                total=state.bytes_total,
                files=f"{state.files_done:,}/{plural(state.files_total, 'file')}",
            )

        yield update
