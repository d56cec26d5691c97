"""Request budgets on S3, counted by middleware around the moto server's app."""

from __future__ import annotations

from gens_fs import GensStore
from gens_fs.testing.s3_middleware import S3Middleware

META = {"task_id": "t", "template_id": "x", "model_id": "m"}


def seed(store: GensStore, drafts: int) -> None:
    for i in range(drafts):
        store.write("draft", f"d{i}", metadata=META, raw="r", parsed="p", prompt="q")


def test_load_is_one_get_per_file_and_no_head(
    counted_store: GensStore, s3_middleware: S3Middleware
) -> None:
    seed(counted_store, 1)
    s3_middleware.reset_counts()
    counted_store.load("draft", "d0")
    assert s3_middleware.counts() == {"GET": 4}


def test_load_many_is_at_most_four_gets_per_generation(
    counted_store: GensStore, s3_middleware: S3Middleware
) -> None:
    seed(counted_store, 30)
    s3_middleware.reset_counts()
    gens = counted_store.load_many("draft", [f"d{i}" for i in range(30)])
    assert len(gens) == 30
    assert s3_middleware.counts() == {"GET": 120}


def test_listing_is_one_request_not_one_per_generation(
    counted_store: GensStore, s3_middleware: S3Middleware
) -> None:
    seed(counted_store, 30)
    s3_middleware.reset_counts()
    assert len(counted_store.gen_ids("draft")) == 30
    assert s3_middleware.counts() == {"LIST": 1}


def test_write_costs_one_probe_round_and_one_put_per_file(
    counted_store: GensStore, s3_middleware: S3Middleware
) -> None:
    seed(counted_store, 1)
    s3_middleware.reset_counts()
    counted_store.write(
        "essay", "e1", metadata={**META, "parent_gen_id": "d0"}, raw="r", parsed="p"
    )
    # GET of the parent's and of its own metadata.json (together), 2 texts + the commit.
    assert s3_middleware.counts() == {"GET": 2, "PUT": 3}
    puts = [r.path for r in s3_middleware.log if r.kind == "PUT"]
    assert puts[-1].endswith("/essay/e1/metadata.json")
