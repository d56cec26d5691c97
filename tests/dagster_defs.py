"""Dagster definitions for the multiprocess test (tests/test_dagster.py).

They live in an importable module because the multiprocess executor runs each step in a
process of its own, which imports this module again (``reconstructable(generations_job)``)
and builds the resource and the IO manager from the run's config: nothing but config
crosses the process boundary. Each generation records the id of the process that made it,
so the test can tell the steps ran apart.
"""

# No `from __future__ import annotations`: Dagster reads the assets' annotations at
# definition time (the context's type, an input's Generation), as objects, not strings.

import os
from typing import Any

import dagster as dg

from gens_fs import Generation
from gens_fs.dagster import GenerationIOManager, GensStoreResource

# One gen_id per partition, the same in both stages (gen_ids are per stage), so one run of a
# partition materializes a draft and its essay.
GEN_IDS = dg.StaticPartitionsDefinition(["x1", "x2"])


def _metadata(parent_gen_id: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"task_id": "t", "template_id": "tpl", "model_id": "m"}
    if parent_gen_id is not None:
        meta["parent_gen_id"] = parent_gen_id
    meta["pid"] = os.getpid()
    return meta


@dg.asset(partitions_def=GEN_IDS)
def draft(context: dg.AssetExecutionContext) -> dict[str, Any]:
    return {"metadata": _metadata(), "raw": f"draft {context.partition_key}"}


@dg.asset(partitions_def=GEN_IDS)
def essay(draft: Generation, gens: GensStoreResource) -> dict[str, Any]:
    """Gets its draft from the IO manager, and reads it again through the resource."""
    stored = gens.store().load("draft", draft.gen_id)
    assert stored == draft
    return {"metadata": _metadata(draft.gen_id), "raw": f"essay on {stored.raw_text}"}


defs = dg.Definitions(
    assets=[draft, essay],
    jobs=[dg.define_asset_job("generations", executor_def=dg.multiprocess_executor)],
    resources={
        "gens": GensStoreResource.configure_at_launch(),
        "io_manager": GenerationIOManager.configure_at_launch(),
    },
)


def generations_job() -> dg.JobDefinition:
    return defs.resolve_job_def("generations")
