"""gens_fs.dagster: the resource, the IO manager and cohort partitions, through Dagster's
own execution (``materialize`` in process, ``execute_job`` with the multiprocess executor)
on local disk, memory and S3 (the moto server). What was written is read back from the
medium itself (fsspec), not through the store.

Every Dagster instance lives in the test's ``tmp_path``: an ephemeral one (in-memory
storages, its artifact folder there), or ``instance_for_test`` for the multiprocess run
(run storage on disk, ``DAGSTER_HOME`` set there for the run and restored after).
"""

# No `from __future__ import annotations`: Dagster reads the assets' annotations at
# definition time (the context's type, an input's Generation), as objects, not strings.

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import fsspec
import pytest

from gens_fs import (
    CohortNotFound,
    Generation,
    GenerationNotFound,
    GensStore,
    InvalidGenId,
    InvalidMetadata,
    ParentNotFound,
    UnknownStage,
    write_membership,
)
from gens_fs.dagster import GenerationIOManager, GensStoreResource, cohort_partitions
from tests.dagster_defs import generations_job

META = {"task_id": "t1", "template_id": "tpl", "model_id": "m1"}
DRAFTS = ["d1", "d2", "d3"]
PARENT = {"e1": "d1", "e2": "d2", "e3": "d1"}  # essay gen_id -> its draft's


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """An ephemeral instance (in-memory run and event storage) whose artifact folder is in
    this test's ``tmp_path``, disposed of at the end."""
    with dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as instance:
        yield instance


def resources(root: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "io_manager": GenerationIOManager(data_root=root, storage_options=options),
        "gens": GensStoreResource(data_root=root, storage_options=options),
    }


def materialize(
    assets: Sequence[dg.AssetsDefinition],
    key: str,
    root: str,
    options: dict[str, Any],
    instance: dg.DagsterInstance,
    *,
    only: dg.AssetsDefinition | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """One in-process run of partition ``key`` (of ``only``, when the others are upstream)."""
    return dg.materialize(
        assets,
        partition_key=key,
        selection=None if only is None else [only],
        resources=resources(root, options),
        instance=instance,
        raise_on_error=raise_on_error,
    )


def files_at(root: str, options: dict[str, Any]) -> dict[str, bytes]:
    """Every file under ``root`` as the medium has it (path relative to ``root``: bytes)."""
    fs, path = fsspec.core.url_to_fs(root, **options)
    fs.invalidate_cache()
    return {found[len(path) + 1 :]: fs.cat_file(found) for found in fs.find(path)}


def output_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def draft_and_essay(
    drafts: dg.PartitionsDefinition, essays: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """The README's shape: each asset partitioned by its own gen_ids; the essay reads its
    parent draft through the resource and returns its generation to the IO manager."""

    @dg.asset(partitions_def=drafts)
    def draft(context: dg.AssetExecutionContext) -> dict[str, Any]:
        key = context.partition_key
        return {
            "metadata": META,
            "raw": f"raw {key}",
            "parsed": f"ideas {key}",
            "prompt": f"prompt {key}",
        }

    @dg.asset(partitions_def=essays, deps=[draft])
    def essay(context: dg.AssetExecutionContext, gens: GensStoreResource) -> dict[str, Any]:
        parent = gens.store().load("draft", PARENT[context.partition_key])
        return {
            "metadata": {**META, "parent_gen_id": parent.gen_id},
            "raw": f"essay on {parent.parsed_text}",
            "parsed": "essay",
        }

    return [draft, essay]


def test_draft_and_essay_assets_write_exactly_their_files(
    data_root_url: str, storage_options: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    rows = [("draft", d) for d in DRAFTS] + [("essay", e) for e in PARENT]
    write_membership(data_root_url, "c1", rows, storage_options=storage_options)
    partitions = {
        stage: dg.StaticPartitionsDefinition(
            cohort_partitions(data_root_url, "c1", stage, storage_options=storage_options)
        )
        for stage in ("draft", "essay")
    }
    assets = draft_and_essay(partitions["draft"], partitions["essay"])
    results = {}
    for stage, asset in zip(("draft", "essay"), assets, strict=True):
        for key in partitions[stage].get_partition_keys():
            run = materialize(assets, key, data_root_url, storage_options, instance, only=asset)
            results[key] = output_metadata(run, stage)

    files = files_at(data_root_url, storage_options)
    membership = files.pop("cohorts/c1/membership.csv")
    assert membership.decode().splitlines()[1:] == [f"{stage},{g}" for stage, g in rows]
    expected = {
        f"gens/draft/{d}/{name}"
        for d in DRAFTS
        for name in ("raw.txt", "parsed.txt", "prompt.txt", "metadata.json")
    }
    expected |= {
        f"gens/essay/{e}/{name}"
        for e in PARENT
        for name in ("raw.txt", "parsed.txt", "metadata.json")
    }
    assert set(files) == expected
    assert files["gens/draft/d2/prompt.txt"] == b"prompt d2"
    assert files["gens/essay/e3/raw.txt"] == b"essay on ideas d1"
    assert json.loads(files["gens/essay/e3/metadata.json"]) == {**META, "parent_gen_id": "d1"}
    store = GensStore(f"{data_root_url}/gens", storage_options=storage_options)
    assert results["e3"] == {
        "gen_id": "e3",
        "stage": "essay",
        "parent_gen_id": "d1",
        "location": f"{store.url}/essay/e3",
        "raw_bytes": len(b"essay on ideas d1"),
        "parsed_bytes": len(b"essay"),
        "metadata_bytes": len(files["gens/essay/e3/metadata.json"]),
    }
    assert results["d1"]["prompt_bytes"] == len(b"prompt d1")


def test_rematerializing_a_partition_replaces_its_generation(
    data_root_url: str, storage_options: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    outputs = {"d1": {"metadata": META, "raw": "first", "parsed": "first", "prompt": "p"}}

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["d1"]))
    def draft(context: dg.AssetExecutionContext) -> dict[str, Any]:
        return outputs[context.partition_key]

    materialize([draft], "d1", data_root_url, storage_options, instance)
    outputs["d1"] = {"metadata": {**META, "model_id": "m2"}, "raw": "second"}
    run = materialize([draft], "d1", data_root_url, storage_options, instance)

    files = files_at(data_root_url, storage_options)
    assert set(files) == {"gens/draft/d1/raw.txt", "gens/draft/d1/metadata.json"}
    assert files["gens/draft/d1/raw.txt"] == b"second"
    assert json.loads(files["gens/draft/d1/metadata.json"])["model_id"] == "m2"
    assert "parsed_bytes" not in output_metadata(run, "draft")

    outputs["d1"] = {"metadata": {"task_id": "t1"}, "raw": "third"}  # no template, no model
    with pytest.raises(InvalidMetadata, match="template_id"):
        materialize([draft], "d1", data_root_url, storage_options, instance)
    assert files_at(data_root_url, storage_options) == files  # refused before any write


def error_chain(result: dg.ExecuteInProcessResult) -> str:
    """The step failure's error and its causes, as Dagster recorded them."""
    [failure] = [event for event in result.all_events if event.is_step_failure]
    error = failure.step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "".join(messages)


def test_essay_with_a_missing_draft_fails_its_run_and_writes_nothing(
    data_root_url: str, storage_options: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["e1"]))
    def essay() -> dict[str, Any]:
        return {"metadata": {**META, "parent_gen_id": "d_gone"}, "raw": "an orphan"}

    result = materialize(
        [essay], "e1", data_root_url, storage_options, instance, raise_on_error=False
    )
    assert not result.success
    assert "ParentNotFound: essay e1: parent draft d_gone is not in the store" in error_chain(
        result
    )
    with pytest.raises(ParentNotFound, match="write the draft first"):
        materialize([essay], "e1", data_root_url, storage_options, instance)
    assert files_at(data_root_url, storage_options) == {}


def test_load_input_hands_the_upstream_partitions_generations(
    data_root_url: str, storage_options: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    """A draft asset keyed by its step name (its stage from ``gens_stage``), an essay per
    draft through a partition mapping, and a report over every draft at once."""
    drafts = dg.StaticPartitionsDefinition(["d1", "d2"])
    essays = dg.StaticPartitionsDefinition(["e1", "e2"])
    reported: list[dict[str, Generation]] = []

    @dg.asset(key=["llm", "brainstorm"], partitions_def=drafts, metadata={"gens_stage": "draft"})
    def brainstorm(context: dg.AssetExecutionContext) -> dict[str, Any]:
        return {"metadata": META, "parsed": f"ideas {context.partition_key}"}

    mapping = dg.StaticPartitionMapping({"d1": "e1", "d2": "e2"})

    @dg.asset(
        key_prefix="llm",
        partitions_def=essays,
        ins={"draft": dg.AssetIn(["llm", "brainstorm"], partition_mapping=mapping)},
    )
    def essay(draft: Generation) -> dict[str, Any]:
        return {
            "metadata": {**META, "parent_gen_id": draft.gen_id},
            "parsed": f"essay on {draft.parsed_text}",
        }

    @dg.asset(ins={"drafts": dg.AssetIn(["llm", "brainstorm"])})
    def report(drafts: dict[str, Generation]) -> None:
        reported.append(drafts)

    assets = [brainstorm, essay, report]
    for key in ("d1", "d2"):
        materialize(assets, key, data_root_url, storage_options, instance, only=brainstorm)
    for key in ("e1", "e2"):
        materialize(assets, key, data_root_url, storage_options, instance, only=essay)
    dg.materialize(
        assets,
        selection=[report],
        resources=resources(data_root_url, storage_options),
        instance=instance,
    )

    files = files_at(data_root_url, storage_options)
    assert files["gens/essay/e2/parsed.txt"] == b"essay on ideas d2"
    assert json.loads(files["gens/essay/e2/metadata.json"])["parent_gen_id"] == "d2"
    [drafts_seen] = reported
    assert {g: gen.parsed_text for g, gen in drafts_seen.items()} == {
        "d1": "ideas d1",
        "d2": "ideas d2",
    }


def test_load_input_refuses_a_missing_or_unfinished_partition(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = str(tmp_path / "data")
    drafts = dg.StaticPartitionsDefinition(["d1"])

    @dg.asset(partitions_def=drafts)
    def draft() -> dict[str, Any]:
        return {"metadata": META, "raw": "r"}

    @dg.asset(partitions_def=drafts, metadata={"gens_stage": "essay"})
    def essay_of(draft: Generation) -> dict[str, Any]:
        return {"metadata": {**META, "parent_gen_id": draft.gen_id}, "raw": "e"}

    with pytest.raises(GenerationNotFound, match="no draft generation d1"):
        materialize([draft, essay_of], "d1", root, {}, instance, only=essay_of)
    # A write that never finished: a text, no metadata.json (the commit).
    (tmp_path / "data/gens/draft/d1").mkdir(parents=True)
    (tmp_path / "data/gens/draft/d1/raw.txt").write_text("half")
    with pytest.raises(GenerationNotFound, match=r"draft d1 not committed \(no metadata.json"):
        materialize([draft, essay_of], "d1", root, {}, instance, only=essay_of)
    assert not (tmp_path / "data/gens/essay").exists()


def _returning(
    value: object, *keys: str, name: str = "draft", metadata: dict[str, Any] | None = None
) -> dg.AssetsDefinition:
    """An asset that returns ``value``, partitioned by ``keys`` (unpartitioned: none)."""
    partitions = dg.StaticPartitionsDefinition(list(keys)) if keys else None

    @dg.asset(name=name, partitions_def=partitions, metadata=metadata)
    def asset() -> Any:
        return value

    return asset


@pytest.mark.parametrize(
    ("asset", "error", "match"),
    [
        (
            _returning({"metadata": META}, "d1", name="notes"),
            UnknownStage,
            "asset notes: the last part of its key, 'notes', is not a stage",
        ),
        (
            _returning({"metadata": META}, "d1", metadata={"gens_stage": "poem"}),
            UnknownStage,
            "asset draft: metadata gens_stage='poem' is not a stage",
        ),
        (_returning({"metadata": META}), ValueError, "asset draft is not partitioned"),
        (_returning("text", "d1"), TypeError, "returned str; GenerationIOManager stores a dict"),
        (
            _returning({"metadata": META, "text": "x"}, "d1"),
            TypeError,
            "unexpected key.s. text in its output",
        ),
        (_returning({"raw": "x"}, "d1"), InvalidMetadata, "its output has no 'metadata'"),
        (_returning({"metadata": {"task_id": "t"}}, "d1"), InvalidMetadata, "template_id"),
        (_returning({"metadata": META}, "a b"), InvalidGenId, "a b"),
    ],
    ids=[
        "key-not-a-stage",
        "bad-gens-stage",
        "unpartitioned",
        "not-a-dict",
        "unknown-key",
        "no-metadata",
        "store-rejects-metadata",
        "partition-key-not-a-gen-id",
    ],
)
def test_handle_output_refuses_what_is_not_a_generation(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    asset: dg.AssetsDefinition,
    error: type[Exception],
    match: str,
) -> None:
    root = str(tmp_path / "data")
    partitions = asset.partitions_def
    key = None if partitions is None else partitions.get_partition_keys()[0]
    with pytest.raises(error, match=match):
        dg.materialize([asset], partition_key=key, resources=resources(root, {}), instance=instance)
    assert not (tmp_path / "data").exists()


def test_cohort_partitions(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    rows = [("essay", "e2"), ("draft", "d1"), ("essay", "e1")]
    write_membership(root, "c1", rows)
    assert cohort_partitions(root, "c1", "essay") == ["e2", "e1"]
    assert cohort_partitions(root, "c1", "evaluation") == []
    with pytest.raises(UnknownStage):
        cohort_partitions(root, "c1", "essays")
    with pytest.raises(CohortNotFound, match="known cohorts: c1"):
        cohort_partitions(root, "c2", "essay")


def test_cohort_partitions_feed_a_dynamic_partitions_definition(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    root = str(tmp_path / "data")
    write_membership(root, "c1", [("draft", "d1"), ("draft", "d2")])
    gen_ids = dg.DynamicPartitionsDefinition(name="draft_gen_ids")

    @dg.asset(partitions_def=gen_ids)
    def draft(context: dg.AssetExecutionContext) -> dict[str, Any]:
        return {"metadata": META, "raw": f"draft {context.partition_key}"}

    instance.add_dynamic_partitions("draft_gen_ids", cohort_partitions(root, "c1", "draft"))
    materialize([draft], "d2", root, {}, instance)
    assert (tmp_path / "data/gens/draft/d2/raw.txt").read_text() == "draft d2"
    assert instance.get_dynamic_partitions("draft_gen_ids") == ["d1", "d2"]


def test_import_without_dagster_says_which_extra_to_install() -> None:
    """A process where ``import dagster`` fails (``None`` in ``sys.modules`` makes it)."""
    code = "import sys; sys.modules['dagster'] = None; import gens_fs.dagster"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == "ImportError: gens_fs.dagster needs Dagster: pip install 'gens_fs[dagster]'"


def test_resource_config_is_checked_and_opens_its_root_once() -> None:
    resource = GensStoreResource(data_root="memory://gens-fs-dagster-resource/data")
    assert resource.root() is resource.root()
    assert resource.store().url == "memory://gens-fs-dagster-resource/data/gens"
    with pytest.raises(Exception, match="engine"):
        GensStoreResource(data_root="x", engine="ftp")  # type: ignore[arg-type]


def test_resource_and_io_manager_in_a_multiprocess_run(
    tmp_path: Path, bucket: str, s3_options: dict[str, Any]
) -> None:
    """Each step in a process of its own, the job rebuilt there from tests/dagster_defs.py
    and the resource and IO manager from the run config, against the moto server."""
    root = f"s3://{bucket}/data"
    config = {"config": {"data_root": root, "storage_options": s3_options}}
    run_config = {"resources": {"gens": config, "io_manager": config}}
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.execute_job(
            dg.reconstructable(generations_job),
            instance=instance,
            run_config=run_config,
            tags={"dagster/partition": "x1"},
        )
        assert result.success

    store = GensStore(f"{root}/gens", storage_options=s3_options)
    stages = ("draft", "essay")
    generations = {stage: store.load(stage, "x1") for stage in stages}
    assert generations["essay"].raw_text == "essay on draft x1"
    pids = {gen.metadata.to_dict()["pid"] for gen in generations.values() if gen.metadata}
    assert len(pids) == 2 and os.getpid() not in pids
    assert set(files_at(root, s3_options)) == {
        f"gens/{stage}/x1/{name}" for stage in stages for name in ("raw.txt", "metadata.json")
    }
