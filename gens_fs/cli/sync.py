"""``gens-fs sync``: mirror a data root to another storage."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final

import typer

from gens_fs.backends import RateLimit
from gens_fs.cli._common import (
    EngineChoice,
    EngineOption,
    ExcludeOption,
    FollowSymlinks,
    IncludeOption,
    JsonFlag,
    OptionList,
    WhereOption,
    app,
    emit,
    err_console,
    fail,
    human_size,
    interrupted,
    parse_options,
    plural,
    say,
    selection_from,
    warn_ignored,
)
from gens_fs.cli.logs import current as verbosity
from gens_fs.cli.progress import DEFAULT_INTERVAL, LastProgress, progress_shown
from gens_fs.sync import DEFAULT_JOBS, SyncReport, apply, plan_sync
from gens_fs.sync.execute import ProgressCallback

StageList = Annotated[
    list[str] | None,
    typer.Option(
        "--stage",
        "-s",
        metavar="STAGE",
        help="Sync only this stage (repeatable); leaves cohorts/ out.",
    ),
]
TpsLimit = Annotated[
    float | None,
    typer.Option(
        "--tpslimit",
        min=0.001,
        metavar="N",
        help=(
            "At most N requests a second, all kinds, both sides and every transfer "
            "together (listing pages, reads, writes, deletes, each retry)."
        ),
    ),
]
BwLimit = Annotated[
    str | None,
    typer.Option(
        "--bwlimit",
        metavar="RATE",
        help=(
            "At most RATE bytes a second to and from object stores (local disk is not "
            "limited), all transfers together: "
            "10M (MiB/s), 512K (KiB/s), 1G, 100B; a bare number is KiB/s."
        ),
    ),
]
Fsync = Annotated[
    bool,
    typer.Option(
        "--fsync",
        help=(
            "At a local destination, fsync each file and its folder before the "
            "metadata.json that commits them (survives a power loss; slower)."
        ),
    ),
]
SourceArg = Annotated[str, typer.Argument(help="Source data root (path or URL).")]
DestinationArg = Annotated[str, typer.Argument(help="Destination data root (path or URL).")]
CohortOption = Annotated[
    str | None,
    typer.Option(
        "--cohort",
        "-c",
        metavar="COHORT_ID",
        help="Sync this cohort's membership.csv, its generations and ancestors.",
    ),
]
DeleteFlag = Annotated[
    bool, typer.Option("--delete", help="Delete destination files in scope not in SRC.")
]
MaxDelete = Annotated[
    int | None,
    typer.Option(
        min=0,
        metavar="N",
        help=(
            "Refuse (changing nothing) when more files would be deleted. Without it, "
            "--delete refuses to delete more than half of DST's files in scope."
        ),
    ),
]
AllowEmptySource = Annotated[
    bool,
    typer.Option(
        "--allow-empty-source",
        help="Accept a SRC that holds nothing at all (refused otherwise).",
    ),
]
AllowOrphans = Annotated[
    bool,
    typer.Option(
        "--allow-orphans",
        help=(
            "Copy as they are the generations whose parent is missing in SRC itself "
            "(held back otherwise)."
        ),
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="Print the plan; change nothing.")]
Checksum = Annotated[
    bool, typer.Option("--checksum", help="Compare content everywhere (reads files).")
]
Jobs = Annotated[
    int,
    typer.Option("--jobs", "-j", min=1, metavar="N", help="Transfers in flight at once."),
]
Verify = Annotated[bool, typer.Option("--verify", help="List the destination again and compare.")]
ProgressInterval = Annotated[
    float,
    typer.Option(
        "--progress-interval",
        min=0,
        metavar="SECONDS",
        help=(
            "When stderr is not a terminal (a log), print a progress line (files, "
            "bytes, rate, ETA) every SECONDS; 0: after every file."
        ),
    ),
]
SrcOptions = Annotated[
    list[str] | None,
    typer.Option("--src-option", metavar="KEY=VALUE", help="A storage option for SRC only."),
]
DstOptions = Annotated[
    list[str] | None,
    typer.Option("--dst-option", metavar="KEY=VALUE", help="A storage option for DST only."),
]
DaskScheduler = Annotated[
    str | None,
    typer.Option(
        "--dask-scheduler",
        metavar="ADDRESS",
        help=(
            "Run the listing and the copies as tasks on this Dask cluster "
            "(tcp://HOST:8786; pip install 'gens_fs[dask]'). Its workers open SRC and "
            "DST themselves: same URLs, options, and credentials in their environment; "
            "--jobs is then per task."
        ),
    ),
]
# How many held-back or uncommitted generations the summary names before "...".
NAMES_SHOWN: Final = 10


@app.command()
def sync(
    ctx: typer.Context,
    src: SourceArg,
    dst: DestinationArg,
    cohort: CohortOption = None,
    stage: StageList = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    where: WhereOption = None,
    delete: DeleteFlag = False,
    max_delete: MaxDelete = None,
    allow_empty_source: AllowEmptySource = False,
    allow_orphans: AllowOrphans = False,
    follow_symlinks: FollowSymlinks = False,
    dry_run: DryRun = False,
    checksum: Checksum = False,
    jobs: Jobs = DEFAULT_JOBS,
    verify: Verify = False,
    progress_interval: ProgressInterval = DEFAULT_INTERVAL,
    tpslimit: TpsLimit = None,
    bwlimit: BwLimit = None,
    fsync: Fsync = False,
    as_json: JsonFlag = False,
    option: OptionList = None,
    engine: EngineOption = EngineChoice.fsspec,
    src_option: SrcOptions = None,
    dst_option: DstOptions = None,
    dask_scheduler: DaskScheduler = None,
) -> None:
    """Mirror SRC onto DST: incremental, parents before children, metadata.json last.

    SRC must be a data root (it holds gens/ or cohorts/); DST a data root or a folder that
    is empty, absent or holds something else, apart from SRC. Symbolic links, FIFOs,
    sockets, devices and stray entries are left alone, one warning each on stderr.

    --include/--exclude/--where sync the generations they pick and all their ancestors
    (an evaluation brings its essay and draft), and leave cohorts/ out.

    Progress: a bar when stderr is a terminal; otherwise a line every --progress-interval
    seconds (none with -q or --dry-run).

    Exit 0 when everything in scope is synced; 1 when something was not (each on a line
    of its own with why: files that failed, run again to converge; generations held back
    for a missing parent, and the cohorts listing them, each saying what to do); 2 for
    usage and configuration errors, for a plan that is refused (too many deletes: a dry
    run shows it, then exits 2) and for access denied (one line naming the operation and
    the URL; nothing starts after it, nothing is half-written); 130 when
    interrupted (Ctrl-C; the destination stays consistent: run it again to finish).

    --tpslimit and --bwlimit bound the whole process (both sides, every transfer); a
    503 SlowDown answer slows every later request of that storage, whatever the limits.
    """
    shared = parse_options(option)
    src_options = {**shared, **parse_options(src_option)}
    dst_options = {**shared, **parse_options(dst_option)}
    selection = selection_from(ctx, include, exclude, where)
    limit = None if tpslimit is None and bwlimit is None else RateLimit(tpslimit, bwlimit)
    if dask_scheduler is not None and (limit is not None or fsync):
        fail("--tpslimit, --bwlimit and --fsync are for a sync on this machine, not a cluster")
    seen = LastProgress()
    shown = not dry_run and not verbosity.quiet
    bar = shown and err_console.is_terminal and not as_json
    lines = progress_interval if shown and not err_console.is_terminal else None
    try:
        with progress_shown(seen, bar=bar, lines_every=lines) as progress:
            options: dict[str, Any] = {
                "cohort": cohort,
                "stages": stage,
                "delete": delete,
                "max_delete": max_delete,
                "checksum": checksum,
                "src_options": src_options,
                "dst_options": dst_options,
                "allow_empty_source": allow_empty_source,
                "follow_symlinks": follow_symlinks,
                "allow_orphans": allow_orphans,
                "engine": engine.engine,
                "selection": selection,
            }
            run: dict[str, Any] = {
                "dry_run": dry_run,
                "jobs": jobs,
                "progress": progress,
                "verify": verify,
            }
            if dask_scheduler is not None:
                report = _sync_on_cluster(dask_scheduler, src, dst, **options, **run)
            else:
                report = _sync_here(src, dst, options, limit, seen, fsync=fsync, **run)
    except KeyboardInterrupt:
        interrupted(seen.interrupted_message())
    _warn(report)
    emit(report, as_json, lambda: _print_report(report))
    if report.refused is not None:
        fail(report.refused)
    if not report.ok:
        raise typer.Exit(1)


def _sync_here(
    src: str,
    dst: str,
    options: dict[str, Any],
    limit: RateLimit | None,
    seen: LastProgress,
    *,
    dry_run: bool,
    jobs: int,
    progress: ProgressCallback,
    verify: bool,
    fsync: bool,
) -> SyncReport:
    """Plan, then (unless ``dry_run`` or the plan is refused) apply, on this machine."""
    planned = plan_sync(src, dst, **options, limit=limit)
    seen.copying()
    if dry_run:
        return planned.report()
    if planned.refused is not None:  # nothing runs; --json still says why
        return planned.report(dry_run=False)
    return apply(planned, jobs=jobs, progress=progress, verify=verify, fsync=fsync)


def _warn(report: SyncReport) -> None:
    """One line on stderr per warning: entries left alone, files not compared."""
    for side in ("source", "destination"):
        found = [(e.path, e.reason) for e in report.ignored if e.side == side]
        warn_ignored(found, where=f"{side} ")
    for unread in report.unhashed:
        say(
            f"gens-fs: warning: {unread.path}: could not be read to compare it ({unread.error});"
            " copied again instead",
            err=True,
            log=logging.WARNING,
        )


def _sync_on_cluster(scheduler: str, src: str, dst: str, **keywords: Any) -> SyncReport:
    """The distributed sync on the Dask cluster at ``scheduler`` (its client closed at the
    end)."""
    from gens_fs import dask_sync

    try:
        client = dask_sync.connect(scheduler)
    except ImportError as exc:  # the dask extra is not installed: say which one
        fail(str(exc))
    try:
        return dask_sync.sync(src, dst, client=client, **keywords)
    finally:
        client.close()


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:NAMES_SHOWN])
    return shown if len(items) <= NAMES_SHOWN else f"{shown}, ... ({len(items):,} in all)"


def _print_report(report: SyncReport) -> None:
    """The summary on stdout, one line per fact; each error on a line of its own on
    stderr."""
    if report.dry_run:
        for action in report.actions or []:
            size = f" ({human_size(action.size)})" if action.size is not None else ""
            say(f"would {action.action} {action.path}{size}")  # the plan: output
    verb, deleted = ("would copy", "would delete") if report.dry_run else ("copied", "deleted")
    say(
        f"{report.src} -> {report.dst}: {verb} {plural(report.copied, 'file')} "
        f"({human_size(report.bytes)}), skipped {report.skipped:,} unchanged, "
        f"{deleted} {plural(report.deleted, 'file')} in {report.seconds:.2f} s"
        + (" (dry run: nothing changed)" if report.dry_run else ""),
        log=logging.INFO,
    )
    if report.held:
        count = plural(len(report.held), "generation")
        say(
            f"held back {count} (each error says why and what to do): {_names(report.held)}",
            log=logging.INFO,
        )
    if report.held_memberships:
        count = plural(len(report.held_memberships), "cohort membership")
        why = "listing them" if report.held else "(each error says why)"
        say(f"held back {count} {why}: {_names(report.held_memberships)}", log=logging.INFO)
    if report.deletes_skipped:
        say(_deletes_skipped(report), log=logging.INFO)
    for error in report.errors:
        say(f"gens-fs: error: {error.path}: {error.error}", err=True, log=logging.ERROR)
    if report.uncommitted:
        count = plural(len(report.uncommitted), "generation")
        names = _names(report.uncommitted)
        say(f"left {count} uncommitted (run again to converge): {names}", log=logging.INFO)
    if report.verified is not None:
        verdict = "verified" if report.verified else "verify found differences"
        say(verdict, log=logging.INFO if report.verified else logging.WARNING)


def _deletes_skipped(report: SyncReport) -> str:
    """Why the deletes did not run (or would not), and how many."""
    verb = "would be skipped" if report.dry_run else "skipped"
    count = plural(report.deletes_not_run, "file")
    if report.held:
        held = plural(len(report.held), "generation")
    elif report.held_memberships:
        held = plural(len(report.held_memberships), "cohort membership")
    else:
        return f"deletes {verb} ({count}) because some files failed"
    return f"deletes {verb} ({count}): {held} held back; deletes run once nothing is held"
