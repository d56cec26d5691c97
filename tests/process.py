"""``gens-fs`` run as a real process, as a user runs it (not a test module: imported by the
CLI tests). A hang fails on the timeout instead of stalling the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gens_fs.testing.s3_middleware import Hold

REPO = Path(__file__).resolve().parents[1]


def gens_fs_bytes(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """``gens-fs ARGS``; stdout and stderr as bytes (for tests where exactness matters)."""
    return subprocess.run(
        [sys.executable, "-m", "gens_fs", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=timeout,
    )


def gens_fs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``gens-fs ARGS``; stdout and stderr as text."""
    done = gens_fs_bytes(*args, env=env, timeout=timeout)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def one_error_line(
    done: subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes],
) -> str:
    """The single ``gens-fs: error:`` line of a refused command (exit 2, no traceback)."""
    err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode()
    assert done.returncode == 2, (done.stdout, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gens-fs: error: "), err
    return lines[0]


def start(*args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """``gens-fs ARGS`` started and left running (stdin closed; ``popen`` as for Popen)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gens_fs", *args], cwd=REPO, stdin=subprocess.DEVNULL, **popen
    )


def wait_until_held(hold: Hold, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """Wait until ``hold`` holds one of ``proc``'s requests, every request it let through
    answered: True. False if ``proc`` exits first (it needed no more requests)."""
    deadline = time.monotonic() + timeout
    while not hold.wait_holding(timeout=0.05):  # an event wait; the slice is for proc.poll
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the command never reached the hold"
    return True
