"""A known secret, given as the S3 ``secret`` storage option and as
``AWS_SECRET_ACCESS_KEY``, never shows in output, reports, logs or error messages.

Covered: ``gens-fs ls/check/stats/show/sync`` in people mode and ``--json``, succeeding
and failing (missing bucket, bad storage option, unreachable endpoint), in a subprocess
with the environment variable set; the library's ``sync``/``check`` and their reports and
exceptions, with every logger at DEBUG. Not covered: rejected credentials (moto accepts
any key, so "access denied" cannot be triggered here).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest

from gens_fs import GensError, check, sync
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.synthetic import make_store

SECRET = "gensfs-SECRET-9f8e7d"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def roots(moto_server: MotoServer, bucket: str, tmp_path: Path) -> tuple[str, str, str]:
    """``(S3 data root holding a store, local copy of it, endpoint)``."""
    root = f"s3://{bucket}/data"
    fs, path = fsspec.core.url_to_fs(root, **s3_storage_options(moto_server.endpoint_url))
    make_store(fs, path, drafts=1, essays_per_draft=1, evaluations_per_essay=1)
    local = str(tmp_path / "local")
    make_store(fsspec.filesystem("file"), local, drafts=1, essays_per_draft=1)
    return root, local, moto_server.endpoint_url


def gens_fs(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "AWS_SECRET_ACCESS_KEY": SECRET}
    env["AWS_ACCESS_KEY_ID"] = "testing"
    return subprocess.run(
        [sys.executable, "-m", "gens_fs", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_never_prints_the_secret(roots: tuple[str, str, str]) -> None:
    root, local, endpoint = roots
    options = ["-o", f"secret={SECRET}", "-o", "key=testing"]
    options += ["-o", f"client_kwargs.endpoint_url={endpoint}"]
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/data"
    dead = ["-o", f"secret={SECRET}", "-o", "client_kwargs.endpoint_url=http://127.0.0.1:9"]
    dead += ["-o", "config_kwargs.retries.max_attempts=1", "-o", "config_kwargs.connect_timeout=1"]
    runs = {
        "ls": (["ls", root, *options], 0),
        "check": (["check", root, *options], 0),
        "stats": (["stats", root, *options], 0),
        "sync": (["sync", local, root + "-copy", *options], 0),
        "ls missing bucket": (["ls", missing, *options], 2),
        "check missing bucket": (["check", missing, *options], 2),
        "sync missing bucket": (["sync", local, missing, *options], 2),
        "show missing generation": (["show", root, "essay", "nope", *options], 2),
        "bad option": (["ls", root, *options, "-o", "no_such_option=1"], 2),
        "no endpoint": (["stats", root, *dead], 2),
    }
    codes = {}
    for name, (args, _code) in runs.items():
        for mode in ([], ["--json"]):
            done = gens_fs(*args, *mode)
            assert SECRET not in done.stdout + done.stderr, (name, mode, done.stderr)
            assert "Traceback" not in done.stderr, (name, done.stderr)
            codes[name] = done.returncode
    assert codes == {name: code for name, (_args, code) in runs.items()}


def test_library_reports_errors_and_logs_never_hold_the_secret(
    roots: tuple[str, str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, local, endpoint = roots
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    options = {**s3_storage_options(endpoint), "secret": SECRET}
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        texts.append(sync(local, root + "-lib", dst_options=options).model_dump_json())
        texts.append(sync(root, local + "-back", src_options=options).model_dump_json())
        texts.append(check(root, storage_options=options).model_dump_json())
        with pytest.raises(GensError) as missing:
            check("s3://no-such-bucket-x1/d", storage_options=options)
        texts += [str(missing.value), repr(missing.value)]
        failing: list[tuple[str, dict[str, Any]]] = [
            ("s3://no-such-bucket-x1/data", options),
            (root, {**options, "no_such_option": 1}),
        ]
        for dst, dst_options in failing:
            with pytest.raises(GensError) as caught:
                sync(local, dst, dst_options=dst_options)
            texts += [str(caught.value), repr(caught.value)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG really captured
    leaks = [t for t in texts if SECRET in t]
    assert leaks == []
