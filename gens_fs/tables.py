"""Generations as tables: one row per committed generation of a stage, as an Arrow table or
a pandas DataFrame (``pip install 'gens_fs[tables]'``).

Columns, all strings, null when absent: ``gen_id``, ``stage``, ``parent_gen_id``,
``task_id``, ``template_id``, ``model_id`` (the original pipeline's ``llm_model_id`` too),
one per text asked for (``parsed_text``, ``raw_text``, ``prompt_text``: null when the
generation has no such file), ``metadata`` (the ``metadata.json`` as stored), and with
``lineage``, for each ancestor stage, nearest first: ``<stage>_gen_id``,
``<stage>_template_id``, ``<stage>_model_id``. Rows are sorted by ``gen_id``.

Requests: one listing of the stage (on S3 in parallel shards:
:mod:`gens_fs.backends.sharded`) and, with a cohort, one GET of its ``membership.csv``;
then, a batch of generations at a time, one GET per file read, all in flight at once: each
``metadata.json``, each text asked for that the listing shows (an absent one costs nothing),
and with ``lineage`` each ancestor's ``metadata.json``, read once per table. Never a round
trip per generation. Memory: the listing (about 150 bytes a generation), the ancestors met
so far (about 200 bytes each), and one batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from gens_fs.data_root import DataRoot, open_data_root
from gens_fs.errors import InvalidMetadata, MissingExtra, UndecodableText, UnknownArtifact
from gens_fs.layout import (
    METADATA_FILE,
    PARENT_STAGE,
    PARSED_FILE,
    PROMPT_FILE,
    RAW_FILE,
    is_valid_gen_id,
    stage_folder,
    validate_stage,
)
from gens_fs.listing import list_data_root
from gens_fs.models import GenerationMetadata, parse_metadata_json

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# A text as ``texts=`` names it -> its column and its file.
TEXTS: Final = {
    "parsed": ("parsed_text", PARSED_FILE),
    "raw": ("raw_text", RAW_FILE),
    "prompt": ("prompt_text", PROMPT_FILE),
}
# Generations read per batch: about 2,000 GETs in flight (a metadata.json and a text each),
# a few MB of text in memory.
BATCH_SIZE: Final = 1000
_FIELDS: Final = ("gen_id", "stage", "parent_gen_id", "task_id", "template_id", "model_id")
_ANCESTOR_FIELDS: Final = ("gen_id", "template_id", "model_id")

TextsArg = Sequence[str] | str


class Listed(NamedTuple):
    """A committed generation as the listing shows it: its gen_id and which text files it
    has (file names, in ``TEXTS`` order)."""

    gen_id: str
    texts: tuple[str, ...]


def import_pyarrow() -> Any:
    """pyarrow, or ``MissingExtra`` saying how to install it."""
    try:
        import pyarrow
    except ImportError:
        raise MissingExtra(
            "generation tables need pyarrow: pip install 'gens_fs[tables]'"
        ) from None
    return pyarrow


@dataclass(frozen=True)
class TableSpec:
    """What a table holds: a stage, its texts (``TEXTS`` keys) and the lineage columns."""

    stage: str
    texts: tuple[str, ...] = ("parsed",)
    lineage: bool = False

    @classmethod
    def of(cls, stage: str, texts: TextsArg = ("parsed",), lineage: bool = False) -> TableSpec:
        """Checked: ``UnknownStage``, or ``UnknownArtifact`` for a text not in ``TEXTS``."""
        chosen = (texts,) if isinstance(texts, str) else tuple(texts)
        unknown = [t for t in chosen if t not in TEXTS]
        if unknown:
            raise UnknownArtifact(
                f"unknown text {unknown[0]!r}: expected some of {', '.join(TEXTS)}"
            )
        return cls(validate_stage(stage), tuple(dict.fromkeys(chosen)), lineage)

    @property
    def ancestors(self) -> tuple[str, ...]:
        """The ancestor stages whose columns the table has, nearest first."""
        found: list[str] = []
        stage = PARENT_STAGE[self.stage] if self.lineage else None
        while stage is not None:
            found.append(stage)
            stage = PARENT_STAGE[stage]
        return tuple(found)

    @property
    def columns(self) -> list[str]:
        texts = [TEXTS[t][0] for t in self.texts]
        lineage = [f"{s}_{f}" for s in self.ancestors for f in _ANCESTOR_FIELDS]
        return [*_FIELDS, *texts, "metadata", *lineage]

    def schema(self) -> pa.Schema:
        pa = import_pyarrow()
        return pa.schema([(name, pa.string()) for name in self.columns])

    def narrowed(self, columns: Iterable[str]) -> TableSpec:
        """The spec that reads only what ``columns`` need (no text, no ancestor beyond)."""
        wanted = set(columns)
        texts = tuple(t for t in self.texts if TEXTS[t][0] in wanted)
        lineage = any(f"{s}_{f}" in wanted for s in self.ancestors for f in _ANCESTOR_FIELDS)
        return TableSpec(self.stage, texts, lineage)


def committed(root: DataRoot, stage: str, cohort: str | None = None) -> list[Listed]:
    """The committed generations of ``stage`` (with ``cohort``, its members only), sorted by
    gen_id: one listing of the stage, and one GET of the cohort's ``membership.csv``
    (``CohortNotFound``, ``InvalidMembership``). The one place tables list a store."""
    rows = None if cohort is None else root.read_membership(cohort)
    members = None if rows is None else {r.gen_id for r in rows if r.stage == stage}
    shapes: dict[tuple[str, ...], tuple[str, ...]] = {}  # 8 at most, shared by every row
    found = []
    listing = list_data_root(root.backend, [stage_folder(stage)])
    for (_stage, gen_id), names in listing.generations.items():
        if METADATA_FILE in names and (members is None or gen_id in members):
            texts = tuple(file for _, file in TEXTS.values() if file in names)
            found.append(Listed(gen_id, shapes.setdefault(texts, texts)))
    return found


class StageTable:
    """A stage's committed generations (with ``cohort``, its members), listed when built,
    read a batch at a time (see the module docstring for the columns and requests)."""

    def __init__(
        self,
        data_root: str | os.PathLike[str] | DataRoot,
        *,
        stage: str,
        cohort: str | None = None,
        lineage: bool = False,
        texts: TextsArg = ("parsed",),
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = TableSpec.of(stage, texts, lineage)
        import_pyarrow()  # before the listing: a missing extra is the first thing said
        self.root = open_data_root(data_root, storage_options=storage_options)
        self.listed = committed(self.root, stage, cohort)

    def __len__(self) -> int:
        return len(self.listed)

    def batches(self, batch_size: int = BATCH_SIZE) -> Iterator[pa.RecordBatch]:
        """The table in ``RecordBatch``es of ``batch_size`` generations, in gen_id order;
        each ancestor is read once across batches."""
        ancestors = Ancestors(self.root, self.spec)
        for start in range(0, len(self.listed), batch_size):
            chunk = self.listed[start : start + batch_size]
            yield read_batch(self.root, self.spec, chunk, ancestors)


def read_batch(
    root: DataRoot, spec: TableSpec, listed: Sequence[Listed], ancestors: Ancestors | None = None
) -> pa.RecordBatch:
    """The rows of ``listed`` (from :func:`committed`): one GET per file read, all at once,
    then one batch of GETs per ancestor stage not read yet. A generation uncommitted since
    the listing is left out. ``InvalidMetadata`` and ``UndecodableText`` name the file."""
    pa = import_pyarrow()
    store = root.store()
    wanted = {TEXTS[t][1] for t in spec.texts}
    paths = {
        (gen_id, name): store.path(spec.stage, gen_id, name)
        for gen_id, texts in listed
        for name in (METADATA_FILE, *(t for t in texts if t in wanted))
    }
    data = root.backend.read_many(list(paths.values()))
    columns: dict[str, list[str | None]] = {name: [] for name in spec.columns}
    metas: list[GenerationMetadata] = []
    for gen_id, _ in listed:
        stored = data[paths[gen_id, METADATA_FILE]]
        if stored is None:
            continue
        where = root.backend.url(paths[gen_id, METADATA_FILE])
        meta = parse_metadata_json(stored, where=where)
        metas.append(meta)
        parent = meta.parent_gen_id or None
        values = (gen_id, spec.stage, parent, meta.task_id, meta.template_id, meta.model_id)
        for field, value in zip(_FIELDS, values, strict=True):
            columns[field].append(value)
        for text in spec.texts:
            column, name = TEXTS[text]
            path = paths.get((gen_id, name))
            columns[column].append(None if path is None else _decode(data[path], root, path))
        columns["metadata"].append(stored.decode("utf-8"))
    if spec.ancestors:
        lineage = ancestors if ancestors is not None else Ancestors(root, spec)
        lineage.read([m.parent_gen_id for m in metas])
        for meta in metas:
            for name, value in lineage.columns(meta.parent_gen_id).items():
                columns[name].append(value)
    return pa.RecordBatch.from_pydict(columns, schema=spec.schema())


def _decode(data: bytes | None, root: DataRoot, path: str) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableText(
            f"{root.backend.url(path)} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "inspect or rewrite that file"
        ) from None


class Ancestor(NamedTuple):
    """What a row takes from an ancestor's ``metadata.json``: its template and model, and
    its own ``parent_gen_id`` (``""`` for none), the next link up."""

    template_id: str | None
    model_id: str | None
    parent_gen_id: str

    @classmethod
    def of(cls, meta: GenerationMetadata) -> Ancestor:
        return cls(meta.template_id, meta.model_id, meta.parent_gen_id)


def read_ancestors(
    root: DataRoot, stage: str, gen_ids: Iterable[str]
) -> dict[str, Ancestor | None]:
    """The ancestors ``gen_ids`` of ``stage``, one batch of GETs of their ``metadata.json``
    (an id that is not a valid gen_id is not read, and not in the result): ``None`` for
    one not committed. One that does not parse is an ``InvalidMetadata`` naming it."""
    keys = sorted({(stage, g) for g in gen_ids if is_valid_gen_id(g)})
    found: dict[str, Ancestor | None] = {}
    for (_, gen_id), meta in root.store().metadata_many(keys).items():
        if isinstance(meta, InvalidMetadata):
            raise meta
        found[gen_id] = None if meta is None else Ancestor.of(meta)
    return found


def lineage_columns(
    stages: Sequence[str], parent_id: str, lookup: Callable[[str, str], Ancestor | None]
) -> dict[str, str | None]:
    """The lineage columns of a generation whose ``parent_gen_id`` is ``parent_id`` (``""``
    for none), ``stages`` its ancestor stages nearest first, ``lookup(stage, gen_id)`` an
    ancestor as read (``None``: not committed, or never read). The one place of the rule:
    an ancestor that is not committed has its gen_id (as its child names it) and nulls,
    and the ones above it are null."""
    out: dict[str, str | None] = {}
    for stage in stages:
        found = lookup(stage, parent_id) if parent_id else None
        values = (parent_id or None, *(found[:2] if found else (None, None)))
        out.update({f"{stage}_{f}": v for f, v in zip(_ANCESTOR_FIELDS, values, strict=True)})
        parent_id = found.parent_gen_id if found else ""
    return out


class Ancestors:
    """The ancestors' template and model, each ``metadata.json`` read once (one batch of
    GETs per ancestor stage and call) and kept for the batches after."""

    def __init__(self, root: DataRoot, spec: TableSpec) -> None:
        self.root = root
        self.spec = spec
        self._known: dict[tuple[str, str], Ancestor | None] = {}

    def read(self, parent_ids: Iterable[str]) -> None:
        """Read the ancestors of generations with these ``parent_gen_id``s not read yet."""
        ids = set(parent_ids)
        for stage in self.spec.ancestors:
            new = [g for g in ids if (stage, g) not in self._known]
            for gen_id, found in read_ancestors(self.root, stage, new).items():
                self._known[stage, gen_id] = found
            ids = {a.parent_gen_id for g in ids if (a := self._known.get((stage, g)))}

    def columns(self, parent_id: str) -> dict[str, str | None]:
        """The lineage columns of a generation whose ``parent_gen_id`` is ``parent_id``
        (:func:`lineage_columns`)."""
        return lineage_columns(
            self.spec.ancestors, parent_id, lambda stage, g: self._known.get((stage, g))
        )


def to_arrow(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    stage: str,
    cohort: str | None = None,
    lineage: bool = False,
    texts: TextsArg = ("parsed",),
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """One row per committed generation of ``stage`` (only ``cohort``'s members when
    given), sorted by gen_id, as a ``pyarrow.Table``: see the module docstring for the
    columns and the requests. ``texts``: some of ``"parsed"``, ``"raw"``, ``"prompt"``."""
    table = StageTable(
        data_root,
        stage=stage,
        cohort=cohort,
        lineage=lineage,
        texts=texts,
        storage_options=storage_options,
    )
    pa = import_pyarrow()
    return pa.Table.from_batches(list(table.batches()), schema=table.spec.schema())


def to_pandas(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    stage: str,
    cohort: str | None = None,
    lineage: bool = False,
    texts: TextsArg = ("parsed",),
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """:func:`to_arrow` as a pandas DataFrame (pandas too: ``gens_fs[tables]``)."""
    try:
        import pandas  # noqa: F401  (to_pandas needs it; say which extra)
    except ImportError:
        raise MissingExtra("to_pandas needs pandas: pip install 'gens_fs[tables]'") from None
    table = to_arrow(
        data_root,
        stage=stage,
        cohort=cohort,
        lineage=lineage,
        texts=texts,
        storage_options=storage_options,
    )
    return table.to_pandas()
