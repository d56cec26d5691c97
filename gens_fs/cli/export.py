"""``gens-fs export``: one stage's generations as a table file (Parquet, CSV, JSON lines).

The table is :func:`gens_fs.to_arrow`'s, read and written a batch of generations at a time
(:class:`gens_fs.tables.StageTable`), so memory stays flat whatever the store's size. The
file is written under a temporary name beside the output and renamed when complete: an
interrupted or failed export leaves no partial file under the name asked for.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any, Final, Protocol

import typer
from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gens_fs.cli._common import (
    EngineChoice,
    EngineOption,
    JsonFlag,
    OptionList,
    UsageError,
    app,
    emit,
    err_console,
    human_size,
    interrupted,
    json_safe,
    open_root,
    plural,
    say,
)
from gens_fs.cli.inspect import CohortOption, RootArg
from gens_fs.layout import validate_stage
from gens_fs.tables import TEXTS, StageTable, import_pyarrow

# The output's extension -> its format.
FORMATS: Final = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
STDOUT: Final = "-"


StageOption = Annotated[
    str, typer.Option("--stage", "-s", metavar="STAGE", help="draft, essay or evaluation.")
]
OutputOption = Annotated[
    str,
    typer.Option(
        "--output",
        metavar="OUT",
        help=(
            "The file to write; its extension says the format: .parquet, .csv or .jsonl "
            "(one JSON object a line). '-' writes JSON lines to stdout."
        ),
    ),
]
LineageFlag = Annotated[
    bool,
    typer.Option(
        "--lineage",
        help=(
            "Add each ancestor's gen_id, template_id and model_id (essay_*, draft_* for "
            "evaluations; draft_* for essays)."
        ),
    ),
]
TextOption = Annotated[
    str,
    typer.Option(
        "--text",
        metavar="TEXTS",
        help=(
            "The texts to include, comma-separated: parsed, raw, prompt (a column each, "
            "null when the file is absent); '' for none."
        ),
    ),
]


class ExportSummary(BaseModel):
    """What ``--json`` prints after an export."""

    output: str
    format: str
    stage: str
    cohort: str | None
    rows: int
    columns: list[str]
    bytes: int
    seconds: float


class _Writer(Protocol):
    def write(self, batch: Any) -> None: ...

    def close(self) -> None: ...


@app.command()
def export(
    root: RootArg,
    stage: StageOption,
    output: OutputOption,
    cohort: CohortOption = None,
    lineage: LineageFlag = False,
    text: TextOption = "parsed",
    as_json: JsonFlag = False,
    option: OptionList = None,
    engine: EngineOption = EngineChoice.fsspec,
) -> None:
    """Write one row per committed generation of a stage, sorted by gen_id, to a file.

    Columns: gen_id, stage, parent_gen_id, task_id, template_id, model_id (llm_model_id
    for the original pipeline's files), the texts asked for (parsed_text, raw_text,
    prompt_text), metadata (the metadata.json as stored), and with --lineage the
    ancestors' columns. Reads the stage's listing, then one GET per file, a batch of
    generations at a time: memory stays flat. The file appears only when complete.

    Examples:

    \b
      gens-fs export ./data --stage evaluation --lineage --output evals.parquet
      gens-fs export s3://bucket/data -s essay -c c1 --text parsed,prompt --output -
    """
    validate_stage(stage)
    texts = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in texts if t not in TEXTS]
    if unknown:
        raise UsageError(f"--text {unknown[0]!r}: expected some of {', '.join(TEXTS)}")
    kind = _format(output, as_json=as_json)
    started = time.perf_counter()
    data_root = open_root(root, option, engine)
    with _progress(enabled=err_console.is_terminal and output != STDOUT) as progress:
        table = StageTable(data_root, stage=stage, cohort=cohort, lineage=lineage, texts=texts)
        progress(0, len(table))
        rows = _write_all(table, output, kind, progress)
    summary = ExportSummary(
        output=output,
        format=kind,
        stage=stage,
        cohort=cohort,
        rows=rows,
        columns=table.spec.columns,
        bytes=0 if output == STDOUT else os.path.getsize(output),
        seconds=round(time.perf_counter() - started, 3),
    )
    if output != STDOUT:
        emit(summary, as_json, lambda: _say_done(summary))


def _format(output: str, *, as_json: bool) -> str:
    """The format ``output`` asks for, checked before any request: a known extension, a
    folder that exists."""
    if output == STDOUT:
        if as_json:
            raise UsageError("--json prints a summary on stdout: give --output a file, not -")
        return "jsonl"
    kind = FORMATS.get(Path(output).suffix.lower())
    if kind is None:
        raise UsageError(
            f"--output {output!r}: the extension says the format: "
            f"{', '.join(FORMATS)} (or - for JSON lines on stdout)"
        )
    folder = Path(output).parent
    if not folder.is_dir():
        raise UsageError(f"--output {output!r}: no folder {str(folder)!r} to write it in")
    return kind


def _write_all(table: StageTable, output: str, kind: str, progress: Any) -> int:
    """Every batch of ``table`` into ``output`` (a temporary file renamed at the end);
    the rows written. Interrupted, the temporary file is removed and Ctrl-C says so."""
    done = 0
    try:
        with _target(output) as stream:
            writer = _writer(kind, stream, table.spec.schema())
            try:
                for batch in table.batches():
                    writer.write(batch)
                    done += batch.num_rows
                    progress(done, len(table))
            finally:  # also on failure: pyarrow's writer would close itself at exit, late
                writer.close()
    except KeyboardInterrupt:
        where = "" if output == STDOUT else f"; {output} was not written"
        interrupted(f"interrupted after {done:,} of {plural(len(table), 'generation')}{where}")
    return done


@contextmanager
def _target(output: str) -> Iterator[IO[bytes]]:
    """stdout's bytes, or a temporary file beside ``output`` that becomes ``output`` when
    the block ends without an error (and is removed when it does not)."""
    if output == STDOUT:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(output)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "wb") as stream:
            yield stream
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _writer(kind: str, stream: IO[bytes], schema: Any) -> _Writer:
    if kind == "jsonl":
        return _JsonLines(stream)
    import_pyarrow()  # the extra's message if it is missing
    if kind == "parquet":
        import pyarrow.parquet

        return _BatchWriter(pyarrow.parquet.ParquetWriter(stream, schema))
    import pyarrow.csv

    return _BatchWriter(pyarrow.csv.CSVWriter(stream, schema))


class _BatchWriter:
    """pyarrow's Parquet and CSV writers: one row group or block per batch."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def write(self, batch: Any) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


class _JsonLines:
    """One JSON object a line, UTF-8, every value exact (controls escaped as JSON does,
    DEL and C1 too: the same strings to a reader, none acted on by a terminal)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, batch: Any) -> None:
        lines = (json.dumps(row, ensure_ascii=False) for row in batch.to_pylist())
        self._stream.write("".join(json_safe(line) + "\n" for line in lines).encode())

    def close(self) -> None:
        self._stream.flush()


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Any]:
    """``update(done, total)``: a progress bar of generations on stderr when ``enabled``."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("generations"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("export", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _say_done(summary: ExportSummary) -> None:
    where = f" of cohort {summary.cohort}" if summary.cohort else ""
    say(
        f"exported {plural(summary.rows, summary.stage + ' generation')}{where} "
        f"({len(summary.columns)} columns) to {summary.output} "
        f"({human_size(summary.bytes)}, {summary.format}) in {summary.seconds:.2f} s"
    )
