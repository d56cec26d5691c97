"""``gens_fs.dask.read_generations`` on ``distributed.LocalCluster(n_workers=2,
processes=True)`` against the moto server: ``compute()`` equals ``to_pandas``, a batched read
per partition on a worker, with lineage each ancestor read once per compute (in tasks of its
own) whichever partitions name it, a graph of a few tasks per partition, and a column
selection reads less."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dask
import fsspec
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream

from gens_fs import DataRoot, InvalidMetadata, to_pandas
from gens_fs.dask import read_generations
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.synthetic import make_store
from tests.legacy import COHORT
from tests.test_tables import META, write_mixed


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes, one thread each; every compute in this module runs there."""
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as connected,
    ):
        yield connected


@pytest.fixture
def synthetic(moto_server: MotoServer, bucket: str) -> str:
    """3 drafts, 6 essays, 18 evaluations in a bucket of the moto server."""
    fs = fsspec.filesystem("s3", **s3_storage_options(moto_server.endpoint_url))
    make_store(fs, f"{bucket}/data", drafts=3, seed=11)
    return f"s3://{bucket}/data"


def test_compute_equals_to_pandas_on_the_cluster(
    client: Client, synthetic: str, s3_options: dict[str, Any]
) -> None:
    options: dict[str, Any] = {
        "stage": "evaluation",
        "lineage": True,
        "texts": ("parsed", "prompt"),
        "storage_options": s3_options,
    }
    frame = read_generations(synthetic, partition_size=5, **options)
    assert frame.npartitions == 4 and frame.divisions == (0, 5, 10, 15, 17)

    with get_task_stream(client) as stream:
        computed = frame.compute()

    expected = to_pandas(synthetic, **options)
    assert len(expected) == 18
    pd.testing.assert_frame_equal(computed, expected)
    # The rows' reads and the ancestors' reads (a task per partition of distinct ids: as
    # many as the rows' partitions at most) ran on the workers of the cluster.
    names = [t["key"][0] for t in stream.data if isinstance(t["key"], tuple)]
    assert sum(n.startswith("read-generations-evaluation") for n in names) == 4
    ancestors = [n for n in names if n.startswith("readancestors")]
    assert 2 <= len(ancestors) <= 2 * 4  # essays and drafts, a task per partition each
    reads = [t for t in stream.data if t["key"][0].startswith(("read-gen", "readancestors"))]
    assert {t["worker"] for t in reads} <= set(client.scheduler_info()["workers"])


def test_the_graph_has_a_few_tasks_per_partition_never_one_per_file(
    client: Client, synthetic: str, s3_options: dict[str, Any]
) -> None:
    def tasks(partition_size: int) -> tuple[int, int]:
        frame = read_generations(
            synthetic,
            stage="evaluation",
            lineage=True,
            storage_options=s3_options,
            partition_size=partition_size,
        )
        return frame.npartitions, len(frame.optimize().__dask_graph__())

    # One partition of 18 evaluations (45 files): the read, the ancestors' reads, the
    # joins, as a few tasks; then about the same number per partition (the reads and each
    # shuffle's steps), however many rows a partition holds.
    partitions, graph = tasks(18)
    assert partitions == 1 and graph <= 10
    for partition_size in (6, 2):
        partitions, graph = tasks(partition_size)
        assert partitions == 18 // partition_size and graph <= 30 * partitions


def test_each_ancestor_is_read_once_whichever_partitions_name_it(
    client: Client, synthetic: str, s3_middleware: S3Middleware
) -> None:
    root = DataRoot(synthetic, storage_options=s3_storage_options(s3_middleware.endpoint_url))
    s3_middleware.reset_counts()

    frame = read_generations(root, stage="evaluation", lineage=True, partition_size=2)
    assert s3_middleware.counts() == {"LIST": 1}  # building it lists, computes nothing
    computed = frame.compute()

    # The minimum, what to_arrow sends: each evaluation's metadata.json and parsed.txt,
    # each of the 6 essays' and 3 drafts' metadata.json once.
    assert s3_middleware.counts() == {"LIST": 1, "GET": 18 * 2 + 6 + 3}
    expected = to_pandas(root, stage="evaluation", lineage=True)
    pd.testing.assert_frame_equal(computed, expected)
    # In 9 partitions of 2 evaluations, every essay's 3 evaluations are in 2 or 3 of them.
    spread = expected.groupby("essay_gen_id").apply(lambda rows: len({i // 2 for i in rows.index}))
    assert frame.npartitions == 9 and min(spread) >= 2


def write_broken_links(root: DataRoot) -> None:
    """Evaluations whose lineage breaks: an essay whose draft is gone (named by two
    evaluations), an essay that never committed (raw.txt only), no parent at all, a parent
    that is not a gen_id. Written behind the store's back: ``write`` refuses them."""
    store = root.store()
    parents = {
        ("essay", "e-half"): "d-gone",
        ("evaluation", "v-half1"): "e-half",
        ("evaluation", "v-half2"): "e-half",
        ("evaluation", "v-raw"): "e-raw",
        ("evaluation", "v-none"): "",
        ("evaluation", "v-bad"): "../up",
    }
    files = {
        store.path(stage, gen_id, "metadata.json"): json.dumps(
            {**META, "parent_gen_id": parent}
        ).encode()
        for (stage, gen_id), parent in parents.items()
    }
    files[store.path("essay", "e-raw", "raw.txt")] = b"never committed"
    root.backend.write_many(files)


def test_legacy_metadata_missing_ancestors_cohort_and_a_data_root(
    client: Client, moto_server: MotoServer, bucket: str, s3_options: dict[str, Any]
) -> None:
    root = write_mixed(f"s3://{bucket}/data", s3_options)
    write_broken_links(root)
    for stage, cohort, partition_size in [
        ("evaluation", None, 1),
        ("evaluation", None, 3),
        ("evaluation", COHORT, 1),
        ("essay", None, 2),
    ]:
        frame = read_generations(
            root, stage=stage, cohort=cohort, lineage=True, partition_size=partition_size
        )
        expected = to_pandas(root, stage=stage, cohort=cohort, lineage=True)
        pd.testing.assert_frame_equal(frame.compute(), expected)
    assert frame.npartitions == 2
    evaluations = to_pandas(root, stage="evaluation", lineage=True).set_index("gen_id")
    lineage = ["essay_gen_id", "essay_model_id", "draft_gen_id", "draft_model_id"]
    # The rule: a missing ancestor keeps the id its child names, nulls; above it, nulls.
    half = evaluations.loc["v-half2", lineage]
    assert half.tolist()[:3] == ["e-half", "m-new", "d-gone"] and pd.isna(half.iloc[3])
    assert evaluations.loc["v-raw", lineage].isna().tolist() == [False, True, True, True]
    assert evaluations.loc["v-none", lineage].isna().all()
    assert evaluations.loc["v-bad", "essay_gen_id"] == "../up"


def test_an_ancestor_that_does_not_parse_is_invalid_metadata(
    client: Client, bucket: str, s3_options: dict[str, Any]
) -> None:
    root = write_mixed(f"s3://{bucket}/data", s3_options)
    store = root.store()
    root.backend.write_many({store.path("draft", "d-new", "metadata.json"): b"{not json"})
    frame = read_generations(root, stage="essay", lineage=True, partition_size=1)
    with pytest.raises(InvalidMetadata, match=r"d-new/metadata\.json"):
        frame.compute()


def test_lineage_on_dask_s_local_scheduler(synthetic: str, s3_options: dict[str, Any]) -> None:
    """Without a cluster (a laptop's threads): the shuffles are Dask's local ones."""
    options: dict[str, Any] = {"stage": "evaluation", "lineage": True}
    # The module's client may be the default one: say which scheduler and shuffle.
    with dask.config.set({"scheduler": "threads", "dataframe.shuffle.method": "tasks"}):
        frame = read_generations(synthetic, storage_options=s3_options, partition_size=4, **options)
        computed = frame.compute()
    expected = to_pandas(synthetic, storage_options=s3_options, **options)
    pd.testing.assert_frame_equal(computed, expected)


def test_a_column_selection_reads_only_what_it_needs(
    client: Client,
    synthetic: str,
    s3_middleware: S3Middleware,
) -> None:
    root = DataRoot(synthetic, storage_options=s3_storage_options(s3_middleware.endpoint_url))
    frame = read_generations(
        root, stage="evaluation", lineage=True, texts=("raw",), partition_size=6
    )
    s3_middleware.reset_counts()

    models = frame[["gen_id", "model_id"]].compute()

    assert list(models.columns) == ["gen_id", "model_id"] and len(models) == 18
    # The 18 metadata.json only: no raw.txt, no ancestor (the listing was done before).
    assert s3_middleware.counts() == {"GET": 18}
    s3_middleware.reset_counts()

    drafts = frame[["gen_id", "draft_model_id"]].compute()

    # The 18 metadata.json, and the 6 essays' and 3 drafts' once: no raw.txt.
    assert s3_middleware.counts() == {"GET": 18 + 6 + 3}
    expected = to_pandas(root, stage="evaluation", lineage=True)
    pd.testing.assert_frame_equal(drafts, expected[["gen_id", "draft_model_id"]])


def test_an_empty_stage_is_an_empty_frame(
    client: Client, bucket: str, s3_options: dict[str, Any]
) -> None:
    frame = read_generations(f"s3://{bucket}/data", stage="draft", storage_options=s3_options)
    computed = frame.compute()
    assert computed.empty and list(computed.columns) == list(
        to_pandas(f"s3://{bucket}/data", stage="draft", storage_options=s3_options).columns
    )


def test_partition_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="partition_size"):
        read_generations("data", stage="draft", partition_size=0)
