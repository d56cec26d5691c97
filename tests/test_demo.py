"""The README's first command ends in ``gens-fs demo``: it must run on a fresh machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gens_fs", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "parsed_text\"] == '7'" in out
    assert "copied 23 files" in out and "copied 0, skipped 23" in out
    assert "check of the copy: 0 errors" in out
    assert "Traceback" not in result.stderr
