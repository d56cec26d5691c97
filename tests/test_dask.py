"""``gens_fs.dask.read_generations`` on ``distributed.LocalCluster(n_workers=2,
processes=True)`` against the moto server: ``compute()`` equals ``to_pandas``, one task per
partition, each a batched read on a worker, and a column selection reads less."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fsspec
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream

from gens_fs import DataRoot, to_pandas
from gens_fs.dask import read_generations
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.synthetic import make_store
from tests.legacy import COHORT
from tests.test_tables import write_mixed


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
    # One task per partition, never one per file.
    assert len(frame.__dask_graph__()) == frame.npartitions

    with get_task_stream(client) as stream:
        computed = frame.compute()

    expected = to_pandas(synthetic, **options)
    assert len(expected) == 18
    pd.testing.assert_frame_equal(computed, expected)
    # Each partition was a task on a worker of the cluster (then one task gathers them).
    reads = [t for t in stream.data if t["key"][0].startswith("read-generations-evaluation")]
    assert sorted(t["key"][1] for t in reads) == [0, 1, 2, 3]
    assert {t["worker"] for t in reads} <= set(client.scheduler_info()["workers"])


def test_legacy_metadata_cohort_and_a_data_root(
    client: Client, moto_server: MotoServer, bucket: str, s3_options: dict[str, Any]
) -> None:
    root = write_mixed(f"s3://{bucket}/data", s3_options)
    for cohort in (None, COHORT):
        frame = read_generations(
            root, stage="evaluation", cohort=cohort, lineage=True, partition_size=1
        )
        expected = to_pandas(root, stage="evaluation", cohort=cohort, lineage=True)
        pd.testing.assert_frame_equal(frame.compute(), expected)
    assert frame.npartitions == 2


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
    drafts = frame["draft_model_id"].compute()
    assert (
        drafts.tolist()
        == to_pandas(root, stage="evaluation", lineage=True)["draft_model_id"].tolist()
    )


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
