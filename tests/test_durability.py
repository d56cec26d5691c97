"""Durable writes on local disk (``GensStore.write(durable=True)``,
``DataRoot.write_membership(durable=True)``, ``sync --fsync``): every file and the folder
that names it are ``fsync``ed before the ``metadata.json`` that commits them is created,
and the commit before the call returns.

A power loss cannot be staged in a test; what can be checked is the order the kernel is
asked to make things durable in. ``os.fsync`` is wrapped (it still syncs) to record, for
each call, which file or folder it was given and what the generation folder held then."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from gens_fs import DataRoot, GensStore, MembershipRow, sync
from gens_fs.testing.invariants import snapshot
from tests.process import gens_fs

META = {"task_id": "t", "template_id": "x", "model_id": "m"}


class Synced(NamedTuple):
    """One ``fsync``: the path it was given (a folder, or a file's name in its folder,
    temporary names as they are) and, for a folder, the names it held then."""

    path: str
    held: frozenset[str]


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Synced]:
    """Every ``os.fsync`` of this process from now on, in order."""
    calls: list[Synced] = []
    real: Callable[[int], None] = os.fsync

    def recording(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        held = frozenset(os.listdir(path)) if os.path.isdir(path) else frozenset()
        calls.append(Synced(path, held))
        real(fd)

    if not os.path.isdir("/proc/self/fd"):
        pytest.fail("this test reads /proc/self/fd (Linux) to name what each fsync syncs")
    monkeypatch.setattr(os, "fsync", recording)
    return calls


def folder_syncs(calls: list[Synced], folder: Path) -> list[frozenset[str]]:
    return [c.held for c in calls if c.path == str(folder)]


def test_a_durable_write_syncs_files_and_folder_before_the_commit(
    tmp_path: Path, fsyncs: list[Synced]
) -> None:
    store = GensStore(tmp_path / "gens")
    store.write("draft", "d1", metadata=META, raw="raw", parsed="parsed", durable=True)
    gen = tmp_path / "gens" / "draft" / "d1"
    files = [Path(c.path) for c in fsyncs if Path(c.path).parent == gen]
    # each file's bytes (under its temporary name, before the rename): both texts, then
    # the commit's
    assert [f.name.split(".")[1] for f in files] == ["raw", "parsed", "metadata"]
    # the folder once both texts are renamed into it, then after the commit
    assert folder_syncs(fsyncs, gen) == [
        {"raw.txt", "parsed.txt"},
        {"raw.txt", "parsed.txt", "metadata.json"},
    ]
    # the new folders, in their parents, before anything was written into them
    first_file = fsyncs.index(next(c for c in fsyncs if Path(c.path).parent == gen))
    made = {c.path for c in fsyncs[:first_file]}
    assert {str(tmp_path), str(tmp_path / "gens"), str(tmp_path / "gens" / "draft")} <= made


def test_a_plain_write_syncs_nothing(tmp_path: Path, fsyncs: list[Synced]) -> None:
    GensStore(tmp_path / "gens").write("draft", "d1", metadata=META, raw="raw")
    DataRoot(tmp_path).write_membership("c1", [MembershipRow(stage="draft", gen_id="d1")])
    assert fsyncs == []


def test_a_durable_overwrite_syncs_the_uncommit_first(tmp_path: Path, fsyncs: list[Synced]) -> None:
    store = GensStore(tmp_path / "gens")
    store.write("draft", "d1", metadata=META, raw="old", parsed="old")
    store.write("draft", "d1", metadata=META, raw="new", overwrite=True, durable=True)
    held = folder_syncs(fsyncs, tmp_path / "gens" / "draft" / "d1")
    # uncommitted (old texts, no metadata.json), new raw.txt, stale parsed.txt gone, commit
    assert held[0] == {"raw.txt", "parsed.txt"}
    assert held[-1] == {"raw.txt", "metadata.json"}
    assert store.load("draft", "d1").raw_text == "new"


def test_a_durable_membership(tmp_path: Path, fsyncs: list[Synced]) -> None:
    root = DataRoot(tmp_path)
    root.write_membership("c1", [MembershipRow(stage="draft", gen_id="d1")], durable=True)
    assert folder_syncs(fsyncs, tmp_path / "cohorts" / "c1")[-1] == {"membership.csv"}


def test_sync_fsync_syncs_every_generation_before_its_commit(
    tmp_path: Path, fsyncs: list[Synced]
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    store = GensStore(src / "gens")
    store.write("draft", "d1", metadata=META, raw="r", parsed="p")
    store.write("essay", "e1", metadata={**META, "parent_gen_id": "d1"}, raw="e", prompt="q")
    DataRoot(src).write_membership("c1", [MembershipRow(stage="essay", gen_id="e1")])
    assert fsyncs == []
    assert sync(src, dst, fsync=True).ok
    for stage, gen_id, texts in (("draft", "d1", {"raw.txt", "parsed.txt"}),
                                 ("essay", "e1", {"raw.txt", "prompt.txt"})):  # fmt: skip
        held = folder_syncs(fsyncs, dst / "gens" / stage / gen_id)
        assert texts in held, (stage, held)  # its texts, durable, before the commit
        assert held.index(texts) < held.index(texts | {"metadata.json"})
    assert folder_syncs(fsyncs, dst / "cohorts" / "c1") == [{"membership.csv"}]
    assert snapshot(str(dst)) == snapshot(str(src))


def test_sync_fsync_through_the_cli(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    GensStore(src / "gens").write("draft", "d1", metadata=META, raw="r", parsed="p")
    done = gens_fs("sync", str(src), str(dst), "--fsync")
    assert done.returncode == 0, done.stderr
    assert snapshot(str(dst)) == snapshot(str(src))
