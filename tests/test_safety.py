"""No mistake loses data (issue 8): a root that is not a data root is refused, ``--delete``
refuses to delete more than half of the destination, symbolic links are not followed and
special files never opened, and ``check`` reports stray entries.

The CLI findings run ``python -m gens_fs`` as a real process (a hang would fail on the
process timeout instead of blocking the suite); the library rules are tested directly.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_options

from gens_fs import (
    GensStore,
    StorageError,
    TooManyDeletes,
    check,
    list_generations,
    stats,
    sync,
    write_membership,
)
from gens_fs.backends import FileInfo, SyncBackend, open_backend
from gens_fs.data_root import DataRoot, require_data_root
from gens_fs.errors import NotADataRoot
from gens_fs.layout import (
    GensFile,
    Stray,
    classify_gens_file,
    cohort_strays,
    gens_child_stray,
    root_kind,
)
from gens_fs.sync.plan import Diff, SyncPlan, delete_refusal, make_plan
from gens_fs.sync.scope import SyncScope
from gens_fs.testing.invariants import snapshot
from gens_fs.testing.s3 import new_bucket, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from tests.process import gens_fs, one_error_line

REPO = Path(__file__).resolve().parents[1]
META = {"task_id": "t", "template_id": "tpl", "model_id": "m"}


def write_store(root: str, options: dict[str, Any] | None = None, n: int = 2) -> None:
    """``n`` lineages (draft, essay, evaluation) and a cohort listing them."""
    store = GensStore(f"{root}/gens", storage_options=options)
    for i in range(n):
        store.write("draft", f"d{i}", metadata=META, raw=f"draft {i}", prompt="p")
        store.write("essay", f"e{i}", metadata={**META, "parent_gen_id": f"d{i}"}, raw="e")
        store.write("evaluation", f"v{i}", metadata={**META, "parent_gen_id": f"e{i}"}, raw="7")
    write_membership(root, "c1", [("draft", "d0")], storage_options=options)


def url_and_options(kind: str, tmp_path: Path, s3: dict[str, Any], name: str) -> tuple[str, ...]:
    """A root of that kind (on S3, in a new bucket), and the CLI flags that reach it."""
    if kind == "local":
        return (str(tmp_path / name),)
    bucket = new_bucket(s3["client_kwargs"]["endpoint_url"])
    return (f"s3://{bucket}/{name}", *cli_options(s3))


@pytest.fixture
def s3(s3_options: dict[str, Any]) -> dict[str, Any]:
    return s3_options


# -- a data root must look like one ------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("command", ["ls", "check", "stats", "show"])
def test_commands_refuse_a_gens_root_and_name_its_parent(
    kind: str, command: str, tmp_path: Path, s3: dict[str, Any]
) -> None:
    root, *flags = url_and_options(kind, tmp_path, s3, "data")
    write_store(root, s3 if kind == "s3" else None)
    extra = ["draft", "d0"] if command == "show" else []
    line = one_error_line(gens_fs(command, f"{root}/gens", *extra, *flags))
    assert "looks like a gens root (it holds draft/, essay/, evaluation/)" in line
    assert line.endswith(f"did you mean {root}?")


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_commands_refuse_a_mistyped_root(kind: str, tmp_path: Path, s3: dict[str, Any]) -> None:
    root, *flags = url_and_options(kind, tmp_path, s3, "data")
    write_store(root, s3 if kind == "s3" else None)
    typo = root[:-1]  # .../dat
    if kind == "local":
        os.makedirs(typo)  # an existing folder that is no data root
    line = one_error_line(gens_fs("check", typo, *flags))
    state = "holds neither gens/ nor cohorts/" if kind == "local" else "holds nothing"
    assert f"data root {typo} {state}: give the folder that holds gens/ and cohorts/" in line
    assert gens_fs("check", root, *flags).returncode == 0  # the right root passes


def test_library_reads_stay_permissive_on_an_empty_root(tmp_path: Path) -> None:
    empty = tmp_path / "new"
    empty.mkdir()
    assert check(empty).ok and check(empty).summary.generations == 0
    assert list_generations(empty) == []
    assert stats(empty).stages["draft"].generations == 0


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_sync_from_a_gens_root_or_a_typo_deletes_nothing(
    kind: str, tmp_path: Path, s3: dict[str, Any]
) -> None:
    root, *flags = url_and_options(kind, tmp_path, s3, "data")
    options = s3 if kind == "s3" else None
    write_store(root, options)
    backup = str(tmp_path / "backup")
    write_store(backup)
    before = snapshot(backup)
    line = one_error_line(gens_fs("sync", f"{root}/gens", backup, "--delete", *flags))
    assert f"did you mean {root}?" in line
    line = one_error_line(gens_fs("sync", root[:-1], backup, "--delete", *flags))
    if kind == "local":  # an absent folder: refused even with --allow-empty-source
        assert f"source data root {root[:-1]} does not exist" in line
    else:  # a prefix with nothing under it: "empty", allowed only explicitly
        assert f"{root[:-1]} holds nothing: give the folder that holds gens/ and cohorts/" in line
        assert "pass --allow-empty-source" in line
    assert snapshot(backup) == before
    with pytest.raises(NotADataRoot, match="looks like a gens root"):
        sync(f"{root}/gens", backup, src_options=options, delete=True, allow_empty_source=True)
    assert snapshot(backup) == before


def test_an_empty_source_needs_allow_empty_source(tmp_path: Path) -> None:
    empty, backup = tmp_path / "empty", str(tmp_path / "backup")
    empty.mkdir()
    write_store(backup)
    with pytest.raises(NotADataRoot, match="--allow-empty-source"):
        sync(empty, backup)
    # allowed, it still cannot wipe the destination without an explicit --max-delete
    assert sync(empty, backup, allow_empty_source=True).copied == 0
    with pytest.raises(TooManyDeletes, match="more than half"):
        sync(empty, backup, allow_empty_source=True, delete=True)
    count = len(snapshot(backup))
    report = sync(empty, backup, allow_empty_source=True, delete=True, max_delete=count)
    assert report.deleted == count and snapshot(backup) == {}


def test_the_data_root_probe_is_one_list_request(s3_middleware: S3Middleware, bucket: str) -> None:
    root = f"s3://{bucket}/data"
    options = s3_storage_options(s3_middleware.endpoint_url)
    write_store(root, options, n=1)
    backend = DataRoot(root, storage_options=options).backend
    s3_middleware.reset_counts()
    require_data_root(backend)
    assert s3_middleware.counts() == {"LIST": 1}  # no HEAD of the bucket besides


def test_a_missing_bucket_is_still_one_line(tmp_path: Path, s3: dict[str, Any]) -> None:
    line = one_error_line(gens_fs("ls", "s3://no-such-bucket/data", *cli_options(s3)))
    assert "bucket 'no-such-bucket' does not exist" in line
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        sync("s3://no-such-bucket/data", str(tmp_path / "x"), src_options=s3)


# -- --delete refuses to delete more than half ---------------------------------------------


def plan_deleting(n_dst: int, n_deleted: int) -> SyncPlan:
    dst = {f"cohorts/c{i:02}/membership.csv": FileInfo(1, "x") for i in range(n_dst)}
    src = {r: e for i, (r, e) in enumerate(sorted(dst.items())) if i >= n_deleted}
    return make_plan(Diff.of(src, dst, SyncScope.build()), parents={}, delete=True)


def test_half_rule_boundaries() -> None:
    assert delete_refusal(plan_deleting(10, 5), None) is None  # half is allowed
    refusal = delete_refusal(plan_deleting(10, 6), None)
    assert refusal is not None
    assert "refusing to delete 6 of the 10 files" in refusal
    assert "nothing was changed" in refusal and "--max-delete 6" in refusal
    assert delete_refusal(plan_deleting(10, 6), 6) is None  # explicit: today's meaning
    assert delete_refusal(plan_deleting(10, 6), 5) is not None
    assert delete_refusal(plan_deleting(1, 1), None) is not None
    assert delete_refusal(plan_deleting(0, 0), None) is None


def test_cli_delete_of_most_of_the_destination_is_refused(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src, n=4)
    assert gens_fs("sync", src, dst).returncode == 0
    for i in range(1, 4):  # 3 of 4 lineages gone from the source
        for stage, gen in (("evaluation", "v"), ("essay", "e"), ("draft", "d")):
            GensStore(f"{src}/gens").delete(stage, f"{gen}{i}")
    before = snapshot(dst)

    line = one_error_line(gens_fs("sync", src, dst, "--delete"))
    total = len(before)
    deleted = total - len(snapshot(src))
    assert f"refusing to delete {deleted} of the {total} files" in line
    assert f"--max-delete {deleted}" in line
    assert snapshot(dst) == before

    refused = gens_fs("sync", src, dst, "--delete", "--json")  # a script still gets JSON
    assert refused.returncode == 2 and "refusing to delete" in refused.stderr
    report = json.loads(refused.stdout)
    assert report["refused"] == line.removeprefix("gens-fs: error: ")
    assert report["copied"] == report["deleted"] == 0 and not report["dry_run"]

    dry = gens_fs("sync", src, dst, "--delete", "--dry-run", "--json")
    assert dry.returncode == 2 and "refusing to delete" in dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["deleted"] == deleted and plan["refused"].startswith("refusing to delete")
    assert snapshot(dst) == before

    done = gens_fs("sync", src, dst, "--delete", "--max-delete", str(deleted))
    assert done.returncode == 0, done.stderr
    assert snapshot(dst) == snapshot(src)


# -- symbolic links and special files ------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> dict[str, Path]:
    """A data root whose generations hold a link out of the root, a link to /dev/zero, a
    FIFO named raw.txt, a link to a file inside the root, and a linked folder."""
    root = tmp_path / "data"
    write_store(str(root), n=3)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside content")
    gens = root / "gens" / "draft"
    (gens / "d0" / "raw.txt").unlink()
    (gens / "d0" / "raw.txt").symlink_to(outside / "secret.txt")
    (gens / "d1" / "parsed.txt").symlink_to("/dev/zero")
    (gens / "d1" / "raw.txt").unlink()
    os.mkfifo(gens / "d1" / "raw.txt")
    (gens / "d2" / "parsed.txt").symlink_to(gens / "d2" / "raw.txt")  # inside the root
    (gens / "d9").symlink_to(outside, target_is_directory=True)
    return {"root": root, "outside": outside, "dst": tmp_path / "dst"}


def test_sync_skips_and_reports_links_and_special_files(linked: dict[str, Path]) -> None:
    root, dst = linked["root"], linked["dst"]
    done = gens_fs("sync", str(root), str(dst), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    ignored = {(e["side"], e["path"]): e["reason"] for e in report["ignored"]}
    assert ignored.keys() == {
        ("source", "gens/draft/d0/raw.txt"),
        ("source", "gens/draft/d1/parsed.txt"),
        ("source", "gens/draft/d1/raw.txt"),
        ("source", "gens/draft/d2/parsed.txt"),
        ("source", "gens/draft/d9"),
    }
    assert ignored["source", "gens/draft/d1/raw.txt"] == "named pipe (FIFO), never opened"
    assert ignored["source", "gens/draft/d0/raw.txt"] == "symbolic link, not followed"
    for side, path in ignored:
        assert f"gens-fs: warning: ignored {side} {path} (" in done.stderr
    copied = snapshot(str(dst))
    assert "gens/draft/d0/raw.txt" not in copied and "gens/draft/d1/raw.txt" not in copied
    assert not any(b"outside content" in data for data in copied.values())
    assert not any(p.startswith("gens/draft/d9") for p in copied)


def test_follow_symlinks_follows_only_inside_the_root(linked: dict[str, Path]) -> None:
    root, dst = linked["root"], linked["dst"]
    report = sync(root, dst, follow_symlinks=True)
    ignored = {e.path: e.reason for e in report.ignored}
    assert "gens/draft/d2/parsed.txt" not in ignored  # inside: followed, copied
    assert (dst / "gens/draft/d2/parsed.txt").read_text() == "draft 2"
    assert not (dst / "gens/draft/d2/parsed.txt").is_symlink()
    outside = str(linked["outside"].resolve())
    assert ignored["gens/draft/d0/raw.txt"] == (
        f"symbolic link to {outside}/secret.txt, outside the data root, not followed"
    )
    assert ignored["gens/draft/d1/parsed.txt"].startswith("symbolic link to /dev/zero")
    assert ignored["gens/draft/d1/raw.txt"] == "named pipe (FIFO), never opened"
    assert "outside the data root" in ignored["gens/draft/d9"]
    assert not (dst / "gens/draft/d0/raw.txt").exists()


def test_ls_and_check_report_links_and_special_files(linked: dict[str, Path]) -> None:
    root = str(linked["root"])
    listed = gens_fs("ls", root, "--stage", "draft")
    assert listed.returncode == 0, listed.stderr
    warnings = [line for line in listed.stderr.splitlines() if line]
    assert len(warnings) == 5 and all(w.startswith("gens-fs: warning: ignored ") for w in warnings)
    fifo = (
        f"gens-fs: warning: ignored {root}/gens/draft/d1/raw.txt (named pipe (FIFO), never opened)"
    )
    assert fifo in warnings
    assert "d9" not in listed.stdout

    done = gens_fs("check", root, "--json")
    findings = json.loads(done.stdout)["findings"]
    ignored = {f["path"]: f for f in findings if f["kind"] == "ignored"}
    assert set(ignored) == {w.split()[3] for w in warnings}  # the same entries
    assert {f["severity"] for f in ignored.values()} == {"warning"}
    assert ignored[f"{root}/gens/draft/d1/raw.txt"]["gen_id"] == "d1"

    followed = gens_fs("check", root, "--json", "--follow-symlinks")
    paths = {f["path"] for f in json.loads(followed.stdout)["findings"] if f["kind"] == "ignored"}
    assert f"{root}/gens/draft/d2/parsed.txt" not in paths
    assert f"{root}/gens/draft/d0/raw.txt" in paths


def test_sockets_and_devices_are_listed_as_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data" / "gens" / "draft" / "d1"
    folder.mkdir(parents=True)
    (folder / "raw.txt").write_text("kept")
    monkeypatch.chdir(folder)  # a socket's path is limited to about 100 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("parsed.txt")
        (folder / "prompt.txt").symlink_to("/dev/null")
        backend = SyncBackend(open_backend(tmp_path / "data"))
        found = backend.scan([str(folder)], follow_symlinks=True)
    assert list(found.files) == [f"{folder}/raw.txt"]
    assert sorted(found.ignored) == [
        (f"{folder}/parsed.txt", "socket, never opened"),
        (f"{folder}/prompt.txt", "symbolic link to /dev/null, outside the data root, not followed"),
    ]


def test_reading_a_special_file_fails_at_once(linked: dict[str, Path]) -> None:
    line = one_error_line(gens_fs("show", str(linked["root"]), "draft", "d1"))
    assert "named pipe (FIFO), not a regular file: never read" in line
    streamed = one_error_line(gens_fs("show", str(linked["root"]), "draft", "d1", "-f", "raw"))
    assert "named pipe (FIFO), not a regular file: never read" in streamed


def test_a_linked_stage_folder_is_not_entered(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    write_store(str(elsewhere))
    write_store(str(root))
    os.rename(root / "gens" / "essay", tmp_path / "old-essays")
    (root / "gens" / "essay").symlink_to(elsewhere / "gens" / "essay")
    report = sync(root, tmp_path / "dst", stages=["essay"])
    assert [(e.path, e.reason) for e in report.ignored] == [
        ("gens/essay", "symbolic link, not followed")
    ]
    assert report.copied == 0


# -- stray entries -------------------------------------------------------------------------

STRAYS = {
    ("gens/draft/notes.txt", "a file directly under gens/draft/ (a generation is a folder)"),
    ("gens/draft/d0/sub", "a folder inside generation draft d0"),
    ("gens/essay", "a file where the stage folder should be"),
    ("gens/notes.md", "a file directly under gens/ (generations live in gens/<stage>/<gen_id>/)"),
    ("cohorts/wip", "a cohort folder without membership.csv"),
}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_check_reports_each_stray(kind: str, tmp_path: Path, s3: dict[str, Any]) -> None:
    root, *flags = url_and_options(kind, tmp_path, s3, "data")
    options = s3 if kind == "s3" else None
    store = GensStore(f"{root}/gens", storage_options=options)
    store.write("draft", "d0", metadata=META, raw="r", prompt="p", parsed="p")
    write_membership(root, "c1", [("draft", "d0")], storage_options=options)
    backend = SyncBackend(open_backend(root, storage_options=options))
    extra = (
        "gens/draft/notes.txt",
        "gens/draft/d0/sub/a.txt",
        "gens/draft/d0/sub/b.txt",
        "gens/draft/d0/.raw.txt.0123abcd.tmp",  # our writers' temporary: not a stray
        "gens/essay",
        "gens/notes.md",
        "cohorts/wip/notes.txt",
        "cohorts/c1/manifest.json",  # beside a membership.csv: belongs to its cohort
    )
    backend.write_many({f"{backend.root}/{path}": b"x" for path in extra})
    done = gens_fs("check", root, "--json", *flags)
    assert done.returncode == 0, done.stderr  # warnings only
    findings = [f for f in json.loads(done.stdout)["findings"] if f["kind"] == "stray"]
    assert {f["path"].removeprefix(root + "/") for f in findings} == {p for p, _ in STRAYS}
    for finding in findings:
        relpath = finding["path"].removeprefix(root + "/")
        assert finding["severity"] == "warning"
        assert finding["message"].startswith(f"{relpath}: {dict(STRAYS)[relpath]}: ")


def test_sync_leaves_gens_strays_and_says_so(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_store(str(src))
    (src / "gens/draft/notes.txt").write_text("n")
    (src / "gens/draft/d0/sub").mkdir()
    (src / "gens/draft/d0/sub/x.txt").write_text("x")
    (src / "cohorts/wip").mkdir()
    (src / "cohorts/wip/notes.txt").write_text("w")
    report = sync(src, dst)
    assert report.ok
    assert [(e.side, e.path, e.reason) for e in report.ignored] == [
        ("source", "gens/draft/d0/sub", "stray: a folder inside generation draft d0"),
        (
            "source",
            "gens/draft/notes.txt",
            "stray: a file directly under gens/draft/ (a generation is a folder)",
        ),
    ]
    copied = snapshot(str(dst))
    assert "gens/draft/notes.txt" not in copied and "gens/draft/d0/sub/x.txt" not in copied
    assert copied["cohorts/wip/notes.txt"] == b"w"  # everything under cohorts/ travels


# -- the pure rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("gens/draft/d1/raw.txt", GensFile("draft", "d1", "raw.txt")),
        ("gens/draft/d1/.raw.txt.ab12.tmp", None),
        ("gens/draft/.hidden/x", None),
        ("cohorts/c1/membership.csv", None),
        ("gens/draft/x.txt", ("gens/draft/x.txt", "a file directly under gens/draft/")),
        ("gens/draft/d1/sub/deeper/x", ("gens/draft/d1/sub", "a folder inside generation")),
        ("gens/draft/bad id/raw.txt", ("gens/draft/bad id", "a folder whose name is not a")),
        ("gens/drafts/d1/raw.txt", ("gens/drafts", "a folder under gens/ that is not a stage")),
    ],
)
def test_classify_gens_file(relpath: str, expected: GensFile | tuple[str, str] | None) -> None:
    found = classify_gens_file(relpath)
    if expected is None or isinstance(expected, GensFile):
        assert found == expected
    else:
        assert isinstance(found, Stray)
        assert found.path == expected[0] and found.reason.startswith(expected[1])


def test_cohort_strays_and_root_kind() -> None:
    found = cohort_strays(
        ["cohorts/c1/membership.csv", "cohorts/c1/manifest.json", "cohorts/wip/x",
         "cohorts/readme.md", "cohorts/bad id/membership.csv", "cohorts/.tmp/x"]
    )  # fmt: skip
    assert [s.path for s in found] == ["cohorts/bad id", "cohorts/readme.md", "cohorts/wip"]
    assert gens_child_stray("draft", is_dir=True) is None
    assert gens_child_stray(".DS_Store", is_dir=False) is None
    assert root_kind(["gens", "3_generation"]) == "data"
    assert root_kind(["cohorts"]) == "data"
    assert root_kind(["draft", "essay"]) == "gens"
    assert root_kind(["photos"]) == "other"
