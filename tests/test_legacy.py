"""The original pipeline's data (``tests/legacy.py``) through gens_fs, unchanged: ``load``,
``load_many`` and ``load_generation`` (the original's plain dict), the mapping view of
``Generation``, ``check``/``ls``/``stats`` (library, all backends; CLI as a real process on
local disk and S3), a byte-for-byte sync round trip, and ``write`` staying strict."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gens_fs import (
    GenerationMetadata,
    GensStore,
    InvalidMetadata,
    check,
    list_generations,
    load_generation,
    stats,
    sync,
)
from gens_fs.testing.invariants import snapshot
from tests.legacy import BY_ID, GENERATIONS, LegacyGeneration, write_legacy
from tests.process import gens_fs

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_KEYS = [
    "stage",
    "gen_id",
    "parent_gen_id",
    "raw_text",
    "parsed_text",
    "prompt_text",
    "metadata",
]
COPY_ESSAY = next(g for g in GENERATIONS if g.metadata["mode"] == "copy")
DRAFT = GENERATIONS[0]


def original_dict(g: LegacyGeneration) -> dict[str, Any]:
    """What the original ``load_generation`` returned for ``g`` (its code, restated)."""
    md = json.loads(g.metadata_bytes)
    return {
        "stage": g.stage,
        "gen_id": g.gen_id,
        "parent_gen_id": md.get("parent_gen_id"),
        "raw_text": g.raw or "",
        "parsed_text": g.parsed,
        "prompt_text": g.prompt,
        "metadata": md,
    }


@pytest.fixture
def legacy_root(data_root_url: str, storage_options: dict[str, Any]) -> str:
    write_legacy(data_root_url, storage_options)
    return data_root_url


# -- reading -------------------------------------------------------------------------------


def test_load_and_load_many_read_every_original_generation(
    legacy_root: str, storage_options: dict[str, Any]
) -> None:
    store = GensStore(f"{legacy_root}/gens", storage_options=storage_options)
    for g in GENERATIONS:
        gen = store.load(g.stage, g.gen_id)
        assert (gen.raw_text, gen.parsed_text, gen.prompt_text) == (g.raw, g.parsed, g.prompt)
        meta = gen.metadata
        assert meta is not None
        assert (meta.template_id, meta.model_id, meta.task_id) == (
            g.metadata["template_id"],
            g.metadata["llm_model_id"],
            None,
        )
        assert gen.parent_gen_id == g.metadata.get("parent_gen_id")
        assert meta.is_copy == (g is COPY_ESSAY)
        assert meta.model_extra is not None
        assert meta.model_extra["origin_cohort_id"] == g.metadata["origin_cohort_id"]
        # The stored object, exactly: same keys in the same order, no model_id added.
        assert gen["metadata"] == g.metadata
        assert list(gen["metadata"]) == list(g.metadata)
    for stage in ("draft", "essay", "evaluation"):
        ids = [g.gen_id for g in GENERATIONS if g.stage == stage]
        many = store.load_many(stage, ids)
        assert list(many) == ids
        assert all(many[i] == store.load(stage, i) for i in ids)


def test_load_generation_returns_the_original_dict(
    legacy_root: str, storage_options: dict[str, Any]
) -> None:
    for g in GENERATIONS:
        got = load_generation(f"{legacy_root}/gens", g.stage, g.gen_id, **_opts(storage_options))
        assert type(got) is dict
        assert list(got) == ORIGINAL_KEYS
        assert got == original_dict(g)
        assert list(got["metadata"]) == list(g.metadata)
    copy_essay = load_generation(
        f"{legacy_root}/gens", "essay", COPY_ESSAY.gen_id, **_opts(storage_options)
    )
    assert (copy_essay["raw_text"], copy_essay["prompt_text"]) == ("", None)
    assert copy_essay["metadata"]["llm_model_id"] is None
    assert "model_id" not in copy_essay["metadata"]
    draft = load_generation(f"{legacy_root}/gens", "draft", DRAFT.gen_id, **_opts(storage_options))
    assert draft["parent_gen_id"] is None and "parent_gen_id" not in draft["metadata"]


def _opts(storage_options: dict[str, Any]) -> dict[str, Any]:
    return {"storage_options": storage_options} if storage_options else {}


def test_generation_mapping_view_behaves_like_the_original_dict(tmp_path: Path) -> None:
    write_legacy(str(tmp_path))
    store = GensStore(tmp_path / "gens")
    gen = store.load("essay", COPY_ESSAY.gen_id)
    expected = original_dict(COPY_ESSAY)
    assert "raw_text" in gen and "parent_gen_id" in gen and "raw" not in gen
    assert len(gen) == 7
    assert list(gen) == ORIGINAL_KEYS
    assert dict(gen) == {**gen} == gen.to_dict() == expected
    assert list(gen.keys()) == ORIGINAL_KEYS
    assert list(gen.items()) == list(expected.items())
    assert list(gen.values()) == list(expected.values())
    assert [gen[k] for k in gen] == list(expected.values())
    assert gen.get("prompt_text", "default") is None  # dict.get: the key is there
    assert gen.get("nope", "default") == "default"
    assert isinstance(gen, Mapping)
    with pytest.raises(KeyError):
        gen["raw"]
    # The typed view stays typed: a missing file is None, the model is read as model_id.
    assert gen.raw_text is None and gen["raw_text"] == ""
    # A caller editing the dict it got does not edit the generation.
    gen["metadata"]["mode"] = "llm"
    assert gen["metadata"]["mode"] == "copy"
    again = pickle.loads(pickle.dumps(gen))
    assert again == gen and dict(again) == expected


# -- inspecting ----------------------------------------------------------------------------


def test_check_passes_with_one_missing_task_id_info_each(
    legacy_root: str, storage_options: dict[str, Any]
) -> None:
    report = check(legacy_root, storage_options=storage_options)
    assert report.ok and report.summary.errors == 0
    assert {(f.kind, f.severity, f.stage, f.gen_id) for f in report.findings} == {
        ("missing_task_id", "info", g.stage, g.gen_id) for g in GENERATIONS
    }
    assert report.summary.generations == len(GENERATIONS)


def test_ls_and_stats_show_template_and_model(
    legacy_root: str, storage_options: dict[str, Any]
) -> None:
    rows = {(r.stage, r.gen_id): r for r in list_generations(legacy_root, **_opts(storage_options))}
    assert set(rows) == set(BY_ID)
    for key, g in BY_ID.items():
        row = rows[key]
        assert row.committed and row.metadata_error is None
        assert (row.template_id, row.model_id, row.parent_gen_id) == (
            g.metadata["template_id"],
            g.metadata["llm_model_id"],
            g.metadata.get("parent_gen_id"),
        )
    per_stage = stats(legacy_root, **_opts(storage_options)).stages
    assert per_stage["draft"].by_model == {"deepseek_r1_f": 1, "qwen3_235b_a22b": 1}
    assert per_stage["essay"].by_model == {"(none)": 1, "sonnet-4": 1}  # the copy has none
    for stage_stats in per_stage.values():  # every committed generation counted once
        assert sum(stage_stats.by_model.values()) == stage_stats.committed
        assert sum(stage_stats.by_template.values()) == stage_stats.committed
    assert per_stage["essay"].by_template == {"llm-essay-v2": 1, "parsed-from-links-v1": 1}
    assert per_stage["evaluation"].by_model == {"gemini_25_pro": 2}
    assert sum(s.invalid_metadata for s in per_stage.values()) == 0


@pytest.mark.parametrize("backend_name", ["local", "s3"])
def test_cli_ls_show_check_stats(
    legacy_root: str, backend_name: str, aws_env: dict[str, str]
) -> None:
    ls = gens_fs("ls", legacy_root, "--json", env=aws_env)
    assert ls.returncode == 0, ls.stderr
    rows = {(r["stage"], r["gen_id"]): r for r in json.loads(ls.stdout)}
    assert {k: (r["template_id"], r["model_id"]) for k, r in rows.items()} == {
        k: (g.metadata["template_id"], g.metadata["llm_model_id"]) for k, g in BY_ID.items()
    }
    human = gens_fs("ls", legacy_root, "--stage", "draft", env=aws_env).stdout
    assert "creative-synthesis-v10" in human and "qwen3_235b_a22b" in human
    assert "invalid metadata" not in human and "incomplete" not in human

    shown = gens_fs("show", legacy_root, "essay", COPY_ESSAY.gen_id, "--json", env=aws_env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == original_dict(COPY_ESSAY)
    field = gens_fs("show", legacy_root, "draft", DRAFT.gen_id, "-f", "metadata", env=aws_env)
    assert json.loads(field.stdout) == DRAFT.metadata
    for extra in ([], ["--json"]):  # a copy has no raw.txt: said, in both forms, exit 1
        no_raw = gens_fs(
            "show", legacy_root, "essay", COPY_ESSAY.gen_id, "-f", "raw", *extra, env=aws_env
        )
        assert no_raw.returncode == 1, no_raw.stderr
        assert no_raw.stderr == f"gens-fs: error: essay {COPY_ESSAY.gen_id} has no raw.txt\n"
        if extra:
            assert json.loads(no_raw.stdout)["raw"] is None
    human_show = gens_fs("show", legacy_root, "draft", DRAFT.gen_id, env=aws_env).stdout
    assert "creative-synthesis-v10" in human_show and "deepseek_r1_f" in human_show

    checked = gens_fs("check", legacy_root, "--json", env=aws_env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["summary"]["by_kind"] == {"missing_task_id": 6}
    # For people: the remarks the original's data always earns are one line, not a table.
    assert gens_fs("check", legacy_root, env=aws_env).stdout.splitlines() == [
        "6 info remarks: missing_task_id 6 (--all to list them)",
        f"OK: checked 6 generations and 1 cohort in {legacy_root} (draft, essay, evaluation): "
        "0 errors, 0 warnings, 6 info",
    ]
    listed = gens_fs("check", legacy_root, "--all", env=aws_env).stdout
    assert listed.count("│ info     │ missing_task_id") == 6 and "--all" not in listed

    stats_json = json.loads(gens_fs("stats", legacy_root, "--json", env=aws_env).stdout)
    assert stats_json["stages"]["essay"]["by_model"] == {"(none)": 1, "sonnet-4": 1}
    assert stats_json["stages"]["evaluation"]["by_template"] == {
        "daydreaming-verification-v2": 1,
        "novelty-v1": 1,
    }


# -- syncing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src_kind", "dst_kind"), [("local", "local"), ("local", "s3"), ("s3", "local")]
)
def test_sync_round_trip_is_byte_for_byte(
    src_kind: str, dst_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    def place(kind: str, name: str) -> tuple[str, dict[str, Any]]:
        if kind == "local":
            return str(tmp_path / name), {}
        options = dict(request.getfixturevalue("s3_options"))
        return f"s3://{request.getfixturevalue('bucket')}/{name}", options

    (src, src_options), (dst, dst_options) = place(src_kind, "src"), place(dst_kind, "dst")
    write_legacy(src, src_options)
    report = sync(src, dst, src_options=src_options, dst_options=dst_options)
    assert report.ok, report.errors
    copied = snapshot(dst, dst_options)
    assert copied == snapshot(src, src_options)
    assert len(copied) == 1 + sum(len(g.files()) for g in GENERATIONS)
    for g in GENERATIONS:
        for name, data in g.files().items():
            assert copied[f"gens/{g.stage}/{g.gen_id}/{name}"] == data
    assert check(dst, storage_options=dst_options).summary.errors == 0
    again = sync(src, dst, src_options=src_options, dst_options=dst_options)
    assert again.ok and again.copied == 0


# -- writing stays strict ------------------------------------------------------------------


def stored_bytes(store: GensStore, stage: str, gen_id: str, name: str) -> bytes:
    chunks = store.iter_bytes(stage, gen_id, name)
    assert chunks is not None
    return b"".join(chunks)


def test_write_still_requires_what_the_spec_requires(
    store: GensStore, storage_options: dict[str, Any]
) -> None:
    texts = {"raw": DRAFT.raw, "parsed": DRAFT.parsed, "prompt": DRAFT.prompt}
    with pytest.raises(InvalidMetadata, match=r"task_id missing or empty.*metadata\.json"):
        store.write("draft", DRAFT.gen_id, metadata=DRAFT.metadata, **texts)
    copy_meta = {**COPY_ESSAY.metadata, "task_id": "t", "parent_gen_id": "d1"}
    with pytest.raises(InvalidMetadata, match="model_id missing or empty"):
        store.write("essay", COPY_ESSAY.gen_id, metadata=copy_meta, parsed="p")
    assert snapshot(store.url, storage_options) == {}
    # With a task_id the original's metadata is writable, and stored as given: llm_model_id
    # stays llm_model_id, nothing is added.
    given = {**DRAFT.metadata, "task_id": "t-1"}
    store.write("draft", DRAFT.gen_id, metadata=given, **texts)
    stored = json.loads(stored_bytes(store, "draft", DRAFT.gen_id, "metadata.json"))
    assert stored == given and list(stored) == list(given)
    loaded = store.load("draft", DRAFT.gen_id).metadata
    assert loaded is not None and loaded.model_id == "deepseek_r1_f"


def test_a_copy_with_an_update_is_written_as_updated(tmp_path: Path) -> None:
    """``model_copy(update=...)`` skips validation: the copy must not write the stored
    object it came from (which lacks the update)."""
    store = GensStore(tmp_path / "gens")
    read = GenerationMetadata.model_validate(DRAFT.metadata)
    fixed = read.model_copy(update={"task_id": "t-2"})
    store.write("draft", DRAFT.gen_id, metadata=fixed, raw="r")
    stored = json.loads(stored_bytes(store, "draft", DRAFT.gen_id, "metadata.json"))
    assert (stored["task_id"], stored["model_id"], stored["template_id"]) == (
        "t-2",
        "deepseek_r1_f",
        "creative-synthesis-v10",
    )
    assert stored["combo_id"] == DRAFT.metadata["combo_id"]
    assert read.to_dict() == DRAFT.metadata
