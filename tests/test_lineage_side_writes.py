"""``GensStore.lineage``, the optional raw side-writes, batched metadata reads and the
backend's root check, on local, memory and S3."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gens_fs import (
    DataRoot,
    GenerationMetadata,
    GenerationNotFound,
    GensStore,
    InvalidMetadata,
    ParentNotFound,
    StorageError,
)
from gens_fs.backends import SyncBackend, open_backend
from tests.test_store import Raw, meta, write_lineage


def test_lineage_from_draft_down(store: GensStore) -> None:
    write_lineage(store)
    chain = store.lineage("evaluation", "v1")
    assert [(g.stage, g.gen_id) for g in chain] == [
        ("draft", "d1"),
        ("essay", "e1"),
        ("evaluation", "v1"),
    ]
    assert chain[0].parsed_text == "draft parsed"
    assert [g.gen_id for g in store.lineage("draft", "d1")] == ["d1"]


def test_lineage_names_the_missing_link(store: GensStore, storage_options: dict[str, Any]) -> None:
    raw = Raw(store, storage_options)
    write_lineage(store)
    store.delete("draft", "d1")
    with pytest.raises(ParentNotFound, match=r"^parent draft d1 of essay e1 is missing"):
        store.lineage("evaluation", "v1")
    raw.plant("draft", "d1", "raw.txt", b"half written")
    with pytest.raises(ParentNotFound, match=r"^parent draft d1 of essay e1 is missing"):
        store.lineage("essay", "e1")
    raw.plant("essay", "e2", "raw.txt", b"no metadata")
    with pytest.raises(ParentNotFound, match=r"essay e2 has no metadata\.json"):
        store.lineage("essay", "e2")
    with pytest.raises(GenerationNotFound):
        store.lineage("evaluation", "nope")


def test_lineage_not_strict_returns_the_links_that_exist(
    store: GensStore, storage_options: dict[str, Any]
) -> None:
    raw = Raw(store, storage_options)
    write_lineage(store)
    whole = store.lineage("evaluation", "v1", strict=False)
    assert [g.gen_id for g in whole] == ["d1", "e1", "v1"] and store.broken_link(whole) is None
    store.delete("draft", "d1")
    raw.plant("draft", "d1", "raw.txt", b"half written")  # there, but not committed
    partial = store.lineage("evaluation", "v1", strict=False)
    assert [(g.stage, g.gen_id) for g in partial] == [("essay", "e1"), ("evaluation", "v1")]
    broken = store.broken_link(partial)
    assert broken is not None and broken.startswith("parent draft d1 of essay e1 is missing")
    raw.plant("essay", "e2", "raw.txt", b"no metadata")
    alone = store.lineage("essay", "e2", strict=False)
    assert [g.gen_id for g in alone] == ["e2"]
    assert "essay e2 has no metadata.json, so its parent is unknown" in str(
        store.broken_link(alone)
    )
    with pytest.raises(GenerationNotFound):  # the generation itself must be there
        store.lineage("essay", "nope", strict=False)


def test_metadata_many_reports_problems_as_values(
    store: GensStore, storage_options: dict[str, Any]
) -> None:
    raw = Raw(store, storage_options)
    write_lineage(store)
    raw.plant("essay", "bad", "metadata.json", b"{not json")
    got = store.metadata_many([("draft", "d1"), ("essay", "bad"), ("evaluation", "none")])
    assert isinstance(got["draft", "d1"], GenerationMetadata)
    assert isinstance(got["essay", "bad"], InvalidMetadata)
    assert got["evaluation", "none"] is None


def test_raw_side_writes(data_root_url: str, storage_options: dict[str, Any]) -> None:
    root = DataRoot(data_root_url, storage_options=storage_options)
    store = root.store(side_writes=True)
    store.write("draft", "d1", metadata=meta(), raw="the raw ✓", parsed="p")
    store.write("draft", "d2", metadata=meta(), parsed="no raw, no side-write")
    side = f"{root.root}/3_generation/draft_raw"
    assert root.backend.read_many([f"{side}/d1.txt"])[f"{side}/d1.txt"] == "the raw ✓".encode()
    assert root.backend.read_many([f"{side}/d2.txt"])[f"{side}/d2.txt"] is None
    # Off by default.
    root.store().write("essay", "e1", metadata=meta("d1"), raw="r")
    assert root.backend.read_many([f"{root.root}/3_generation/essay_raw/e1.txt"]) == {
        f"{root.root}/3_generation/essay_raw/e1.txt": None
    }


def test_side_write_failure_is_logged_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where a directory should be")
    store = GensStore(tmp_path / "data" / "gens", side_write_root=blocker)
    with caplog.at_level(logging.WARNING, logger="gens_fs.store"):
        store.write("draft", "d1", metadata=meta(), raw="kept")
    assert store.load("draft", "d1").raw_text == "kept"
    assert "raw side-write of draft d1" in caplog.text
    assert blocker.read_text().startswith("a regular file")


def test_children_of_the_root(s3_options: dict[str, Any], bucket: str, tmp_path: Path) -> None:
    s3 = SyncBackend(open_backend(f"s3://{bucket}/any/prefix", storage_options=s3_options))
    assert not s3.children(s3.root).exists
    local = SyncBackend(open_backend(tmp_path / "does-not-exist-yet"))
    assert not local.children(local.root).exists
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        missing = SyncBackend(open_backend("s3://no-such-bucket/x", storage_options=s3_options))
        missing.children(missing.root)
