"""Dask for stores one machine handles too slowly (``pip install 'gens_fs[dask]'``):
generations as a Dask DataFrame (:func:`read_generations`), and :func:`sync`, which is
:func:`gens_fs.sync` with its listing and copies run as tasks on a ``distributed`` cluster
(see :mod:`gens_fs.dask_sync`).

:func:`read_generations` lists the stage once, in this process, then builds the DataFrame
with ``dask.dataframe.from_map`` over batches of ``partition_size`` gen_ids: each partition
is one batched read (:func:`gens_fs.tables.read_batch`) on a worker, so the graph has one
task per partition, never one per file. Its columns are :func:`gens_fs.to_arrow`'s; its
index is the row number, as :func:`gens_fs.to_pandas`'s, with known divisions. Select
columns first (``df[["gen_id", "model_id"]]``) and the partitions read less: Dask hands them
the columns, and a partition then reads no text and no ancestor it does not need.

On a ``distributed`` cluster each task carries the data root and its storage options
(pickled), and opens the storage on its worker. A ``memory://`` root lives in one process:
workers in other processes see an empty one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gens_fs.dask_sync import ClusterUnavailable, sync
from gens_fs.data_root import DataRoot
from gens_fs.errors import MissingExtra
from gens_fs.tables import Listed, StageTable, TableSpec, TextsArg, read_batch

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

__all__ = ["ClusterUnavailable", "read_generations", "sync"]

PARTITION_SIZE = 1000


def read_generations(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    stage: str,
    cohort: str | None = None,
    lineage: bool = False,
    texts: TextsArg = ("parsed",),
    storage_options: Mapping[str, Any] | None = None,
    partition_size: int = PARTITION_SIZE,
) -> dd.DataFrame:
    """The rows of :func:`gens_fs.to_pandas` (same arguments) as a lazy Dask DataFrame of
    about ``len / partition_size`` partitions. Listing the stage happens here, now; reading
    the generations, when the DataFrame is computed."""
    if partition_size < 1:
        raise ValueError(f"partition_size must be at least 1, not {partition_size}")
    dask = _import_dask()
    table = StageTable(
        data_root,
        stage=stage,
        cohort=cohort,
        lineage=lineage,
        texts=texts,
        storage_options=storage_options,
    )
    meta = table.spec.schema().empty_table().to_pandas()
    offsets = list(range(0, len(table.listed), partition_size))
    chunks = [table.listed[start : start + partition_size] for start in offsets]
    # Dask would convert the string columns to its own dtype (pd.NA for missing values);
    # left as the partitions make them, they are to_pandas's, whatever the pandas version.
    with dask.config.set({"dataframe.convert-string": False}):
        if not chunks:
            frame: dd.DataFrame = dask.dataframe.from_pandas(meta, npartitions=1)
            return frame
        frame = dask.dataframe.from_map(
            Partition(table.root, table.spec),
            chunks,
            offsets,
            meta=meta,
            divisions=(*offsets, len(table.listed) - 1),
            label=f"read-generations-{stage}",
            enforce_metadata=True,
        )
    return frame


@dataclass(frozen=True)
class Partition:
    """What a task runs: read one batch of generations, as a pandas DataFrame whose index
    starts at ``offset``; with ``columns`` (Dask's projection) only those."""

    root: DataRoot
    spec: TableSpec

    def __call__(
        self, listed: Sequence[Listed], offset: int, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        import pandas

        wanted = None if columns is None else [columns] if isinstance(columns, str) else columns
        spec = self.spec if wanted is None else self.spec.narrowed(wanted)
        frame = read_batch(self.root, spec, listed).to_pandas()
        frame.index = pandas.RangeIndex(offset, offset + len(frame))
        return frame if wanted is None else frame[list(wanted)]


def _import_dask() -> Any:
    """The ``dask`` package with its ``dataframe`` loaded, or ``MissingExtra``."""
    try:
        import dask.dataframe
    except ImportError:
        raise MissingExtra(
            "gens_fs.dask needs dask[dataframe]: pip install 'gens_fs[dask]'"
        ) from None
    return dask
