"""Logs in cron and cloud jobs (issue 14): every command takes ``-v``/``-vv``, ``-q`` and
``--log-file PATH``; a sync whose stderr is not a terminal prints progress lines (files,
bytes, rate, ETA) at a fixed interval instead of a bar. Each through ``gens-fs`` run as a
real process, its stderr a pipe as in a job's log.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_options

from gens_fs import DataRoot, MembershipRow
from gens_fs.cli.progress import progress_line
from gens_fs.sync import SyncProgress
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from tests.process import gens_fs, one_error_line, start, wait_until_held

META = {"task_id": "t", "template_id": "x", "model_id": "m"}
PROGRESS = re.compile(
    r"gens-fs: progress: (?P<done>[\d,]+)/(?P<total>[\d,]+) files?, \S+ k?M?G?B/\S+ k?M?G?B, "
    r"\S+ k?M?G?B/s, ETA (\d+ s|\d+ min \d+ s|unknown) \(elapsed \d+ s\)"
)
STAMPED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR|DEBUG) \S+: ")
COMMANDS = ["ls", "show", "check", "stats", "sync", "gc", "demo"]


def write_store(root: str, n: int = 3, options: dict[str, Any] | None = None) -> None:
    data_root = DataRoot(root, storage_options=options)
    store = data_root.store()
    for i in range(n):
        store.write("draft", f"d{i}", metadata=META, raw=f"draft {i}" * 50, prompt="p")
    data_root.write_membership("c1", [MembershipRow(stage="draft", gen_id="d0")])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_the_log_options(command: str) -> None:
    done = gens_fs(command, "--help")
    assert done.returncode == 0
    for option in ("-v, --verbose", "-q, --quiet", "--log-file PATH"):
        assert option in done.stdout, (command, option)


def test_log_file_gets_messages_and_the_library_log(tmp_path: Path) -> None:
    src, log = str(tmp_path / "src"), tmp_path / "job.log"
    write_store(src)
    (tmp_path / "src/gens/draft/notes.txt").write_text("a stray file")
    done = gens_fs("sync", src, str(tmp_path / "dst"), "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert all(STAMPED.match(line) for line in lines), lines
    bodies = [STAMPED.sub("", line) for line in lines]
    assert bodies[0] == "gens-fs sync: started" and bodies[-1] == "gens-fs sync: exit 0"
    summary = done.stdout.splitlines()[-1]
    assert summary in bodies  # the summary people see, in the log too
    warning = next(line for line in lines if " WARNING " in line)
    assert "ignored source gens/draft/notes.txt (stray: " in warning
    # a second command appends; an error that ends a command is logged with its exit code
    again = gens_fs("ls", src, "--cohort", "nope", "--log-file", str(log))
    assert again.returncode == 2
    tail = [STAMPED.sub("", line) for line in log.read_text().splitlines()[len(lines) :]]
    assert tail == [
        "gens-fs ls: started",
        f"gens-fs: error: {again.stderr.strip().removeprefix('gens-fs: error: ')}",
        "gens-fs ls: exit 2",
    ]


def test_quiet_prints_only_errors_and_verbose_adds_the_log(tmp_path: Path) -> None:
    src = str(tmp_path / "src")
    write_store(src)
    quiet = gens_fs("sync", src, str(tmp_path / "dst"), "-q", "--progress-interval", "0")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    listed = gens_fs("ls", src, "-q", "--json")  # what a command lists is still printed
    assert listed.returncode == 0 and '"gen_id": "d0"' in listed.stdout
    DataRoot(src).store().write("essay", "e0", metadata={**META, "parent_gen_id": "d0"}, raw="e")
    held = gens_fs("sync", src, str(tmp_path / "held"), "-q", "--stage", "essay")
    assert held.returncode == 1 and held.stdout == ""  # no summary; the error stays
    assert held.stderr.startswith("gens-fs: error: gens/essay/e0: not synced: its parent")
    failing = gens_fs("sync", src, str(tmp_path / "x"), "-q", "--cohort", "nope")
    assert "no cohort 'nope'" in one_error_line(failing)

    verbose = gens_fs("ls", src, "-v")
    assert verbose.returncode == 0
    assert [STAMPED.sub("", line) for line in verbose.stderr.splitlines()] == [
        "gens-fs ls: started",
        "gens-fs ls: exit 0",
    ]
    assert "opposite things" in one_error_line(gens_fs("ls", src, "-q", "-v"))
    line = one_error_line(gens_fs("ls", src, "--log-file", str(tmp_path / "no/such/dir/x.log")))
    assert line.startswith(f"gens-fs: error: --log-file {tmp_path}/no/such/dir/x.log: cannot")


def test_very_verbose_shows_each_storage_call(
    bucket: str, s3_options: dict[str, Any], tmp_path: Path
) -> None:
    root = f"s3://{bucket}/data"
    write_store(root, options=s3_options)
    done = gens_fs("ls", root, "-vv", *cli_options(s3_options))
    assert done.returncode == 0, done.stderr
    debug = [line for line in done.stderr.splitlines() if " DEBUG s3fs: " in line]
    assert any("list_objects_v2" in line for line in debug), done.stderr
    assert "testing" not in done.stderr.replace("-o key=testing", "")  # no secret in the log


def test_progress_lines_on_a_piped_stderr(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src, n=4)
    done = gens_fs("sync", src, dst, "--progress-interval", "0")  # a line after every file
    assert done.returncode == 0, done.stderr
    found = [PROGRESS.fullmatch(line) for line in done.stderr.splitlines()]
    assert all(found), done.stderr
    total = 4 * 3 + 1  # four drafts of three files, one membership.csv
    assert [int(m["done"]) for m in found if m] == list(range(1, total + 1))
    assert {int(m["total"]) for m in found if m} == {total}
    quiet_default = gens_fs("sync", src, str(tmp_path / "again"))  # every 10 s: none here
    assert quiet_default.returncode == 0 and quiet_default.stderr == ""


def test_progress_lines_come_at_the_interval_while_a_transfer_is_stuck(
    s3_middleware: S3Middleware, bucket: str, tmp_path: Path
) -> None:
    """A job stuck on a request still logs: lines come from a clock, not from files done."""
    src = str(tmp_path / "src")
    write_store(src)
    through = cli_options(s3_storage_options(s3_middleware.endpoint_url))
    dst = f"s3://{bucket}/data"
    with s3_middleware.hold(["PUT"], after=2) as hold:
        proc = start(
            "sync", src, dst, "--progress-interval", "0.2", "--jobs", "1", *through,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert wait_until_held(hold, proc)
            lines = _stderr_lines(proc)
            seen = [lines.get(timeout=60) for _ in range(3)]  # a bound, not a wait
        finally:
            proc.kill()
            proc.communicate()
    stuck = [PROGRESS.fullmatch(line) for line in seen]
    assert all(stuck), seen
    assert {m["done"] for m in stuck if m} <= {"0", "1", "2"}  # no file finished meanwhile


def _stderr_lines(proc: subprocess.Popen[bytes]) -> queue.Queue[str]:
    """``proc``'s stderr lines, as they come, from the moment it is held."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            text = raw.decode().rstrip("\n")
            if PROGRESS.fullmatch(text):  # not the planning lines before the copies
                lines.put(text)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_the_eta_counts_the_files_left_as_well_as_the_bytes() -> None:
    """Half the files in 10 s but nearly all the bytes (the small commits come last): the
    files left take about as long again, not the 0 s the bytes alone would say."""
    state = SyncProgress(files_done=500, files_total=1000, bytes_done=990, bytes_total=1000)
    assert "ETA 10 s" in progress_line(state, elapsed=12, copying=10)
    bytes_bound = SyncProgress(files_done=900, files_total=1000, bytes_done=100, bytes_total=1000)
    assert "ETA 1 min 30 s" in progress_line(bytes_bound, elapsed=12, copying=10)
