"""``gens-fs ls | show | check | stats``: see a store from the shell.

Each command opens the data root with :func:`open_root` (one cheap request that fails fast
on a missing bucket), calls the library, and prints the result for people (rich tables) or
as JSON (``--json``). ``check`` exits 1 when it finds errors.
"""

from __future__ import annotations

import sys
from typing import Annotated, Final

import typer
from rich.table import Table

from gens_fs.check import CheckReport, check
from gens_fs.cli._common import (
    FollowSymlinks,
    JsonFlag,
    OptionList,
    UsageError,
    app,
    console,
    emit,
    err_console,
    open_root,
    warn_ignored,
)
from gens_fs.inventory import (
    GenerationEntry,
    StoreStats,
    entries,
    read_snapshot,
    select_stages,
    stats,
)
from gens_fs.layout import PARSED_FILE, PROMPT_FILE, RAW_FILE, validate_gen_id, validate_stage
from gens_fs.models import Generation

RootArg = Annotated[
    str,
    typer.Argument(
        metavar="ROOT", help="Data root (holds gens/ and cohorts/): a path or URL (s3://b/p)."
    ),
]
StageList = Annotated[
    list[str] | None,
    typer.Option("--stage", "-s", help="Only this stage (draft, essay, evaluation); repeatable."),
]
CohortOption = Annotated[
    str | None, typer.Option("--cohort", "-c", help="Only this cohort's members.")
]
# --field NAME -> the Generation key it shows, and the file it comes from.
FIELDS: Final = {
    "raw": ("raw_text", RAW_FILE),
    "parsed": ("parsed_text", PARSED_FILE),
    "prompt": ("prompt_text", PROMPT_FILE),
    "metadata": ("metadata", "metadata.json"),
}


def _stages(stage: list[str] | None) -> list[str] | None:
    """Validate ``--stage`` values before any I/O (``UnknownStage`` is one line, exit 2)."""
    return None if stage is None else select_stages(stage)


def _size(sizes: dict[str, int], name: str) -> str:
    return str(sizes[name]) if name in sizes else "-"


@app.command("ls")
def ls(
    root: RootArg,
    stage: StageList = None,
    cohort: CohortOption = None,
    as_json: JsonFlag = False,
    option: OptionList = None,
    follow_symlinks: FollowSymlinks = False,
) -> None:
    """List generations: stage, gen_id, state, parent, template, model, file sizes.

    One listing per stage and one GET per metadata.json, batched. Symbolic links and
    special files are left out, one warning each on stderr.
    """
    stages = _stages(stage)
    data_root = open_root(root, option)
    snapshot = read_snapshot(
        data_root, stages=stages, cohort=cohort, follow_symlinks=follow_symlinks
    )
    warn_ignored(snapshot.ignored, where=data_root.url.rstrip("/") + "/")
    rows = entries(snapshot)

    def human() -> None:
        table = Table(
            title=f"generations in {data_root.url}",
            title_justify="left",
            caption="sizes: bytes of raw.txt/parsed.txt/prompt.txt (- when absent)",
            caption_justify="left",
        )
        table.add_column("stage", no_wrap=True)
        table.add_column("gen_id", no_wrap=True)
        table.add_column("state", no_wrap=True)
        for column in ("parent", "template", "model"):
            table.add_column(column, overflow="fold", min_width=6)
        table.add_column("sizes", justify="right", no_wrap=True)
        for row in rows:
            table.add_row(
                row.stage,
                row.gen_id,
                _state(row),
                row.parent_gen_id or "-",
                row.template_id or "-",
                row.model_id or "-",
                "/".join(_size(row.sizes, name) for name in (RAW_FILE, PARSED_FILE, PROMPT_FILE)),
            )
        console.print(table)
        console.print(f"{len(rows)} generation{'s' if len(rows) != 1 else ''}")

    emit(rows, as_json, human)


def _state(row: GenerationEntry) -> str:
    if not row.committed:
        return "incomplete"
    return "bad metadata" if row.metadata_error else "ok"


@app.command()
def show(
    root: RootArg,
    stage: Annotated[str, typer.Argument(metavar="STAGE", help="draft, essay or evaluation.")],
    gen_id: Annotated[str, typer.Argument(metavar="GEN_ID")],
    lineage: Annotated[
        bool, typer.Option("--lineage", help="Also show its parents, from the draft down.")
    ] = False,
    field: Annotated[
        str | None,
        typer.Option(
            "--field", "-f", metavar="raw|parsed|prompt|metadata", help="Print only this field."
        ),
    ] = None,
    as_json: JsonFlag = False,
    option: OptionList = None,
) -> None:
    """Show one generation (or its lineage): metadata and texts, or a single field.

    One GET per file (four per generation), all at once; --lineage adds one batch per parent.
    """
    validate_stage(stage)
    validate_gen_id(gen_id)
    if field is not None and field not in FIELDS:
        raise UsageError(f"--field {field!r}: expected one of {', '.join(FIELDS)}")
    store = open_root(root, option).store()
    chain = store.lineage(stage, gen_id) if lineage else [store.load(stage, gen_id)]

    if field is not None:
        key, filename = FIELDS[field]
        if as_json:
            picked = [{"stage": g.stage, "gen_id": g.gen_id, field: g[key]} for g in chain]
            emit(picked if lineage else picked[0], True, lambda: None)
            return
        for gen in chain:
            if lineage:
                sys.stdout.write(f"== {gen.stage} {gen.gen_id} ==\n")
            value = _field_text(gen, key)
            if value is None:
                err_console.print(
                    f"gens-fs: {gen.stage} {gen.gen_id} has no {filename}", markup=False
                )
                if not lineage:
                    raise typer.Exit(1)
                continue
            sys.stdout.write(value if value.endswith("\n") else value + "\n")
        return

    def human() -> None:
        for gen in chain:
            _print_generation(gen)

    dicts = [g.to_dict() for g in chain]
    emit(dicts if lineage else dicts[0], as_json, human)


def _field_text(gen: Generation, key: str) -> str | None:
    if key == "metadata":
        return None if gen.metadata is None else gen.metadata.to_json()
    value = gen[key]
    return None if value is None else str(value)


def _print_generation(gen: Generation) -> None:
    table = Table(title=f"{gen.stage} {gen.gen_id}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("committed", "yes" if gen.is_committed else "no (no metadata.json)")
    if gen.metadata is not None:
        for name, value in gen.metadata.model_dump(mode="json", exclude_none=True).items():
            table.add_row(name, str(value) if value != "" else "-")
    for label, key in (("prompt", "prompt_text"), ("raw", "raw_text"), ("parsed", "parsed_text")):
        value = gen[key]
        table.add_row(label, "(none)" if value is None else value)
    console.print(table, markup=False)


@app.command("check")
def check_command(
    root: RootArg,
    cohort: CohortOption = None,
    stage: StageList = None,
    as_json: JsonFlag = False,
    option: OptionList = None,
    follow_symlinks: FollowSymlinks = False,
) -> None:
    """Check a store against the spec: missing generations and parents, incomplete or
    invalid metadata, empty parsed text, missing prompts, generations in no cohort,
    entries that do not fit the layout, symbolic links and special files.

    Exit 0 when there are no errors, 1 when there are, 2 on a usage mistake. Requests: one
    listing per stage, the membership files, one GET per metadata.json, batched.
    """
    stages = _stages(stage)
    data_root = open_root(root, option)
    report = check(data_root, cohort=cohort, stages=stages, follow_symlinks=follow_symlinks)
    emit(report, as_json, lambda: _print_report(report))
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report: CheckReport) -> None:
    if report.findings:
        table = Table(title=f"findings in {report.data_root}", title_justify="left")
        table.add_column("severity", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("message (and path under the root)", overflow="fold")
        prefix = report.data_root.rstrip("/") + "/"
        for f in report.findings:
            table.add_row(f.severity, f.kind, f"{f.message}\n{f.path.removeprefix(prefix)}")
        console.print(table, markup=False)
    s = report.summary
    scope = f"cohort {report.cohort}" if report.cohort else f"{s.cohorts} cohort(s)"
    verdict = "OK" if report.ok else "PROBLEMS FOUND"
    console.print(
        f"{verdict}: checked {s.generations} generation(s) and {scope} "
        f"({', '.join(report.stages)}): {s.errors} error(s), {s.warnings} warning(s), "
        f"{s.infos} info",
        markup=False,
        highlight=False,
    )


@app.command("stats")
def stats_command(root: RootArg, as_json: JsonFlag = False, option: OptionList = None) -> None:
    """Per stage: generations, committed, incomplete, invalid metadata, bytes, and counts
    per model and per template. One listing per stage and one GET per metadata.json."""
    result = stats(open_root(root, option))
    emit(result, as_json, lambda: _print_stats(result))


def _print_stats(result: StoreStats) -> None:
    table = Table(title=f"stats of {result.data_root}", title_justify="left")
    table.add_column("stage")
    for column in ("generations", "committed", "incomplete", "invalid metadata", "bytes"):
        table.add_column(column, justify="right")
    for stage, s in result.stages.items():
        table.add_row(
            stage,
            *(str(v) for v in (s.generations, s.committed, s.incomplete, s.invalid_metadata)),
            f"{s.bytes:,}",
        )
    console.print(table)
    counts = Table(title="committed generations by model and template", title_justify="left")
    for column in ("stage", "by", "id"):
        counts.add_column(column, overflow="fold")
    counts.add_column("count", justify="right")
    for stage, s in result.stages.items():
        for by, mapping in (("model", s.by_model), ("template", s.by_template)):
            for name, count in mapping.items():
                counts.add_row(stage, by, name, str(count))
    console.print(counts, markup=False)
