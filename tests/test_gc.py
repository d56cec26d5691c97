"""``gens-fs gc`` (issue 14): the temporary files killed writers leave are removed once old
enough, with the generation folders that held nothing else; a fresh one is kept; nothing
a committed generation holds is touched; ``--dry-run`` removes nothing.

The leftovers are made by real writers killed mid-write: a process whose file size limit
(``RLIMIT_FSIZE``) is smaller than the file it writes gets SIGXFSZ (its default action
restored: Python ignores it), which kills it inside the write of its temporary file,
exactly where SIGKILL or the OOM killer would. Their age
is set with ``os.utime`` (what an hour of waiting would do), never waited for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from conftest import cli_options

from gens_fs import DataRoot, GensStore, check, gc
from gens_fs.layout import is_temp_file_name, temp_file_name
from gens_fs.testing.invariants import snapshot
from gens_fs.testing.s3 import MotoServer
from tests.process import gens_fs, one_error_line

META = {"task_id": "t", "template_id": "x", "model_id": "m"}
KILLED_WRITER = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the default kills
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
from gens_fs import GensStore
meta = {"task_id": "t", "template_id": "x", "model_id": "m"}
GensStore(sys.argv[1]).write("draft", sys.argv[2], metadata=meta, raw="x" * 100_000,
                             overwrite=True)
"""


def killed_writer(gens_root: str, gen_id: str) -> Path:
    """Write draft ``gen_id`` in a process killed inside the write of its raw.txt; the
    temporary file it leaves."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, gens_root, gen_id],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGXFSZ, done.stderr
    folder = Path(gens_root, "draft", gen_id)
    (left,) = (p for p in folder.iterdir() if is_temp_file_name(p.name))
    assert left.name.startswith(".raw.txt.") and left.stat().st_size == 1000
    return left


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def every_file(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones too, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def make_store(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A data root with a committed generation, and the leftovers of killed writers: an
    old one alone in its folder, an old one in an earlier generation's folder, a fresh one,
    and (named as the local backend names them) an old one beside a committed
    generation's files."""
    root = tmp_path / "data"
    store = GensStore(str(root / "gens"))
    store.write("draft", "d1", metadata=META, raw="committed", prompt="p")
    store.write("draft", "d2", metadata=META, raw="was committed", prompt="p")
    left = {
        "alone": killed_writer(str(root / "gens"), "d_killed"),
        "in_d2": killed_writer(str(root / "gens"), "d2"),  # an overwrite killed
        "fresh": killed_writer(str(root / "gens"), "d_running"),
    }
    left["beside_committed"] = (
        root / "gens/draft/d1" / temp_file_name("metadata.json", uuid.uuid4().hex)
    )
    left["beside_committed"].write_bytes(b'{"task_id"')
    for name in ("alone", "in_d2", "beside_committed"):
        age(left[name], 2 * 3600)
    return root, left


def test_gc_removes_old_leftovers_keeps_fresh_and_committed(tmp_path: Path) -> None:
    root, left = make_store(tmp_path)
    committed = {
        p: b for p, b in every_file(root).items() if not is_temp_file_name(p.split("/")[-1])
    }
    before = every_file(root)

    dry = gens_fs("gc", str(root), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert every_file(root) == before and (root / "gens/draft/d_killed").is_dir()
    assert dry.stdout.splitlines()[-1] == (
        f"{root}: would remove 3 temporary files (2.0 kB) and 1 empty generation folder; "
        "kept 1 temporary file younger than 1h (dry run: nothing changed)"
    )

    done = gens_fs("gc", str(root), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    removed = {(r["kind"], r["path"]) for r in report["removed"]}
    rel = {name: str(path.relative_to(root)) for name, path in left.items()}
    assert removed == {
        ("temp_file", rel["alone"]),
        ("temp_file", rel["in_d2"]),
        ("temp_file", rel["beside_committed"]),
        ("empty_folder", "gens/draft/d_killed"),
    }
    assert report["kept"] == [rel["fresh"]] and report["ok"]
    assert not (root / "gens/draft/d_killed").exists() and left["fresh"].exists()
    after = every_file(root)
    assert after == {**committed, rel["fresh"]: before[rel["fresh"]]}  # nothing else moved
    assert DataRoot(str(root)).store().load("draft", "d1").raw_text == "committed"
    # d2, whose overwrite was killed, stays incomplete: gc only removes leftovers
    assert check(str(root)).summary.by_kind.get("incomplete") == 1

    again = gens_fs("gc", str(root))
    assert again.returncode == 0 and again.stdout.splitlines() == [
        f"{root}: removed 0 temporary files (0 B) and 0 empty generation folders; "
        "kept 1 temporary file younger than 1h"
    ]
    everything = gens_fs("gc", str(root), "--older-than", "0")
    assert everything.returncode == 0 and f"temporary file {rel['fresh']}" in everything.stdout
    assert not (root / "gens/draft/d_running").exists()


def test_gc_library_and_an_empty_folder_left_by_a_writer(tmp_path: Path) -> None:
    root, _left = make_store(tmp_path)
    empty = root / "gens/essay/e_started"  # a writer killed between mkdir and its first file
    empty.mkdir(parents=True)
    report = gc(str(root), older_than=1800, dry_run=True)
    assert ("empty_folder", "gens/essay/e_started") not in {
        (r.kind, r.path) for r in report.removed
    }
    age(empty, 3600)
    report = gc(str(root), older_than=1800)
    assert report.ok and "gens/essay/e_started" in {r.path for r in report.removed}
    assert not empty.exists() and (root / "gens/essay").is_dir()


def test_gc_on_an_object_store_finds_nothing(
    bucket: str, s3_options: dict[str, Any], moto_server: MotoServer
) -> None:
    root = f"s3://{bucket}/data"
    GensStore(f"{root}/gens", storage_options=s3_options).write(
        "draft", "d1", metadata=META, raw="r"
    )
    before = snapshot(root, s3_options)
    done = gens_fs("gc", root, "--older-than", "0", *cli_options(s3_options))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{root}: removed 0 temporary files (0 B) and 0 empty generation folders"
    ]
    assert snapshot(root, s3_options) == before


def test_gc_mistakes_are_one_line(tmp_path: Path) -> None:
    root, _left = make_store(tmp_path)
    line = one_error_line(gens_fs("gc", str(root), "--older-than", "an hour"))
    assert "expected a number and a unit" in line
    assert "does not exist" in one_error_line(gens_fs("gc", str(tmp_path / "nothing")))
