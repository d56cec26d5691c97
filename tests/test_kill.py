"""``gens-fs sync`` killed with SIGKILL at seeded-random moments, 20 times over.

One store is synced (``python -m gens_fs sync`` in a subprocess) through
:class:`S3Middleware`, which holds the run once K requests of a kind have been answered, so
the kill lands at a chosen point of its plan: S3 -> local 20 times (held after K GETs; the
local writes in progress when the kill comes go through temporary files) and local -> S3 5
times (held after K PUTs). K is drawn from a seeded RNG among the requests the run still
has to make, so the kills move through every phase (texts, the three commit phases, the
membership). After each kill the destination
keeps its invariants (``gens_fs.testing.invariants`` and ``gens_fs.check``: nothing worse
than ``incomplete``); the next run starts from that partial state; after the last kill a
final run completes and the destination is the source, byte for byte.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import fsspec
import pytest
from conftest import cli_options

from gens_fs import check
from gens_fs.testing.invariants import mirror_problems, snapshot
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.synthetic import make_store
from tests.process import gens_fs, start, wait_until_held

KILLS = 20
TEMP_FILE = re.compile(r"^\.[^/]+\.[0-9a-f]{32}\.tmp$")


def run_and_kill(args: list[str], middleware: S3Middleware, kind: str, after: int) -> bool:
    """Start ``gens-fs`` with ``args``; SIGKILL it once ``after`` of its requests of
    ``kind`` have been answered and the next one is held. True if it was killed, False if
    it finished first (it needed no more). Held requests never reach the storage."""
    with middleware.hold([kind], after=after) as hold:
        proc = start(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            held = wait_until_held(hold, proc)
        finally:
            proc.kill()  # SIGKILL; nothing if it has exited
            _, stderr = proc.communicate()
    if not held:
        assert proc.returncode in (0, 1), stderr.decode()
    return held and proc.returncode == -signal.SIGKILL


def destination_problems(
    src_files: dict[str, bytes], dst: str, dst_options: dict[str, Any]
) -> list[str]:
    """The mirror invariants, plus every ``gens_fs.check`` error but ``incomplete``."""
    problems = mirror_problems(src_files, snapshot(dst, dst_options))
    report = check(dst, storage_options=dst_options)
    problems += [
        f"check: {f.kind} {f.path}"
        for f in report.findings
        if f.severity == "error" and f.kind != "incomplete"
    ]
    return problems


# (direction, kills, drafts): the 20 kills where checking the destination is cheap (local
# disk), a few more where every check reads the bucket back.
CASES = [("s3-local", KILLS, 6), ("local-s3", 5, 3)]


@pytest.mark.parametrize(("direction", "kills", "drafts"), CASES)
def test_sigkilled_sync_keeps_invariants_and_converges(
    direction: str,
    kills: int,
    drafts: int,
    tmp_path: Path,
    moto_server: MotoServer,
    bucket: str,
    s3_middleware: S3Middleware,
) -> None:
    prefix = f"s3://{bucket}"
    direct = s3_storage_options(moto_server.endpoint_url)
    through = s3_storage_options(s3_middleware.endpoint_url)
    if direction == "local-s3":
        src, dst = str(tmp_path / "src"), f"{prefix}/dst"
        src_options, dst_options, kind = {}, direct, "PUT"
    else:
        src, dst = f"{prefix}/src", str(tmp_path / "dst")
        src_options, dst_options, kind = direct, {}, "GET"
    fs, path = fsspec.core.url_to_fs(src, **src_options)
    make_store(fs, path, drafts=drafts, seed=kills)  # drafts=6: 54 generations, 217 files
    src_files = snapshot(src, src_options)
    args = ["sync", src, dst, "--jobs", "4", *cli_options(through)]  # S3 via the middleware

    rng = random.Random(f"test_kill:{direction}")
    killed = 0
    for _ in range(kills):
        dst_files = snapshot(dst, dst_options)
        remaining = sum(1 for r, d in src_files.items() if dst_files.get(r) != d)
        # S3 -> local also GETs parents' metadata.json before copying: kill anywhere in it.
        budget = remaining * (2 if kind == "GET" else 1)
        after = rng.randint(1, max(1, budget // 3))
        killed += run_and_kill(args, s3_middleware, kind, after)
        assert destination_problems(src_files, dst, dst_options) == []
    assert killed >= kills - 2, f"only {killed} runs were killed before they finished"

    if direction == "s3-local":  # killed local writes leave hidden temporaries, nothing else
        hidden = [p for p in tmp_path.joinpath("dst").rglob(".*") if p.is_file()]
        assert all(TEMP_FILE.match(p.name) for p in hidden), hidden
    final = gens_fs(*args, "--verify", timeout=60)
    assert final.returncode == 0, final.stdout + final.stderr
    assert snapshot(dst, dst_options) == src_files
    assert check(dst, storage_options=dst_options).ok
