"""Property tests: gen_id validation and metadata round trips."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gens_fs import GenerationMetadata, GensStore, InvalidGenId
from gens_fs.layout import generation_dir, parse_gens_path, validate_gen_id

SAFE = string.ascii_letters + string.digits + "_-."
safe_ids = st.text(SAFE, min_size=1, max_size=128).filter(
    lambda s: not s.startswith(".") and ".." not in s
)


@given(safe_ids)
def test_safe_ids_accepted_and_stay_in_their_directory(gen_id: str) -> None:
    assert validate_gen_id(gen_id) == gen_id
    path = generation_dir("essay", gen_id)
    assert path.split("/") == ["essay", gen_id]
    assert parse_gens_path(f"{path}/raw.txt") == ("essay", gen_id, "raw.txt")


@given(st.text(max_size=140))
def test_any_accepted_id_is_a_plain_name(gen_id: str) -> None:
    try:
        validate_gen_id(gen_id)
    except InvalidGenId:
        return
    # Whatever passes cannot address another directory or act as a glob.
    assert 1 <= len(gen_id) <= 128
    assert set(gen_id) <= set(SAFE)
    assert not gen_id.startswith(".") and ".." not in gen_id


@given(st.text(min_size=1, max_size=20), st.sampled_from("/\\\x00 \t\n*?[]"))
def test_ids_with_a_dangerous_character_refused(prefix: str, bad: str) -> None:
    with pytest.raises(InvalidGenId):
        validate_gen_id(prefix + bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
extra_keys = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(
        lambda k: k not in GenerationMetadata.model_fields and k != "llm_model_id"
    ),
    json_values,
    max_size=4,
)


@given(
    task_id=st.text(max_size=20),
    model_key=st.sampled_from(["model_id", "llm_model_id"]),
    model_id=st.one_of(st.none(), st.text(max_size=20)),
    parent=st.one_of(st.none(), safe_ids),
    extra=extra_keys,
)
def test_metadata_json_round_trip_keeps_the_object_exactly(
    task_id: str, model_key: str, model_id: str | None, parent: str | None, extra: dict[str, Any]
) -> None:
    raw = {"task_id": task_id, "template_id": "t", model_key: model_id, "parent_gen_id": parent}
    raw.update(extra)
    model = GenerationMetadata.model_validate(raw)
    again = GenerationMetadata.model_validate(json.loads(model.to_json()))
    assert again == model
    assert json.loads(model.to_json()) == raw  # no key renamed, added or dropped
    assert list(model.to_dict()) == list(raw)  # nor reordered
    assert (model.model_id, model.parent_gen_id) == (model_id, parent or "")
    assert model.model_extra == extra


@settings(max_examples=25, deadline=None)
@given(text=st.text(max_size=200), extra=extra_keys)
def test_store_round_trip_in_memory(text: str, extra: dict[str, Any]) -> None:
    store = GensStore("memory://props/gens")
    metadata = {"task_id": "t", "template_id": "x", "model_id": "m", **extra}
    written = store.write("draft", "d1", metadata=metadata, raw=text, parsed=text, overwrite=True)
    assert store.load("draft", "d1") == written


rows = st.lists(st.tuples(st.sampled_from(["draft", "essay", "evaluation"]), safe_ids), max_size=20)


@given(rows=rows, bom=st.booleans(), crlf=st.booleans(), extra=st.booleans())
def test_membership_parse_format_round_trip(
    rows: list[tuple[str, str]], bom: bool, crlf: bool, extra: bool
) -> None:
    from gens_fs.cohorts import MembershipRow, format_membership, parse_membership

    expected = list(dict.fromkeys(MembershipRow(stage=s, gen_id=g) for s, g in rows))
    assert parse_membership(format_membership(expected), where="m.csv") == expected
    # The same rows as another tool might write them.
    newline = "\r\n" if crlf else "\n"
    header = "stage,gen_id" + (",note" if extra else "")
    lines = [header] + [f"{s},{g}" + (",x" if extra else "") for s, g in rows]
    data = ("\ufeff" if bom else "") + newline.join(lines) + newline
    assert parse_membership(data.encode(), where="m.csv") == expected


@given(task_id=st.text(max_size=30), attempt=st.integers(0, 5))
def test_new_gen_id_is_deterministic_and_valid(task_id: str, attempt: int) -> None:
    from gens_fs import new_gen_id

    first = new_gen_id("essay", task_id, attempt)
    assert first == new_gen_id("essay", task_id, attempt)
    assert validate_gen_id(first) == first and len(first) == 16
    assert first != new_gen_id("essay", task_id, attempt + 1)
    assert first != new_gen_id("draft", task_id, attempt)
