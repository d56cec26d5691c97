"""``gens-fs ls | show | check | stats``: see a store from the shell.

Each command opens the data root with :func:`open_root` (one cheap request that fails fast
on a missing bucket), calls the library, and prints the result for people (rich tables) or
as JSON (``--json``). ``check`` exits 1 when it finds errors.

Store text reaches the terminal through ``cell``/``say``/``printable`` only (see
``_common``): never as markup, never as control sequences.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any, Final

import typer
from rich.table import Table
from rich.text import Text

from gens_fs.check import CheckReport, Finding, check
from gens_fs.cli._common import (
    EngineChoice,
    EngineOption,
    ExcludeOption,
    FollowSymlinks,
    IncludeOption,
    JsonFlag,
    OptionList,
    UsageError,
    WhereOption,
    app,
    cell,
    console,
    emit,
    human_size,
    open_root,
    plural,
    printable,
    say,
    selection_from,
    warn_ignored,
)
from gens_fs.inventory import (
    StoreStats,
    entries,
    read_snapshot,
    select_stages,
    stats,
)
from gens_fs.layout import (
    METADATA_FILE,
    PARSED_FILE,
    PROMPT_FILE,
    RAW_FILE,
    validate_gen_id,
    validate_stage,
)
from gens_fs.models import Generation
from gens_fs.store import GensStore

RootArg = Annotated[
    str,
    typer.Argument(
        metavar="ROOT", help="Data root (holds gens/ and cohorts/): a path or URL (s3://b/p)."
    ),
]
StageList = Annotated[
    list[str] | None,
    typer.Option(
        "--stage",
        "-s",
        metavar="STAGE",
        help="Only this stage (draft, essay, evaluation); repeatable.",
    ),
]
CohortOption = Annotated[
    str | None,
    typer.Option("--cohort", "-c", metavar="COHORT_ID", help="Only this cohort's members."),
]
# --field NAME -> the Generation key it shows, and the file it comes from.
FIELDS: Final = {
    "raw": ("raw_text", RAW_FILE),
    "parsed": ("parsed_text", PARSED_FILE),
    "prompt": ("prompt_text", PROMPT_FILE),
    "metadata": ("metadata", METADATA_FILE),
}
# show's human view: each text up to this many characters and lines (--full for all).
TEXT_LIMIT_CHARS: Final = 2_000
TEXT_LIMIT_LINES: Final = 40


def _stages(stage: list[str] | None) -> list[str] | None:
    """Validate ``--stage`` values before any I/O (``UnknownStage`` is one line, exit 2)."""
    return None if stage is None else select_stages(stage)


def _size(sizes: dict[str, int], name: str) -> str:
    return human_size(sizes[name]) if name in sizes else "-"


@app.command("ls")
def ls(
    ctx: typer.Context,
    root: RootArg,
    stage: StageList = None,
    cohort: CohortOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    where: WhereOption = None,
    as_json: JsonFlag = False,
    option: OptionList = None,
    engine: EngineOption = EngineChoice.fsspec,
    follow_symlinks: FollowSymlinks = False,
) -> None:
    """List generations: stage, gen_id, state, parent, template, model, file sizes.

    State: ok, incomplete (no metadata.json), invalid metadata, or (with --cohort) missing:
    a member of the cohort with no folder. One listing per stage and one GET per
    metadata.json, batched. Symbolic links and special files are left out, one warning
    each on stderr. --include/--exclude/--where narrow the list (a cohort member with no
    folder has no metadata: --where leaves it out).
    """
    stages = _stages(stage)
    selection = selection_from(ctx, include, exclude, where)
    data_root = open_root(root, option, engine)
    snapshot = read_snapshot(
        data_root,
        stages=stages,
        cohort=cohort,
        follow_symlinks=follow_symlinks,
        selection=selection,
    )
    warn_ignored(snapshot.ignored, where=data_root.url.rstrip("/") + "/")
    rows = entries(snapshot)

    def human() -> None:
        table = Table()
        table.add_column("stage", no_wrap=True)
        table.add_column("gen_id", no_wrap=True)
        table.add_column("state", no_wrap=True)
        for column in ("parent", "template", "model"):
            table.add_column(column, overflow="fold", min_width=6)
        table.add_column("sizes", justify="right", no_wrap=True)
        for row in rows:
            table.add_row(
                cell(row.stage),
                cell(row.gen_id),
                row.state.replace("_", " "),
                cell(row.parent_gen_id or "-"),
                cell(row.template_id or "-"),
                cell(row.model_id or "-"),
                "/".join(_size(row.sizes, name) for name in (RAW_FILE, PARSED_FILE, PROMPT_FILE)),
            )
        say(f"generations in {data_root.url}")
        console.print(table)
        say("sizes: raw.txt/parsed.txt/prompt.txt (- when absent)")
        missing = sum(row.state == "missing" for row in rows)
        note = f" ({missing:,} missing: in cohort {cohort}'s membership but with no folder)"
        say(plural(len(rows), "generation") + (note if missing else ""))

    emit(rows, as_json, human)


@app.command()
def show(
    root: RootArg,
    stage: Annotated[str, typer.Argument(metavar="STAGE", help="draft, essay or evaluation.")],
    gen_id: Annotated[str, typer.Argument(metavar="GEN_ID", help="The generation's id.")],
    lineage: Annotated[
        bool, typer.Option("--lineage", help="Also show its parents, from the draft down.")
    ] = False,
    field: Annotated[
        str | None,
        typer.Option(
            "--field",
            "-f",
            metavar="NAME",
            help=(
                "raw, parsed, prompt or metadata: write only that file's exact bytes "
                "(streamed; no other file is read)."
            ),
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Print whole texts (the default shortens long ones).")
    ] = False,
    as_json: JsonFlag = False,
    option: OptionList = None,
    engine: EngineOption = EngineChoice.fsspec,
) -> None:
    """Show one generation (or its lineage): metadata and texts, or a single file.

    Texts longer than 2,000 characters or 40 lines are shortened, with a note (--full prints
    them whole). One GET per file (four per generation), all at once; --lineage adds one
    batch per parent. Exit 1, with one line on stderr for each, when the generation lacks
    the --field file (JSON: null) or, with --lineage, an ancestor is missing (the
    generations that exist are shown).
    """
    validate_stage(stage)
    validate_gen_id(gen_id)
    if field is not None and field not in FIELDS:
        raise UsageError(f"--field {field!r}: expected one of {', '.join(FIELDS)}")
    store = open_root(root, option, engine).store()
    chain = store.lineage(stage, gen_id, strict=False) if lineage else None
    problems: list[str] = []
    told = 0  # problems already told on stderr, between the files they concern
    if field is not None and not as_json:
        keys = [(g.stage, g.gen_id) for g in chain] if chain else [(stage, gen_id)]
        told = _write_field(store, keys, FIELDS[field][1], headers=lineage)
    else:
        shown = chain or [store.load(stage, gen_id)]
        problems = _emit_generations(shown, field, as_json=as_json, many=lineage, full=full)
    if chain and (broken := store.broken_link(chain)) is not None:
        problems.append(broken)
    for problem in problems:
        say(f"gens-fs: error: {problem}", err=True)
    if problems or told:  # the store lacks what was asked for: exit 1, not a usage mistake
        raise typer.Exit(1)


def _emit_generations(
    chain: list[Generation], field: str | None, *, as_json: bool, many: bool, full: bool
) -> list[str]:
    """Print the generations (the draft first), whole or one ``field`` (JSON only; ``null``
    where the file is absent). Returns a line for each file asked for that is absent."""
    if field is None:

        def human() -> None:
            for gen in chain:
                _print_generation(gen, full=full)

        dicts = [g.to_dict() for g in chain]
        emit(dicts if many else dicts[0], as_json, human)
        return []
    picked = [{"stage": g.stage, "gen_id": g.gen_id, field: _field_value(g, field)} for g in chain]
    emit(picked if many else picked[0], True, lambda: None)
    filename = FIELDS[field][1]
    return [f"{p['stage']} {p['gen_id']} has no {filename}" for p in picked if p[field] is None]


def _field_value(gen: Generation, field: str) -> Any:
    """``--field``'s value for ``--json``: the text, or ``metadata.json``'s object exactly as
    stored; ``None`` when the file is absent (the dict view's ``raw_text`` would be ``""``)."""
    key = FIELDS[field][0]
    return gen[key] if field == "metadata" else getattr(gen, key)


def _write_field(
    store: GensStore, keys: list[tuple[str, str]], filename: str, *, headers: bool
) -> int:
    """``show --field``: each generation's file to stdout, streamed, under a
    ``== stage gen_id ==`` line with ``headers`` (``--lineage``). A missing file is told on
    stderr where it would be; returns how many were missing."""
    missing = 0
    for stage, gen_id in keys:
        if headers:
            sys.stdout.write(f"== {stage} {gen_id} ==\n")
        chunks = store.iter_bytes(stage, gen_id, filename)
        if chunks is None:
            sys.stdout.flush()
            say(f"gens-fs: error: {stage} {gen_id} has no {filename}", err=True)
            missing += 1
            continue
        if not _copy_to_stdout(chunks) and headers:
            sys.stdout.write("\n")  # the next header on a line of its own
    sys.stdout.flush()
    return missing


def _copy_to_stdout(chunks: Iterator[bytes]) -> bool:
    """Write ``chunks`` to stdout: the exact bytes when redirected or piped; on a terminal,
    decoded with control characters (and undecodable bytes) shown as escapes. True when
    the last byte was a newline."""
    terminal = sys.stdout.isatty()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    sys.stdout.flush()
    last = b""
    held_cr = ""  # a CR at the end of a chunk: kept until we know whether LF follows
    for chunk in chunks:
        last = chunk[-1:] or last
        if not terminal:
            sys.stdout.buffer.write(chunk)
            continue
        text = held_cr + decoder.decode(chunk)
        held_cr = "\r" if text.endswith("\r") else ""
        sys.stdout.write(printable(text.removesuffix(held_cr), multiline=True))
    if terminal:
        sys.stdout.write(printable(held_cr + decoder.decode(b"", final=True), multiline=True))
    sys.stdout.flush()
    return last == b"\n"


def _print_generation(gen: Generation, *, full: bool) -> None:
    table = Table(show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("committed", "yes" if gen.is_committed else "no (no metadata.json)")
    if gen.metadata is not None:
        for name, value in gen.metadata.model_dump(mode="json", exclude_none=True).items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            table.add_row(cell(name), cell(shown or "-"))
    say(f"{gen.stage} {gen.gen_id}")
    console.print(table)
    for field, key in (("prompt", "prompt_text"), ("raw", "raw_text"), ("parsed", "parsed_text")):
        _print_text(FIELDS[field][1], getattr(gen, key), field=field, full=full)


def _print_text(filename: str, text: str | None, *, field: str, full: bool) -> None:
    """One text under a ``name (N characters):`` line, shortened unless ``full``.

    Written to the stream directly, not through rich: a 50 MB text must not become millions
    of rich segments."""
    if text is None:
        say(f"{filename}: none")
        return
    shown = text if full else _excerpt(text)
    say(f"{filename} ({plural(len(text), 'character')}):")
    body = printable(shown, multiline=True)
    console.file.write(body if body.endswith("\n") else body + "\n")
    console.file.flush()
    if len(shown) < len(text):
        more = plural(len(text) - len(shown), "more character")
        say(f"... ({more}; --full to see all, or --field {field} for the exact bytes)")


def _excerpt(text: str) -> str:
    """The start of ``text``: at most ``TEXT_LIMIT_CHARS`` characters and
    ``TEXT_LIMIT_LINES`` lines."""
    shown = text[:TEXT_LIMIT_CHARS]
    end = -1
    for _ in range(TEXT_LIMIT_LINES):
        end = shown.find("\n", end + 1)
        if end < 0:
            return shown
    return shown[: end + 1]


AllFlag = Annotated[
    bool,
    typer.Option(
        "--all",
        help=(
            "List every finding: info remarks too, and every warning (by default info "
            "remarks are counted per kind and each kind of warning shows its first 50)."
        ),
    ),
]
# check's human view lists at most this many warnings of one kind (--all lists them all).
WARNINGS_PER_KIND: Final = 50


@app.command("check")
def check_command(
    ctx: typer.Context,
    root: RootArg,
    cohort: CohortOption = None,
    stage: StageList = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    where: WhereOption = None,
    show_all: AllFlag = False,
    as_json: JsonFlag = False,
    option: OptionList = None,
    engine: EngineOption = EngineChoice.fsspec,
    follow_symlinks: FollowSymlinks = False,
) -> None:
    """Check a store against the spec: missing generations and parents, incomplete or
    invalid metadata, empty parsed text, missing prompts, generations in no cohort,
    entries that do not fit the layout, symbolic links and special files.

    Lists every error; at most 50 warnings of each kind and, instead of info remarks, their
    count per kind (--all lists everything; --json always has everything). Exit 0 when
    there are no errors, 1 when there are, 2 on a usage mistake. Requests: one listing per
    stage, the membership files, one GET per metadata.json, batched. --include/--exclude/
    --where check only the generations they pick (their parents are still looked for);
    strays are then not reported.
    """
    stages = _stages(stage)
    selection = selection_from(ctx, include, exclude, where)
    data_root = open_root(root, option, engine)
    report = check(
        data_root,
        cohort=cohort,
        stages=stages,
        follow_symlinks=follow_symlinks,
        selection=selection,
    )
    emit(report, as_json, lambda: _print_report(report, show_all=show_all))
    raise typer.Exit(0 if report.ok else 1)


def _shown_findings(
    findings: list[Finding], *, show_all: bool
) -> tuple[list[Finding], Counter[str], Counter[str]]:
    """What the human view lists (all errors, the first ``WARNINGS_PER_KIND`` warnings of
    each kind, no info), and the counts per kind of the warnings and info it leaves out."""
    if show_all:
        return findings, Counter(), Counter()
    listed: list[Finding] = []
    warnings: Counter[str] = Counter()
    unlisted: Counter[str] = Counter()
    infos: Counter[str] = Counter()
    for finding in findings:
        kind = finding.kind
        if finding.severity == "info":
            infos[kind] += 1
            continue
        if finding.severity == "warning":
            warnings[kind] += 1
            if warnings[kind] > WARNINGS_PER_KIND:
                unlisted[kind] += 1
                continue
        listed.append(finding)
    return listed, unlisted, infos


def _print_report(report: CheckReport, *, show_all: bool) -> None:
    listed, unlisted_warnings, infos = _shown_findings(report.findings, show_all=show_all)
    if listed:
        table = Table()
        table.add_column("severity", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("message (and path under the root)", overflow="fold")
        prefix = report.data_root.rstrip("/") + "/"
        for f in listed:
            where = printable(f.path.removeprefix(prefix))
            table.add_row(f.severity, f.kind, Text(f"{printable(f.message)}\n{where}"))
        say(f"findings in {report.data_root}")
        console.print(table)
    for kind, count in unlisted_warnings.items():
        say(f"... and {plural(count, f'more {kind} warning')} (--all to list them)")
    if infos:
        counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(infos.items()))
        say(f"{plural(infos.total(), 'info remark')}: {counts} (--all to list them)")
    s = report.summary
    scope = f"cohort {report.cohort}" if report.cohort else plural(s.cohorts, "cohort")
    verdict = "OK" if report.ok else "PROBLEMS FOUND"
    say(
        f"{verdict}: checked {plural(s.generations, 'generation')} and {scope} in "
        f"{report.data_root} ({', '.join(report.stages)}): {plural(s.errors, 'error')}, "
        f"{plural(s.warnings, 'warning')}, {s.infos:,} info"
    )


@app.command("stats")
def stats_command(
    root: RootArg,
    stage: StageList = None,
    as_json: JsonFlag = False,
    option: OptionList = None,
    engine: EngineOption = EngineChoice.fsspec,
) -> None:
    """Per stage: generations, committed, incomplete, invalid metadata, bytes, and counts
    per model and per template ("(none)": metadata naming none, such as copy-mode essays).
    One listing per stage and one GET per metadata.json."""
    stages = _stages(stage)
    result = stats(open_root(root, option, engine), stages=stages)
    emit(result, as_json, lambda: _print_stats(result))


def _print_stats(result: StoreStats) -> None:
    table = Table()
    table.add_column("stage")
    for column in ("generations", "committed", "incomplete", "invalid metadata", "size"):
        table.add_column(column, justify="right")
    for stage, s in result.stages.items():
        table.add_row(
            stage,
            *(f"{v:,}" for v in (s.generations, s.committed, s.incomplete, s.invalid_metadata)),
            human_size(s.bytes),
        )
    say(f"stats of {result.data_root}")
    console.print(table)
    counts = Table()
    for column in ("stage", "by", "id"):
        counts.add_column(column, overflow="fold")
    counts.add_column("count", justify="right")
    for stage, s in result.stages.items():
        for by, mapping in (("model", s.by_model), ("template", s.by_template)):
            for name, count in mapping.items():
                counts.add_row(stage, by, cell(name), f"{count:,}")
    say("committed generations by model and template")
    console.print(counts)
