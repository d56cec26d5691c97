"""What ``gens-fs sync`` imports: only what the storages it is given need (start-up time is
most of a short resync's). Observed with ``python -X importtime`` in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gens_fs import GensStore
from tests.conftest import cli_options

META = {"task_id": "t", "template_id": "x", "model_id": "m"}
# Never imported by a sync that does not use them (test tools, other storages' clients).
NEVER = {"moto", "boto3", "hypothesis", "werkzeug", "pytest", "adlfs", "azure"}
S3_CLIENT = {"s3fs", "aiobotocore", "botocore", "aiohttp"}


def imported_by_sync(*args: str) -> set[str]:
    """The top-level packages a ``gens-fs sync`` process imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gens_fs", "sync", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    GensStore(str(tmp_path / "src" / "gens")).write("draft", "d1", metadata=META, raw="r")
    return tmp_path / "src"


def test_a_local_sync_imports_no_storage_client(source: Path, tmp_path: Path) -> None:
    found = imported_by_sync(str(source), str(tmp_path / "dst"))
    assert found & (NEVER | S3_CLIENT | {"obstore"}) == set()


@pytest.mark.parametrize("engine", ["fsspec", "obstore"])
def test_an_s3_sync_imports_its_engine_only(
    engine: str, source: Path, bucket: str, s3_options: dict[str, Any]
) -> None:
    found = imported_by_sync(
        str(source), f"s3://{bucket}/data", "--engine", engine, *cli_options(s3_options)
    )
    assert found & NEVER == set()
    if engine == "fsspec":
        assert found >= S3_CLIENT and "obstore" not in found
    else:
        assert "obstore" in found and found & S3_CLIENT == set()
