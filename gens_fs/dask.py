"""Dask for stores one machine handles too slowly (``pip install 'gens_fs[dask]'``):
generations as a Dask DataFrame (:func:`read_generations`), and :func:`sync`, which is
:func:`gens_fs.sync` with its listing and copies run as tasks on a ``distributed`` cluster
(see :mod:`gens_fs.dask_sync`).

:func:`read_generations` lists the stage once, in this process, then builds the DataFrame
with ``dask.dataframe.from_map`` over batches of ``partition_size`` gen_ids: each partition
is one batched read (:func:`gens_fs.tables.read_batch`, without lineage) on a worker. Its
columns are :func:`gens_fs.to_arrow`'s; its index is the row number, as
:func:`gens_fs.to_pandas`'s, with known divisions (the listing's offsets).

With ``lineage``, each ancestor's ``metadata.json`` is read once per compute, in tasks of
its own, then joined to the rows, with Dask's own operations:

1. ``links``: the partitions' ``parent_gen_id`` column, a projection of the rows' read
   (Dask reads once for both: a projection takes the union of what its users need).
2. For each ancestor stage, nearest first: the distinct gen_ids the stage below names
   (``drop_duplicates``, ``split_out`` the rows' partition count: at most
   ``partition_size`` ids a partition), then ``map_partitions`` reading each partition's
   ancestors in one batch of GETs (:func:`gens_fs.tables.read_ancestors`): the committed
   ones with their own ``parent_gen_id``, the next stage's ids.
3. The stages joined from the top (essays left-joined to their drafts), then the links
   left-joined to that on the parent's gen_id: hash joins (shuffles), ``broadcast=False``.
4. Back to the rows' order and partitions: ``set_index`` on the row number with the rows'
   divisions (a shuffle by range; nothing computed to find them), each partition's lineage
   columns made by :func:`gens_fs.tables.lineage_columns` (the one place of the rule for
   a missing ancestor), and ``dask.dataframe.concat([rows, lineage], axis=1)``, partition
   beside partition: the rows themselves never move.

Why this shape, for 10^7 rows on a cluster: every step has a few tasks per partition
(10^4 partitions of 1,000: about 2 x 10^5 tasks), each ancestor is read by one task, and
what crosses the network is the links and the lineage columns (a row number and a few
gen_ids, templates and models a row), never a text or a ``metadata`` column. Refused:

- a broadcast join (each rows' partition against every ancestors' partition): partitions
  squared tasks, 10^8 at 10^4 partitions;
- one task holding every ancestor, handed to every partition: at 10^7 evaluations about
  5 x 10^6 ancestors (a GB) in one worker's memory, sent to every worker;
- joining the rows themselves (merge, then ``sort_values`` back): every text would cross
  the network twice, and ``sort_values`` computes its quantiles first, a second read of
  the store; ``set_index`` on the listing's own offsets needs no such pass.

Each shuffle is Dask's default: P2P on ``distributed``, its local shuffle on a laptop's
threads. The rows keep their partitions and divisions; a last partition of a single row
(divisions ending ``n - 1, n - 1``) is joined to the one before by the ``concat``.

Select columns first (``df[["gen_id", "model_id"]]``) and the partitions read less: Dask
hands them the columns, so a partition reads no text the selection does not need, and a
selection without a lineage column drops the lineage steps (no ancestor is read).

On a ``distributed`` cluster each task carries the data root and its storage options
(pickled), and opens the storage on its worker. A ``memory://`` root lives in one process:
workers in other processes see an empty one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gens_fs.dask_sync import ClusterUnavailable, sync
from gens_fs.data_root import DataRoot
from gens_fs.errors import MissingExtra
from gens_fs.tables import (
    Ancestor,
    Listed,
    StageTable,
    TableSpec,
    TextsArg,
    import_pyarrow,
    lineage_columns,
    read_ancestors,
    read_batch,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

__all__ = ["ClusterUnavailable", "read_generations", "sync"]

PARTITION_SIZE = 1000
# An ancestor as its read tasks give it: a column each, ``<stage>:<field>`` (apart from
# the table's ``<stage>_<field>`` columns, which follow the rule for a missing one).
_LINK_FIELDS: Final = ("gen_id", "template_id", "model_id", "parent_gen_id")
# The row number, as a column while the links are joined.
_ROW: Final = "gens_fs:row"


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
    spec = table.spec
    offsets = list(range(0, len(table.listed), partition_size))
    chunks = [table.listed[start : start + partition_size] for start in offsets]
    # Dask would convert the string columns to its own dtype (pd.NA for missing values);
    # left as the partitions make them, they are to_pandas's, whatever the pandas version.
    with dask.config.set({"dataframe.convert-string": False}):
        if not chunks:
            empty: dd.DataFrame = dask.dataframe.from_pandas(_frame(spec.columns), npartitions=1)
            return empty
        rows_spec = TableSpec(spec.stage, spec.texts)
        rows: dd.DataFrame = dask.dataframe.from_map(
            Partition(table.root, rows_spec),
            chunks,
            offsets,
            meta=_frame(rows_spec.columns),
            divisions=(*offsets, len(table.listed) - 1),
            label=f"read-generations-{stage}",
            enforce_metadata=True,
        )
        if not spec.ancestors:
            return rows
        frame: dd.DataFrame = dask.dataframe.concat(
            [rows, _lineage(table.root, spec, rows)], axis=1
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


def _lineage(root: DataRoot, spec: TableSpec, rows: dd.DataFrame) -> dd.DataFrame:
    """The lineage columns of ``rows``, partitioned as they are (see the module docstring):
    each ancestor read once, the rows' partitions untouched."""
    links = rows[["parent_gen_id"]]
    named, tables = links["parent_gen_id"], []
    for stage in spec.ancestors:
        distinct = named.map_partitions(_named_ids, meta=named._meta).drop_duplicates(
            split_out=rows.npartitions
        )
        read = distinct.map_partitions(ReadAncestors(root, stage), meta=_frame(_links(stage)))
        tables.append(read)
        named = read[_link(stage, "parent_gen_id")]
    # From the top: each stage's ancestors with the ones above them, keyed by their gen_id.
    ancestry = tables[-1]
    for below, above, table in reversed(
        list(zip(spec.ancestors, spec.ancestors[1:], tables, strict=False))
    ):
        ancestry = table.merge(
            ancestry,
            how="left",
            left_on=_link(below, "parent_gen_id"),
            right_on=_link(above, "gen_id"),
            broadcast=False,
        )
    numbered = links.map_partitions(_numbered, meta=_numbered(links._meta))
    joined = numbered.merge(
        ancestry,
        how="left",
        left_on="parent_gen_id",
        right_on=_link(spec.ancestors[0], "gen_id"),
        broadcast=False,
    )
    ordered = joined.set_index(_ROW, divisions=list(rows.divisions))
    columns = tuple(spec.columns[len(rows.columns) :])
    lineage: dd.DataFrame = ordered.map_partitions(
        LineageColumns(spec.ancestors, columns), meta=_frame(columns)
    )
    return lineage


def _link(stage: str, field: str) -> str:
    """The column of an ancestor's ``field`` as its read task gives it."""
    return f"{stage}:{field}"


def _links(stage: str) -> list[str]:
    return [_link(stage, field) for field in _LINK_FIELDS]


def _numbered(links: pd.DataFrame) -> pd.DataFrame:
    """The row number as a column, to join on the parent and come back to the row."""
    return links.reset_index(names=_ROW)


def _named_ids(ids: pd.Series) -> pd.Series:
    """The gen_ids a stage names, without the nulls (a draft names no parent)."""
    return ids[ids.map(lambda g: isinstance(g, str) and g != "")]


@dataclass(frozen=True)
class ReadAncestors:
    """What a task runs: the committed ones of these ``stage`` gen_ids, one batch of GETs
    of their ``metadata.json``, a row each (the ``_links(stage)`` columns)."""

    root: DataRoot
    stage: str

    def __call__(self, ids: pd.Series) -> pd.DataFrame:
        found = read_ancestors(self.root, self.stage, ids.tolist())
        return _frame(_links(self.stage), [(g, *a) for g, a in found.items() if a is not None])


@dataclass(frozen=True)
class LineageColumns:
    """What a task runs: a partition of links joined to their ancestors (the ``_links``
    columns, null where none joined) to the table's lineage ``columns``, by
    :func:`gens_fs.tables.lineage_columns`."""

    stages: tuple[str, ...]
    columns: tuple[str, ...]

    def __call__(self, joined: pd.DataFrame) -> pd.DataFrame:
        values = {c: joined[c].tolist() for c in joined.columns}
        out = []
        for i, parent in enumerate(values["parent_gen_id"]):
            known = dict(j for stage in self.stages if (j := _joined(values, stage, i)))
            found = lineage_columns(self.stages, _text(parent) or "", _lookup(known))
            out.append([found[c] for c in self.columns])
        frame = _frame(self.columns, out)
        frame.index = joined.index.rename(None)
        return frame


def _joined(
    values: Mapping[str, list[Any]], stage: str, i: int
) -> tuple[tuple[str, str], Ancestor] | None:
    """Row ``i``'s ancestor of ``stage`` as joined, or ``None`` when none joined (not
    committed, or nothing named it): a committed one's ``parent_gen_id`` is a string."""
    gen_id, template_id, model_id, parent = (values[c][i] for c in _links(stage))
    if not isinstance(parent, str):
        return None
    return (stage, gen_id), Ancestor(_text(template_id), _text(model_id), parent)


def _lookup(known: dict[tuple[str, str], Ancestor]) -> Callable[[str, str], Ancestor | None]:
    return lambda stage, gen_id: known.get((stage, gen_id))


def _text(value: object) -> str | None:
    """A joined value: a string, or ``None`` for a null (a join fills them with NaN)."""
    return value if isinstance(value, str) else None


def _frame(columns: Sequence[str], rows: Sequence[Sequence[str | None]] = ()) -> pd.DataFrame:
    """String columns as ``to_pandas`` makes them (through Arrow: their dtype is whatever
    this pandas makes of an Arrow string), with these rows."""
    pa = import_pyarrow()
    schema = pa.schema([(name, pa.string()) for name in columns])
    arrays = [pa.array(list(column), pa.string()) for column in zip(*rows, strict=True)]
    if not rows:
        return schema.empty_table().to_pandas()
    return pa.Table.from_arrays(arrays, schema=schema).to_pandas()


def _import_dask() -> Any:
    """The ``dask`` package with its ``dataframe`` loaded, or ``MissingExtra``."""
    try:
        import dask.dataframe
    except ImportError:
        raise MissingExtra(
            "gens_fs.dask needs dask[dataframe]: pip install 'gens_fs[dask]'"
        ) from None
    return dask
