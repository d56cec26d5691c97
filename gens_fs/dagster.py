"""Dagster integration: the store as a resource, and an IO manager for generation assets.

``pip install 'gens_fs[dagster]'``. Three pieces, for a pipeline with one asset per stage,
partitioned by gen_id (the partition key *is* the gen_id):

- :class:`GensStoreResource`, a ``ConfigurableResource`` that opens a data root
  (``store()``, ``root()``), for assets that read or write generations themselves;
- :class:`GenerationIOManager`, a ``ConfigurableIOManager`` that writes an asset's output
  (a dict: ``metadata`` and any of ``raw``, ``parsed``, ``prompt``) as the generation of
  its partition, and loads an upstream partition's :class:`~gens_fs.Generation`;
- :func:`cohort_partitions`, a cohort's gen_ids for a stage, for a partitions definition.

Both classes are plain config (a URL, storage options, an engine), so Dagster can build
them anew in each process of a multiprocess run; each opens its data root once per
process, on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

try:
    import dagster as dg
except ImportError as exc:  # the extra is optional; say which one to install
    raise ImportError("gens_fs.dagster needs Dagster: pip install 'gens_fs[dagster]'") from exc
from pydantic import Field, PrivateAttr

from gens_fs import (
    DataRoot,
    Generation,
    GenerationMetadata,
    GenerationNotFound,
    GensStore,
    InvalidMetadata,
    UnknownStage,
    read_membership,
)
from gens_fs.layout import METADATA_FILE, STAGES, generation_dir, join, validate_stage

__all__ = [
    "STAGE_METADATA_KEY",
    "GenerationIOManager",
    "GensStoreResource",
    "cohort_partitions",
]

# The asset metadata key that names an asset's stage when its key does not end in one.
STAGE_METADATA_KEY = "gens_stage"
# The keys of the dict an asset returns to GenerationIOManager: GensStore.write's arguments.
OUTPUT_KEYS = ("metadata", "raw", "parsed", "prompt")

# The config both classes take, with the help Dagster's UI shows for each field.
DataRootField = Annotated[
    str,
    Field(
        description="The data root (the folder that holds gens/ and cohorts/): a local path "
        "or a URL (s3://bucket/prefix, az://container/prefix, memory://name)."
    ),
]
# ``Any | None``, not ``Any``: Dagster's config refuses a null member of a plain map, and
# fsspec options hold them (``token: None``).
StorageOptionsField = Annotated[
    dict[str, Any | None],
    Field(
        default_factory=dict,
        description="fsspec storage options, as GensStore takes them (S3: key, secret, "
        "client_kwargs.endpoint_url, ...); none: the standard environment (AWS_PROFILE, ...).",
    ),
]
Engine = Literal["fsspec", "obstore"]
EngineField = Annotated[
    Engine,
    Field(description="fsspec, or obstore (pip install 'gens_fs[obstore]')."),
]


def _open(data_root: str, storage_options: Mapping[str, Any | None], engine: Engine) -> DataRoot:
    return DataRoot(data_root, storage_options=dict(storage_options) or None, engine=engine)


# Unparametrized, as Dagster documents it: its parameter is the resource's own type, and
# subscripting the pydantic generic would build another model class.
class GensStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A gens_fs data root as a Dagster resource: ``store()`` for generations, ``root()``
    for cohorts too. Opened on first use, once per process (every process of a
    multiprocess run builds its own from this config)."""

    data_root: DataRootField
    storage_options: StorageOptionsField
    engine: EngineField = "fsspec"

    _root: DataRoot | None = PrivateAttr(default=None)

    def root(self) -> DataRoot:
        """The data root: memberships (``read_membership``, ``write_membership``), ``store()``."""
        if self._root is None:
            self._root = _open(self.data_root, self.storage_options, self.engine)
        return self._root

    def store(self) -> GensStore:
        """The data root's ``gens/`` store."""
        return self.root().store()


class GenerationIOManager(dg.ConfigurableIOManager):
    """Stores each partition of a generation asset as the generation whose gen_id is the
    partition key, under ``gens/<stage>/<gen_id>/`` of ``data_root``.

    The stage is the asset's ``metadata["gens_stage"]`` when set, else the last part of its
    asset key (which must then be ``draft``, ``essay`` or ``evaluation``).

    Output: a dict with ``metadata`` (required) and any of ``raw``, ``parsed``, ``prompt``,
    written by ``GensStore.write(..., overwrite=True)``: the store's checks first (an
    essay's draft, an evaluation's essay must be committed), then the texts, then
    ``metadata.json``; a re-materialized partition replaces its generation (files the new
    output does not give are removed). The output's Dagster metadata: ``gen_id``,
    ``stage``, ``parent_gen_id`` (when set), ``location`` and each file's size in bytes.

    Input: the upstream partition's :class:`~gens_fs.Generation`; for several upstream
    partitions (or an input annotated as a ``dict``), ``{gen_id: Generation}`` in one batch.
    A partition that is missing or not committed is ``GenerationNotFound``.

    Errors are gens_fs's typed errors (``ParentNotFound``, ``InvalidMetadata``, ...) and fail
    the step with their message. The output's shape and the store's checks come before the
    first write, so an output they refuse changes nothing: no new generation, and a
    partition materialized before keeps its generation.
    """

    data_root: DataRootField
    storage_options: StorageOptionsField
    engine: EngineField = "fsspec"

    _root: DataRoot | None = PrivateAttr(default=None)

    def _store(self) -> GensStore:
        if self._root is None:
            self._root = _open(self.data_root, self.storage_options, self.engine)
        return self._root.store()

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        asset = _asset_name(context)
        stage = _asset_stage(context.asset_key, context.definition_metadata)
        gen_id = _output_gen_id(context, asset)
        fields = _write_arguments(obj, asset, stage, gen_id)
        store = self._store()
        generation = store.write(stage, gen_id, overwrite=True, **fields)
        context.add_output_metadata(_output_metadata(store, generation))

    def load_input(self, context: dg.InputContext) -> Generation | dict[str, Generation]:
        upstream = context.upstream_output
        if not context.has_asset_key or upstream is None:
            raise ValueError(
                "GenerationIOManager loads the partitions of generation assets; this input "
                "comes from no asset (give it another IO manager)"
            )
        asset = context.asset_key.to_user_string()
        stage = _asset_stage(context.asset_key, upstream.definition_metadata)
        if not context.has_asset_partitions:
            raise ValueError(_not_partitioned(asset))
        gen_ids = list(context.asset_partition_keys)
        store = self._store()
        if len(gen_ids) == 1 and not _wants_dict(context):
            generation = store.load(stage, gen_ids[0])
            _require_committed(store, stage, [generation])
            return generation
        generations = store.load_many(stage, gen_ids)
        _require_committed(store, stage, generations.values())
        return generations


def cohort_partitions(
    data_root: str | os.PathLike[str],
    cohort: str,
    stage: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """The gen_ids a cohort's ``membership.csv`` lists for ``stage``, in the file's order:
    partition keys for a ``StaticPartitionsDefinition``, or to add to a
    ``DynamicPartitionsDefinition``. One read (one GET on S3); ``CohortNotFound`` when the
    cohort has no ``membership.csv``, ``UnknownStage`` for a stage that is not one."""
    validate_stage(stage)
    rows = read_membership(data_root, cohort, storage_options=storage_options)
    return [row.gen_id for row in rows if row.stage == stage]


def _asset_stage(asset_key: dg.AssetKey, definition_metadata: Mapping[str, Any] | None) -> str:
    """The stage an asset's partitions are stored in: its ``gens_stage`` metadata, else the
    last part of its key. ``UnknownStage`` when neither names a stage."""
    declared = (definition_metadata or {}).get(STAGE_METADATA_KEY)
    asset = asset_key.to_user_string()
    if declared is not None:
        value = declared.value if isinstance(declared, dg.MetadataValue) else declared
        if value not in STAGES:
            raise UnknownStage(
                f"asset {asset}: metadata {STAGE_METADATA_KEY}={value!r} is not a stage "
                f"(one of {', '.join(STAGES)})"
            )
        return str(value)
    last = asset_key.path[-1]
    if last not in STAGES:
        raise UnknownStage(
            f"asset {asset}: the last part of its key, {last!r}, is not a stage (one of "
            f"{', '.join(STAGES)}): name the asset after its stage, or set "
            f"metadata={{{STAGE_METADATA_KEY!r}: 'essay'}} on it"
        )
    return last


def _asset_name(context: dg.OutputContext) -> str:
    if not context.has_asset_key:
        raise ValueError(
            "GenerationIOManager stores the partitions of generation assets; this output "
            "belongs to no asset (give it another IO manager)"
        )
    return str(context.asset_key.to_user_string())


def _not_partitioned(asset: str) -> str:
    return (
        f"asset {asset} is not partitioned: GenerationIOManager stores one generation per "
        "partition, whose key is the gen_id (partition the asset by its gen_ids, e.g. "
        "StaticPartitionsDefinition(cohort_partitions(data_root, cohort, stage)))"
    )


def _output_gen_id(context: dg.OutputContext, asset: str) -> str:
    if not context.has_asset_partitions:
        raise ValueError(_not_partitioned(asset))
    keys = context.asset_partition_keys
    if len(keys) != 1:
        raise ValueError(
            f"asset {asset}: one run wrote {len(keys)} partitions at once; "
            "GenerationIOManager stores one generation per partition (launch one run per "
            "partition, not a single-run backfill)"
        )
    return str(keys[0])


def _write_arguments(obj: object, asset: str, stage: str, gen_id: str) -> dict[str, Any]:
    """The asset's output as ``GensStore.write`` keyword arguments, its shape checked."""
    expected = (
        "a dict with 'metadata' and any of 'raw', 'parsed', 'prompt' (annotate the asset "
        "'-> None' if it writes its generations itself)"
    )
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"asset {asset}, {stage} {gen_id}: returned {type(obj).__name__}; "
            f"GenerationIOManager stores {expected}"
        )
    unknown = sorted(str(key) for key in obj if key not in OUTPUT_KEYS)
    if unknown:
        raise TypeError(
            f"asset {asset}, {stage} {gen_id}: unexpected key(s) {', '.join(unknown)} in "
            f"its output; GenerationIOManager stores {expected}"
        )
    if obj.get("metadata") is None:
        raise InvalidMetadata(
            f"asset {asset}, {stage} {gen_id}: its output has no 'metadata' (task_id, "
            "template_id, model_id, and parent_gen_id for an essay or evaluation)"
        )
    return dict(obj)


def _output_metadata(store: GensStore, generation: Generation) -> dict[str, Any]:
    """What Dagster shows for a materialized partition: which generation, where, how big."""
    stage, gen_id = generation.stage, generation.gen_id
    out: dict[str, Any] = {
        "gen_id": gen_id,
        "stage": stage,
        "location": dg.MetadataValue.path(join(store.url, generation_dir(stage, gen_id))),
    }
    if generation.parent_gen_id is not None:
        out["parent_gen_id"] = generation.parent_gen_id
    texts = {"raw": generation.raw_text, "parsed": generation.parsed_text,
             "prompt": generation.prompt_text}  # fmt: skip
    for name, text in texts.items():
        if text is not None:
            out[f"{name}_bytes"] = len(text.encode("utf-8"))
    metadata = generation.metadata
    assert isinstance(metadata, GenerationMetadata)  # write returns what it committed
    out["metadata_bytes"] = len(metadata.to_json().encode("utf-8"))
    return out


def _wants_dict(context: dg.InputContext) -> bool:
    """True when the input is annotated as a dict (or a Mapping): one partition or many."""
    hint = context.dagster_type.typing_type
    # Exactly dict or Mapping: a Generation is a Mapping too (its legacy dict view).
    return getattr(hint, "__origin__", hint) in (dict, Mapping)


def _require_committed(store: GensStore, stage: str, generations: Iterable[Generation]) -> None:
    """``GenerationNotFound`` naming the generations whose write never finished (texts but
    no ``metadata.json``): a downstream asset must not build on them."""
    unfinished = [gen.gen_id for gen in generations if not gen.is_committed]
    if unfinished:
        where = join(store.url, generation_dir(stage, unfinished[0]))
        raise GenerationNotFound(
            f"{stage} {', '.join(unfinished)} not committed (no {METADATA_FILE} at {where}"
            f"{' and the others' if len(unfinished) > 1 else ''}: its write did not finish); "
            "materialize the partition again"
        )
