"""``gens_fs.to_arrow`` / ``to_pandas`` on local disk, memory and S3 (moto): the columns,
lineage, the original pipeline's metadata (``llm_model_id``, copy-mode essays without
raw.txt and prompt.txt), missing texts and ancestors, cohorts, and the request budget."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from gens_fs import (
    CohortNotFound,
    DataRoot,
    GensStore,
    InvalidMetadata,
    UndecodableText,
    UnknownArtifact,
    UnknownStage,
    to_arrow,
    to_pandas,
)
from gens_fs.tables import StageTable
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from tests.legacy import BY_ID, COHORT, GENERATIONS, write_legacy

META = {"task_id": "t-new", "template_id": "tpl-new", "model_id": "m-new"}
ORPHAN_META = {**META, "parent_gen_id": "e-gone"}


def write_mixed(url: str, options: dict[str, Any]) -> DataRoot:
    """The original pipeline's fixture (``tests/legacy.py``) plus generations gens_fs wrote:
    a draft, an essay without parsed.txt, an evaluation whose essay is missing, and an
    evaluation that never committed (raw.txt only)."""
    root = write_legacy(url, options)
    store = root.store()
    store.write("draft", "d-new", metadata=META, raw="new raw", parsed="new", prompt="p")
    store.write("essay", "e-new", metadata={**META, "parent_gen_id": "d-new"}, raw="only raw")
    root.backend.write_many(
        {
            store.path("evaluation", "v-orphan", "metadata.json"): json.dumps(ORPHAN_META).encode(),
            store.path("evaluation", "v-orphan", "parsed.txt"): b"3",
            store.path("evaluation", "v-incomplete", "raw.txt"): b"never committed",
        }
    )
    return root


@pytest.fixture
def mixed(data_root_url: str, storage_options: dict[str, Any]) -> str:
    write_mixed(data_root_url, storage_options)
    return data_root_url


def legacy_row(stage: str, gen_id: str) -> dict[str, Any]:
    g = BY_ID[stage, gen_id]
    return {
        "gen_id": gen_id,
        "stage": stage,
        "parent_gen_id": g.metadata.get("parent_gen_id"),
        "task_id": None,
        "template_id": g.metadata["template_id"],
        "model_id": g.metadata["llm_model_id"],
        "parsed_text": g.parsed,
        "raw_text": g.raw,
        "prompt_text": g.prompt,
        "metadata": g.metadata_bytes.decode(),
    }


def test_evaluations_with_lineage_and_every_text(
    mixed: str, storage_options: dict[str, Any]
) -> None:
    table = to_arrow(
        mixed,
        stage="evaluation",
        lineage=True,
        texts=("parsed", "raw", "prompt"),
        storage_options=storage_options,
    )
    assert table.schema == pa.schema([(name, pa.string()) for name in table.column_names])
    assert table.column_names == [
        "gen_id", "stage", "parent_gen_id", "task_id", "template_id", "model_id",
        "parsed_text", "raw_text", "prompt_text", "metadata",
        "essay_gen_id", "essay_template_id", "essay_model_id",
        "draft_gen_id", "draft_template_id", "draft_model_id",
    ]  # fmt: skip
    rows = table.to_pylist()
    # Sorted by gen_id ("-" before "_"); the uncommitted v-incomplete is not a row.
    assert [r["gen_id"] for r in rows] == ["v-orphan", "v_3c8x1z6v4b9n2m7q", "v_9p4o7i2u5y8t1r6e"]
    orphan, scored, scored_copy = rows
    assert orphan == {
        "gen_id": "v-orphan", "stage": "evaluation", "parent_gen_id": "e-gone",
        "task_id": "t-new", "template_id": "tpl-new", "model_id": "m-new",
        "parsed_text": "3", "raw_text": None, "prompt_text": None,
        "metadata": json.dumps(ORPHAN_META),
        # The missing essay keeps the id its child names; nothing is known above it.
        "essay_gen_id": "e-gone", "essay_template_id": None, "essay_model_id": None,
        "draft_gen_id": None, "draft_template_id": None, "draft_model_id": None,
    }  # fmt: skip
    essay, draft = BY_ID["essay", "e_5n0b3r6t2y8u1i4o"], BY_ID["draft", "d_2lq7x0c4m1v9s8hk"]
    assert scored == {
        **legacy_row("evaluation", "v_3c8x1z6v4b9n2m7q"),
        "essay_gen_id": essay.gen_id,
        "essay_template_id": "llm-essay-v2",
        "essay_model_id": "sonnet-4",  # llm_model_id
        "draft_gen_id": draft.gen_id,
        "draft_template_id": "creative-synthesis-v10",
        "draft_model_id": "deepseek_r1_f",
    }
    # Its essay was copied (mode "copy"): llm_model_id null, so a null model.
    assert (scored_copy["essay_gen_id"], scored_copy["essay_model_id"]) == (
        "e_7k2m9q4w1e6r3t0y",
        None,
    )
    assert scored_copy["draft_gen_id"] == "d_2lq7x0c4m1v9s8hk-1"
    assert scored_copy["draft_model_id"] == "qwen3_235b_a22b"


def test_essays_copy_mode_and_missing_texts_are_null(
    mixed: str, storage_options: dict[str, Any]
) -> None:
    rows = to_arrow(
        mixed, stage="essay", texts=["raw", "prompt", "parsed"], storage_options=storage_options
    ).to_pylist()
    assert [r["gen_id"] for r in rows] == ["e-new", "e_5n0b3r6t2y8u1i4o", "e_7k2m9q4w1e6r3t0y"]
    new, _, copied = rows
    assert list(new)[6:9] == ["raw_text", "prompt_text", "parsed_text"]  # as asked
    assert (new["raw_text"], new["parsed_text"], new["prompt_text"]) == ("only raw", None, None)
    assert copied == legacy_row("essay", "e_7k2m9q4w1e6r3t0y")
    assert (copied["raw_text"], copied["prompt_text"], copied["model_id"]) == (None, None, None)


def test_drafts_have_no_parent_and_no_lineage_columns(
    mixed: str, storage_options: dict[str, Any]
) -> None:
    table = to_arrow(mixed, stage="draft", lineage=True, texts=(), storage_options=storage_options)
    assert table.column_names == [
        "gen_id", "stage", "parent_gen_id", "task_id", "template_id", "model_id", "metadata"
    ]  # fmt: skip
    assert table.column("gen_id").to_pylist() == [
        "d-new",
        "d_2lq7x0c4m1v9s8hk",
        "d_2lq7x0c4m1v9s8hk-1",
    ]
    assert table.column("parent_gen_id").null_count == 3


def test_a_cohort_keeps_its_members_only(mixed: str, storage_options: dict[str, Any]) -> None:
    table = to_arrow(mixed, stage="evaluation", cohort=COHORT, storage_options=storage_options)
    members = sorted(g.gen_id for g in GENERATIONS if g.stage == "evaluation")
    assert table.column("gen_id").to_pylist() == members
    with pytest.raises(CohortNotFound):
        to_arrow(mixed, stage="evaluation", cohort="nope", storage_options=storage_options)


def test_to_pandas_is_the_arrow_table(mixed: str, storage_options: dict[str, Any]) -> None:
    frame = to_pandas(mixed, stage="evaluation", lineage=True, storage_options=storage_options)
    expected = to_arrow(
        mixed, stage="evaluation", lineage=True, storage_options=storage_options
    ).to_pandas()
    pd.testing.assert_frame_equal(frame, expected)
    assert frame.loc[0, "gen_id"] == "v-orphan" and pd.isna(frame.loc[0, "draft_gen_id"])
    assert json.loads(frame.loc[1, "metadata"])["llm_model_id"] == "gemini_25_pro"


def test_an_empty_stage_is_an_empty_table_with_the_columns(
    data_root_url: str, storage_options: dict[str, Any]
) -> None:
    table = to_arrow(data_root_url, stage="essay", lineage=True, storage_options=storage_options)
    assert table.num_rows == 0
    assert table.column_names[-3:] == ["draft_gen_id", "draft_template_id", "draft_model_id"]


@pytest.mark.parametrize("backend_name", ["local"])
def test_mistakes_are_typed_errors(mixed: str, storage_options: dict[str, Any]) -> None:
    with pytest.raises(UnknownStage):
        to_arrow(mixed, stage="essays")
    with pytest.raises(UnknownArtifact, match="unknown text 'metadata'"):
        to_arrow(mixed, stage="essay", texts=("parsed", "metadata"))
    store = GensStore(f"{mixed}/gens")
    with open(store.path("draft", "d-new", "parsed.txt"), "wb") as file:
        file.write(b"\xff\xfe")
    with pytest.raises(UndecodableText, match=r"d-new/parsed\.txt is not UTF-8"):
        to_arrow(mixed, stage="draft")
    with open(store.path("draft", "d-new", "metadata.json"), "wb") as file:
        file.write(b"{not json")
    with pytest.raises(InvalidMetadata, match=r"d-new/metadata\.json"):
        to_arrow(mixed, stage="draft", texts=())
    # An ancestor's metadata is read too, and said to be broken the same way.
    with pytest.raises(InvalidMetadata, match=r"d-new/metadata\.json"):
        to_arrow(mixed, stage="essay", lineage=True)


def test_requests_are_the_listing_and_one_get_per_file_read(
    s3_middleware: S3Middleware, bucket: str
) -> None:
    options = s3_storage_options(s3_middleware.endpoint_url)
    root = DataRoot(f"s3://{bucket}/data", storage_options=options)
    store = root.store()
    for d in range(3):
        store.write("draft", f"d{d}", metadata=META, raw="r", parsed="p", prompt="q")
        for e in range(2):
            essay = f"e{d}{e}"
            store.write("essay", essay, metadata={**META, "parent_gen_id": f"d{d}"}, raw="r")
            for v in range(4):
                meta = {**META, "parent_gen_id": essay}
                store.write("evaluation", f"v{d}{e}{v}", metadata=meta, parsed="7")
    s3_middleware.reset_counts()

    table = StageTable(root, stage="evaluation", lineage=True, texts=("parsed", "raw"))
    batches = list(table.batches(batch_size=5))

    assert [b.num_rows for b in batches] == [5, 5, 5, 5, 4]
    # The listing; a GET per evaluation's metadata.json and parsed.txt (raw.txt: none in the
    # listing, so none asked for); each of the 6 essays and 3 drafts read once, though
    # their evaluations are in several batches.
    assert s3_middleware.counts() == {"LIST": 1, "GET": 24 * 2 + 6 + 3}
    rows = pa.Table.from_batches(batches).to_pylist()
    assert rows[23]["essay_gen_id"] == "e21" and rows[23]["draft_gen_id"] == "d2"
