"""``gens-fs gc``: remove what killed writers left in a data root."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from gens_fs.cli._common import (
    EngineChoice,
    EngineOption,
    JsonFlag,
    OptionList,
    app,
    emit,
    human_size,
    open_root,
    plural,
    say,
)
from gens_fs.gc import GcReport, Removal, gc, parse_duration


@app.command("gc")
def gc_command(
    root: Annotated[
        str,
        typer.Argument(
            metavar="DATA_ROOT", help="Data root (holds gens/ and cohorts/): a path or URL."
        ),
    ],
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help=(
                "Remove only what was last modified at least AGE ago (90s, 30m, 1h, 2d, "
                "1h30m; 0 for everything): a younger temporary file may be a write in "
                "progress."
            ),
        ),
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="List what would be removed; remove nothing.")
    ] = False,
    as_json: JsonFlag = False,
    option: OptionList = None,
    engine: EngineOption = EngineChoice.fsspec,
) -> None:
    """Remove the temporary files that killed writers left (.raw.txt.<hex>.tmp, beside
    the file a local write was making) and the generation folders that held nothing
    else, once older than --older-than. Each removal is one line.

    Never touches a committed generation's files: only files named as gens-fs's writers
    name their temporary files, and a generation folder only while it is empty. Object
    stores have none of these (each file is one PUT that lands whole): there, gc finds
    nothing. Exit 0; 1 when something could not be removed (each on a line of its own).
    """
    threshold = parse_duration(older_than)
    report = gc(open_root(root, option, engine), older_than=threshold, dry_run=dry_run)
    emit(report, as_json, lambda: _print_report(report, older_than))
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: GcReport, older_than: str) -> None:
    verb = "would remove" if report.dry_run else "removed"
    for removal in report.removed:
        say(f"{verb} {_described(removal)}", log=logging.INFO)
    for error in report.errors:
        say(
            f"gens-fs: error: {error.path}: not removed: {error.error}", err=True, log=logging.ERROR
        )
    files = [r for r in report.removed if r.kind == "temp_file"]
    folders = len(report.removed) - len(files)
    kept = f"; kept {plural(len(report.kept), 'temporary file')} younger than {older_than}"
    say(
        f"{report.data_root}: {verb} {plural(len(files), 'temporary file')} "
        f"({human_size(sum(r.size for r in files))}) and "
        f"{plural(folders, 'empty generation folder')}"
        + (kept if report.kept else "")
        + (" (dry run: nothing changed)" if report.dry_run else ""),
        log=logging.INFO,
    )


def _described(removal: Removal) -> str:
    age = _age(removal.age_s)
    if removal.kind == "empty_folder":
        return f"empty generation folder {removal.path}/ (modified {age} ago)"
    return f"temporary file {removal.path} ({human_size(removal.size)}, modified {age} ago)"


def _age(seconds: float) -> str:
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"
