"""The store contract, on local disk, in memory and on S3 (moto server over HTTP)."""

from __future__ import annotations

import json
from typing import Any

import fsspec
import pytest

from gens_fs import (
    STAGES,
    DataRoot,
    GenerationExists,
    GenerationMetadata,
    GenerationNotFound,
    GensError,
    GensStore,
    InvalidGenId,
    InvalidMetadata,
    ParentNotFound,
    UndecodableText,
    UnknownStage,
    load_generation,
)


def meta(parent: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "task_id": "t1",
        "template_id": "tpl",
        "model_id": "m1",
        "parent_gen_id": parent,
        **extra,
    }


class Raw:
    """The store's medium reached without the store (fsspec on its URL), to look at and
    plant files behind its back."""

    def __init__(self, store: GensStore, options: dict[str, Any]) -> None:
        self.store = store
        self.fs, _ = fsspec.core.url_to_fs(store.url, **options)

    def files(self) -> dict[str, bytes]:
        """Every file under the store root, for 'nothing was written' checks."""
        self.fs.invalidate_cache()
        try:
            paths = self.fs.find(self.store.root)
        except FileNotFoundError:
            return {}
        return {p: self.fs.cat_file(p) for p in paths}

    def plant(self, stage: str, gen_id: str, name: str, data: bytes) -> str:
        """Put a file in place (as a crash or an old pipeline would)."""
        path = self.store.path(stage, gen_id, name)
        self.fs.makedirs(self.store.path(stage, gen_id), exist_ok=True)
        self.fs.pipe_file(path, data)
        return path

    def cat(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(path))


@pytest.fixture
def raw(store: GensStore, storage_options: dict[str, Any]) -> Raw:
    return Raw(store, storage_options)


def write_lineage(store: GensStore) -> None:
    store.write("draft", "d1", metadata=meta(), raw="draft raw", parsed="draft parsed", prompt="p")
    store.write("essay", "e1", metadata=meta("d1"), raw="essay raw", parsed="essay parsed")
    store.write("evaluation", "v1", metadata=meta("e1"), raw="SCORE: 7", parsed="7")


def test_write_then_load_round_trip(store: GensStore) -> None:
    extra = {"function": "draft_response", "usage": {"total_tokens": 42}, "cohort": "c1"}
    written = store.write(
        "draft", "abc123", metadata=meta(**extra), raw="ráw ✓", parsed="parsed", prompt="prompt"
    )
    loaded = store.load("draft", "abc123")
    assert loaded == written
    assert loaded.raw_text == "ráw ✓"
    assert loaded.parsed_text == "parsed"
    assert loaded.prompt_text == "prompt"
    assert loaded.metadata is not None
    assert loaded.metadata.usage == {"total_tokens": 42}
    assert loaded.metadata.model_extra == {"cohort": "c1"}
    assert loaded.parent_gen_id is None
    assert store.exists("draft", "abc123")


def test_spec_mapping_access(store: GensStore) -> None:
    write_lineage(store)
    gen = store.load("essay", "e1")
    assert gen["parsed_text"] == "essay parsed"
    assert gen["raw_text"] == "essay raw"
    assert gen["prompt_text"] is None
    assert gen.get("prompt_text", "none") is None  # as dict.get: the key is there
    assert gen.get("nope", "none") == "none"
    assert gen["metadata"]["parent_gen_id"] == "d1"
    assert gen["parent_gen_id"] == "d1"
    assert isinstance(gen["metadata"], dict)
    assert gen.to_dict()["metadata"] == gen["metadata"]
    assert gen.parent_gen_id == "d1"
    assert gen.parent_stage == "draft"
    with pytest.raises(KeyError):
        gen["nope"]


def test_load_generation_entry_point(store: GensStore, storage_options: dict[str, Any]) -> None:
    write_lineage(store)
    gen = load_generation(store.url, "evaluation", "v1", storage_options=storage_options)
    assert gen["parsed_text"] == "7"


def test_metadata_json_is_utf8_indented_and_keeps_non_ascii(store: GensStore, raw: Raw) -> None:
    store.write("draft", "d1", metadata=meta(note="naïve — 日本"), raw="x")
    data = raw.cat(store.path("draft", "d1", "metadata.json"))
    assert "naïve — 日本".encode() in data
    assert data.startswith(b"{\n  ")
    assert json.loads(data)["note"] == "naïve — 日本"


def test_missing_optional_files_read_as_none(store: GensStore) -> None:
    store.write("draft", "d1", metadata=meta(), parsed="only parsed")
    gen = store.load("draft", "d1")
    assert gen.raw_text is None and gen.prompt_text is None
    assert gen.parsed_text == "only parsed"


def test_incomplete_generation_loads_without_metadata(store: GensStore, raw: Raw) -> None:
    raw.plant("draft", "d1", "raw.txt", b"raw only")
    gen = store.load("draft", "d1")
    assert gen.raw_text == "raw only"
    assert gen.metadata is None and not gen.is_committed
    assert not store.exists("draft", "d1")
    assert store.gen_ids("draft") == []
    assert store.files("draft") == {"d1": {"raw.txt": 8}}


def test_load_missing_raises_not_found_with_advice(store: GensStore) -> None:
    with pytest.raises(GenerationNotFound, match=r"membership\.csv") as info:
        store.load("essay", "nope")
    assert isinstance(info.value, FileNotFoundError)
    assert "essay" in str(info.value) and "nope" in str(info.value)


def test_error_messages_name_urls_as_a_user_types_them(
    store: GensStore, data_root_url: str, backend_name: str, raw: Raw
) -> None:
    """``s3://bucket/...``, not the filesystem's bare ``bucket/...``."""
    gens = DataRoot(data_root_url).url + "/gens"
    assert gens.startswith({"local": "/", "memory": "memory://", "s3": "s3://"}[backend_name])
    write_lineage(store)
    raw.plant("draft", "bad", "metadata.json", b"{not json")
    raw.plant("draft", "latin1", "raw.txt", b"caf\xe9")
    refused: list[tuple[type[Exception], Any, str]] = [
        (GenerationNotFound, lambda: store.load("essay", "nope"), "essay/nope"),
        (GenerationNotFound, lambda: store.iter_bytes("essay", "nope", "raw.txt"), "essay/nope"),
        (GenerationNotFound, lambda: store.delete("essay", "nope"), "essay/nope"),
        (GenerationExists, lambda: store.write("draft", "d1", metadata=meta()), "draft/d1"),
        (
            ParentNotFound,
            lambda: store.write("essay", "e9", metadata=meta("d9")),
            "draft/d9/metadata.json",
        ),
        (InvalidMetadata, lambda: store.load("draft", "bad"), "draft/bad/metadata.json"),
        (UndecodableText, lambda: store.load("draft", "latin1"), "draft/latin1/raw.txt"),
    ]
    for error, call, where in refused:
        with pytest.raises(error) as info:
            call()
        assert f"{gens}/{where}" in str(info.value)
    store.delete("draft", "d1")
    with pytest.raises(ParentNotFound) as broken:
        store.lineage("essay", "e1")
    assert f"(no {gens}/draft/d1/metadata.json)" in str(broken.value)


def test_legacy_llm_model_id_reads_as_model_id(store: GensStore, raw: Raw) -> None:
    legacy = {
        "task_id": "t",
        "template_id": "x",
        "llm_model_id": "old-model",
        "parent_gen_id": None,
    }
    raw.plant("draft", "d1", "metadata.json", json.dumps(legacy).encode())
    gen = store.load("draft", "d1")
    assert gen.metadata is not None
    assert gen.metadata.model_id == "old-model"
    assert gen.metadata.parent_gen_id == ""


def test_load_many_batches_and_reports_all_missing(store: GensStore) -> None:
    for i in range(5):
        store.write("draft", f"d{i}", metadata=meta(), raw=f"raw {i}")
    gens = store.load_many("draft", ["d3", "d0", "d4"])
    assert list(gens) == ["d3", "d0", "d4"]
    assert gens["d0"].raw_text == "raw 0"
    with pytest.raises(GenerationNotFound) as info:
        store.load_many("draft", ["d1", "x1", "x2"])
    assert "x1" in str(info.value) and "x2" in str(info.value)
    assert list(store.load_many("draft", ["d1", "x1"], missing="skip")) == ["d1"]


def test_gen_ids_sorted_committed_only(store: GensStore, raw: Raw) -> None:
    for gen_id in ["b", "a", "c.1", "a-2"]:
        store.write("draft", gen_id, metadata=meta())
    raw.plant("draft", "zz", "raw.txt", b"uncommitted")
    assert store.gen_ids("draft") == ["a", "a-2", "b", "c.1"]
    assert store.gen_ids("essay") == []


def test_lineage_rules_on_write(store: GensStore, raw: Raw) -> None:
    with pytest.raises(ParentNotFound, match="write the draft first"):
        store.write("essay", "e1", metadata=meta("d1"), raw="x")
    with pytest.raises(ParentNotFound, match="parent_gen_id"):
        store.write("essay", "e1", metadata=meta(""), raw="x")
    store.write("draft", "d1", metadata=meta())
    with pytest.raises(ParentNotFound):  # an evaluation's parent must be an essay
        store.write("evaluation", "v1", metadata=meta("d1"), raw="x")
    with pytest.raises(InvalidMetadata, match="a draft has no parent"):
        store.write("draft", "d2", metadata=meta("d1"), raw="x")
    with pytest.raises(InvalidMetadata, match="not valid"):
        store.write("essay", "e1", metadata=meta("../d1"), raw="x")
    assert set(raw.files()) == {store.path("draft", "d1", "metadata.json")}


def test_parent_must_be_committed(store: GensStore, raw: Raw) -> None:
    raw.plant("draft", "d1", "raw.txt", b"incomplete draft")
    before = raw.files()
    with pytest.raises(ParentNotFound):
        store.write("essay", "e1", metadata=meta("d1"), raw="x")
    assert raw.files() == before


def test_write_is_create_only_by_default(store: GensStore, raw: Raw) -> None:
    store.write("draft", "d1", metadata=meta(), raw="first", prompt="p1")
    before = raw.files()
    with pytest.raises(GenerationExists, match="overwrite=True") as info:
        store.write("draft", "d1", metadata=meta(), raw="second")
    assert isinstance(info.value, FileExistsError)
    assert raw.files() == before


def test_overwrite_replaces_and_drops_stale_texts(store: GensStore) -> None:
    store.write("draft", "d1", metadata=meta(), raw="first", prompt="p1")
    store.write("draft", "d1", metadata=meta(task_id="t2"), raw="second", overwrite=True)
    gen = store.load("draft", "d1")
    assert gen.raw_text == "second" and gen.prompt_text is None
    assert gen.metadata is not None and gen.metadata.task_id == "t2"


def test_write_completes_an_incomplete_generation(store: GensStore, raw: Raw) -> None:
    # A crashed writer leaves text files without metadata.json; a rerun must converge.
    raw.plant("draft", "d1", "raw.txt", b"partial")
    store.write("draft", "d1", metadata=meta(), raw="full")
    assert store.load("draft", "d1").raw_text == "full"


@pytest.mark.parametrize(
    "gen_id",
    [
        "",
        "..",
        ".",
        "../x",
        "a/b",
        "a\\b",
        "a b",
        "a\x00b",
        "*",
        "a?",
        "[a]",
        ".hidden",
        "x" * 129,
        "a..b",
        "tab\t",
        "new\nline",
        "é",
    ],
)
def test_unsafe_gen_ids_refused_before_io(store: GensStore, gen_id: str, raw: Raw) -> None:
    for call in (
        lambda: store.load("draft", gen_id),
        lambda: store.write("draft", gen_id, metadata=meta(), raw="x"),
        lambda: store.exists("draft", gen_id),
        lambda: store.delete("draft", gen_id),
        lambda: store.load_many("draft", ["ok", gen_id]),
    ):
        with pytest.raises(InvalidGenId) as info:
            call()
        assert isinstance(info.value, ValueError)
    assert raw.files() == {}


@pytest.mark.parametrize("stage", ["drafts", "Draft", "", "../draft", "essay/", None])
def test_unknown_stages_refused(store: GensStore, stage: Any, raw: Raw) -> None:
    with pytest.raises(UnknownStage, match="draft, essay, evaluation"):
        store.write(stage, "g1", metadata=meta(), raw="x")
    with pytest.raises(UnknownStage):
        store.load(stage, "g1")
    with pytest.raises(UnknownStage):
        store.gen_ids(stage)
    assert raw.files() == {}


@pytest.mark.parametrize(
    "bad",
    [{"task_id": "t"}, {"task_id": 1, "template_id": "x", "model_id": "m"}, ["not", "a", "dict"]],
)
def test_invalid_metadata_on_write_writes_nothing(store: GensStore, bad: Any, raw: Raw) -> None:
    with pytest.raises(InvalidMetadata, match=r"metadata\.json"):
        store.write("draft", "d1", metadata=bad, raw="x")
    assert raw.files() == {}


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"task_id": 1}', b'{"usage": "x"}', b"\xff\xfe{}", b"[]"]
)
def test_corrupt_metadata_json_on_load(store: GensStore, content: bytes, raw: Raw) -> None:
    path = raw.plant("draft", "d1", "metadata.json", content)
    with pytest.raises(InvalidMetadata) as info:
        store.load("draft", "d1")
    assert path in str(info.value)


def test_non_utf8_text_names_the_file(store: GensStore, raw: Raw) -> None:
    store.write("draft", "d1", metadata=meta(), raw="ok")
    path = raw.plant("draft", "d1", "raw.txt", b"caf\xe9")
    with pytest.raises(UndecodableText) as info:
        store.load("draft", "d1")
    assert path in str(info.value) and isinstance(info.value, GensError)


def test_delete_uncommits_and_removes_only_that_generation(store: GensStore, raw: Raw) -> None:
    store.write("draft", "abc", metadata=meta(), raw="x", prompt="p")
    store.write("draft", "abcd", metadata=meta(), raw="y")
    raw.plant("draft", "abc", "raw_metadata.json", b"{}")
    store.delete("draft", "abc")
    assert not store.exists("draft", "abc")
    assert store.gen_ids("draft") == ["abcd"]
    assert store.files("draft") == {
        "abcd": {"raw.txt": 1, "metadata.json": pytest.approx(150, abs=150)}
    }
    with pytest.raises(GenerationNotFound):
        store.load("draft", "abc")
    with pytest.raises(GenerationNotFound):
        store.delete("draft", "abc")


def test_extra_files_survive_and_are_listed(store: GensStore, raw: Raw) -> None:
    store.write("draft", "d1", metadata=meta(), raw="x")
    raw.plant("draft", "d1", "raw_metadata.json", b"{}")
    assert set(store.files("draft")["d1"]) == {"raw.txt", "metadata.json", "raw_metadata.json"}


def test_metadata_model_accepted_directly(store: GensStore) -> None:
    model = GenerationMetadata(task_id="t", template_id="x", model_id="m")
    store.write("draft", "d1", metadata=model, raw="x")
    assert store.load("draft", "d1").metadata == model


def test_stages_constant() -> None:
    assert STAGES == ("draft", "essay", "evaluation")


def test_exclusive_create_of_the_commit_marker(store: GensStore, raw: Raw) -> None:
    # The medium's own exclusive create, not the store's early check, decides a race: call
    # the backend primitive twice on the same path.
    backend = store._backend
    path = store.path("draft", "race", "metadata.json")
    assert store.exclusive_create
    assert backend.create(path, b"first") is True
    assert backend.create(path, b"second") is False
    assert raw.cat(path) == b"first"


def test_s3_root_from_standard_aws_environment(
    moto_server: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        store = GensStore(f"s3://{bucket}/gens")
        store.write("draft", "d1", metadata=meta(), raw="via env", overwrite=True)
        gen = load_generation(f"s3://{bucket}/gens", "draft", "d1")
        assert gen["raw_text"] == "via env"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_missing_bucket_is_a_storage_error_not_an_empty_store(
    s3_options: dict[str, Any],
) -> None:
    from gens_fs import StorageError, check

    store = GensStore("s3://no-such-bucket-here/data/gens", storage_options=s3_options)
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        store.gen_ids("draft")
    with pytest.raises(StorageError, match="does not exist"):
        check("s3://no-such-bucket-here/data", storage_options=s3_options)
