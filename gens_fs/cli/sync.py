"""``gens-fs sync``: mirror a data root to another storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from gens_fs.cli._common import (
    FollowSymlinks,
    JsonFlag,
    OptionList,
    app,
    console,
    emit,
    err_console,
    fail,
    parse_options,
    warn_ignored,
)
from gens_fs.sync import DEFAULT_JOBS, SyncProgress, SyncReport
from gens_fs.sync import sync as run_sync
from gens_fs.sync.execute import ProgressCallback

StageList = Annotated[
    list[str] | None,
    typer.Option("--stage", help="Sync only this stage (repeatable); leaves cohorts/ out."),
]


@app.command()
def sync(
    src: Annotated[str, typer.Argument(help="Source data root (path or URL).")],
    dst: Annotated[str, typer.Argument(help="Destination data root (path or URL).")],
    cohort: Annotated[
        str | None,
        typer.Option(help="Sync this cohort's membership.csv, its generations and ancestors."),
    ] = None,
    stage: StageList = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete destination files in scope not in SRC.")
    ] = False,
    max_delete: Annotated[
        int | None,
        typer.Option(
            min=0,
            help=(
                "Refuse (changing nothing) when more files would be deleted. Without it, "
                "--delete refuses to delete more than half of DST's files in scope."
            ),
        ),
    ] = None,
    allow_empty_source: Annotated[
        bool,
        typer.Option(
            "--allow-empty-source",
            help="Accept a SRC that holds neither gens/ nor cohorts/ (refused otherwise).",
        ),
    ] = False,
    follow_symlinks: FollowSymlinks = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the plan; change nothing.")
    ] = False,
    checksum: Annotated[
        bool, typer.Option("--checksum", help="Compare content everywhere (reads files).")
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Transfers in flight at once.")
    ] = DEFAULT_JOBS,
    verify: Annotated[
        bool, typer.Option("--verify", help="List the destination again and compare.")
    ] = False,
    as_json: JsonFlag = False,
    option: OptionList = None,
    src_option: Annotated[
        list[str] | None,
        typer.Option("--src-option", metavar="KEY=VALUE", help="A storage option for SRC only."),
    ] = None,
    dst_option: Annotated[
        list[str] | None,
        typer.Option("--dst-option", metavar="KEY=VALUE", help="A storage option for DST only."),
    ] = None,
) -> None:
    """Mirror SRC onto DST: incremental, parents before children, metadata.json last.

    SRC must be a data root (it holds gens/ or cohorts/). Symbolic links, FIFOs, sockets,
    devices and stray entries are left alone, one warning each on stderr.

    Exit 0 when everything in scope is synced, 1 when some files failed (listed; the rest
    was done; run again to converge), 2 for usage and configuration errors, and for a plan
    that is refused (too many deletes: a dry run shows it, then exits 2).
    """
    shared = parse_options(option)
    src_options = {**shared, **parse_options(src_option)}
    dst_options = {**shared, **parse_options(dst_option)}
    with _progress_bar(enabled=console.is_terminal and not as_json and not dry_run) as bar:
        report = run_sync(
            src,
            dst,
            cohort=cohort,
            stages=stage,
            delete=delete,
            max_delete=max_delete,
            dry_run=dry_run,
            checksum=checksum,
            jobs=jobs,
            progress=bar,
            src_options=src_options,
            dst_options=dst_options,
            verify=verify,
            allow_empty_source=allow_empty_source,
            follow_symlinks=follow_symlinks,
        )
    for side in ("source", "destination"):
        found = [(e.path, e.reason) for e in report.ignored if e.side == side]
        warn_ignored(found, where=f"{side} ")
    emit(report, as_json, lambda: _print_report(report))
    if report.refused is not None:
        fail(report.refused)
    if not report.ok:
        raise typer.Exit(1)


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A rich progress bar (files, bytes, rate) fed by the sync's callback, or ``None``."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("syncing"),
        BarColumn(),
        TextColumn("{task.fields[files]}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sync", total=None, files="")

        def update(state: SyncProgress) -> None:
            progress.update(
                task,
                completed=state.bytes_done,
                total=state.bytes_total,
                files=f"{state.files_done}/{state.files_total} files",
            )

        yield update


def _print_report(report: SyncReport) -> None:
    if report.dry_run:
        for action in report.actions or []:
            size = f" ({action.size} B)" if action.size is not None else ""
            console.print(f"would {action.action} {action.path}{size}", markup=False)
        verb = "would copy"
        deleted = f"would delete {report.deleted}"
    else:
        verb = "copied"
        deleted = f"deleted {report.deleted}"
    console.print(
        f"{report.src} -> {report.dst}: {verb} {report.copied} files ({report.bytes} B), "
        f"skipped {report.skipped} unchanged, {deleted} in {report.seconds:.2f} s"
        + (" (dry run: nothing changed)" if report.dry_run else ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if report.deletes_skipped:
        console.print("deletes skipped because some files failed", markup=False)
    for error in report.errors:
        err_console.print(f"error: {error.path}: {error.error}", markup=False, highlight=False)
    if report.uncommitted:
        console.print(
            f"left uncommitted (run again to converge): {', '.join(report.uncommitted)}",
            markup=False,
            highlight=False,
        )
    if report.verified is not None:
        console.print("verified" if report.verified else "verify found differences")
