"""The sync executor: runs a ``SyncPlan``'s phases in order, each one concurrently.

Thin: every decision is in the plan; this module moves bytes. Within a phase up to ``jobs``
transfers are in flight on the one event loop (``gens_fs.backends.run``); a phase ends (a
barrier) before the next one starts, which is what makes parents-first and
``metadata.json``-last hold on the wire.

Three pieces: :class:`RunLedger` (the report of the run and the runtime half of the parent
rule, which decides each phase from the outcomes of the ones before), :class:`Transfers`
(the bytes: copies and deletes on the event loop) and :class:`Executor` (the two, on this
machine). ``gens_fs.dask_sync`` runs the same ledger with :class:`Transfers` in Dask tasks.

Requests per copied file: one PUT (local/memory -> S3), one GET (S3 -> local/memory), one
server-side COPY (S3 -> S3 on one endpoint; a GET and a PUT across endpoints), none for the
local side. Deletes on S3: one DeleteObjects per 1000 keys per delete phase.

Failures: transient errors (dropped connections, 5xx, timeouts) are retried by the backends
(the one retry layer: ``gens_fs.backends.retry``, so a file costs at most ``attempts``
requests at each side); a file that still fails is reported, its generation (and every
descendant) is left uncommitted, the rest goes on, and deletes are skipped. Rerunning
converges. Access denied is not a file's failure but the credentials': the first one
stops the run (``AccessDenied``, naming the operation and the file): no transfer starts
after it, the ones in flight end as they would (each file lands whole or not at all: none
is cut short, and no generation is committed without its files), then it is raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import NamedTuple, Protocol, TypeVar

from gens_fs.backends import Backend, run
from gens_fs.backends.retry import denial
from gens_fs.errors import AccessDenied
from gens_fs.layout import GenKey, join
from gens_fs.sync.plan import FileCopy, SyncPlan, generation_names
from gens_fs.sync.report import SyncError, SyncReport

log = logging.getLogger(__name__)

T = TypeVar("T")

# Enough in flight to hide 100 ms of latency per request (7,000 small files: about 6 s
# of round trips at 128, 22 s at 32), within s3fs's pool (S3_DEFAULT_OPTIONS).
DEFAULT_JOBS = 128


class SyncProgress(NamedTuple):
    """Progress so far, given to the ``progress`` callback after every file."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[SyncProgress], None]


class RunLedger:
    """What one run of a plan has done, kept in its ``SyncReport``, and the runtime half of
    the parent rule that follows from it: a generation with a failed file is not committed,
    nor are its descendants, nor a membership CSV that needs one; no delete runs after a
    failure, and a failed delete phase stops the later ones.

    Every executor (this module's, on one event loop; ``gens_fs.dask_sync``'s, on a Dask
    cluster) takes the phases from :meth:`copy_phases` and :meth:`delete_phases` and feeds
    back each outcome (:meth:`record`, :meth:`record_delete`), so the rules and the report
    are the same wherever the bytes move.
    """

    def __init__(
        self, report: SyncReport, plan: SyncPlan, progress: ProgressCallback | None = None
    ) -> None:
        self.report = report
        self.plan = plan
        self.progress = progress
        self._failed: set[GenKey] = set()
        self.failed = False  # a file failed in this run (the plan's held ones do not count)
        self._delete_failed = False
        self._files_total = len(plan.copies)
        self._bytes_total = plan.copy_bytes

    def copy_phases(self) -> Iterator[list[FileCopy]]:
        """The copy phases in order: files, the commits (parents' first), the
        membership CSVs. Each is decided when it is asked for, from the outcomes recorded so
        far: record every outcome of a phase before asking for the next (the barrier)."""
        yield list(self.plan.files)
        for phase in self.plan.commits:
            yield self._committable(phase)
        yield self._listable(self.plan.cohort_files)

    def delete_phases(self) -> Iterator[tuple[str, ...]]:
        """The delete phases to run (children's commits first), once every copy is recorded:
        none when a file failed (said in the report); none after a phase that failed."""
        if not self.plan.deletes:
            return
        if self.failed:
            self.report.deletes_skipped = True
            self.report.deletes_not_run += len(self.plan.delete_paths)
            log.warning("deletes skipped: some files failed")
            return
        for phase in self.plan.deletes:
            if phase:
                yield phase
            if self._delete_failed:
                return

    def record(self, copy: FileCopy, error: str | None) -> None:
        """One file's outcome: copied (``error`` is ``None``), or failed and why."""
        if error is None:
            self.report.copied += 1
            self.report.bytes += copy.size
            self._report_progress()
            return
        log.warning("sync: %s failed: %s", copy.relpath, error)
        self._error(copy.relpath, error)
        if copy.generation is not None:
            self._failed.add(copy.generation)
            if copy.relpath.endswith("/metadata.json"):
                self.report.uncommitted.append(f"{copy.generation[0]}/{copy.generation[1]}")

    def record_delete(self, relpaths: Iterable[str], error: str | None) -> None:
        """The outcome of deleting ``relpaths`` (one batch of a delete phase)."""
        paths = list(relpaths)
        if error is None:
            self.report.deleted += len(paths)
            return
        self._delete_failed = True
        for relpath in paths:
            self._error(relpath, error)

    def _committable(self, phase: Iterable[FileCopy]) -> list[FileCopy]:
        """The commits whose generation is whole and whose parent got committed; the others
        (and so, in later phases, their descendants) are marked failed."""
        out = []
        for commit in phase:
            assert commit.generation is not None
            if commit.generation in self._failed or commit.after in self._failed:
                self._failed.add(commit.generation)
                self.report.uncommitted.append(f"{commit.generation[0]}/{commit.generation[1]}")
            else:
                out.append(commit)
        return out

    def _listable(self, cohort_files: tuple[FileCopy, ...]) -> list[FileCopy]:
        """The membership CSVs whose generations all got committed. The plan held back those
        listing a held generation and says which generations each one needs
        (``FileCopy.needs``); one needing a generation this run left uncommitted (a file
        failed) is reported and waits for a rerun, so a destination's cohort never names a
        generation it does not have."""
        ready = []
        for copy in cohort_files:
            waiting = sorted(copy.needs & self._failed)
            if waiting:
                error = (
                    f"not synced: it lists generations left uncommitted "
                    f"({generation_names(waiting)}); run again to converge"
                )
                self._error(copy.relpath, error)
            else:
                ready.append(copy)
        return ready

    def _error(self, relpath: str, error: str) -> None:
        self.failed = True
        self.report.errors.append(SyncError(path=relpath, error=error))

    def _report_progress(self) -> None:
        if self.progress is not None:
            self.progress(
                SyncProgress(
                    self.report.copied, self._files_total, self.report.bytes, self._bytes_total
                )
            )


class PlanRunner(Protocol):
    """Runs a plan's phases as its ledger gives them, recording every outcome there."""

    def run(self, ledger: RunLedger) -> None: ...


class Transfers:
    """Moves bytes from ``src`` to ``dst`` (both data roots' backends), up to ``jobs``
    transfers in flight on the one event loop. ``prefetched`` holds source bytes already
    read (metadata read for planning), written as they are instead of being read again."""

    def __init__(
        self,
        src: Backend,
        dst: Backend,
        *,
        jobs: int = DEFAULT_JOBS,
        prefetched: Mapping[str, bytes] | None = None,
    ) -> None:
        self.src, self.dst = src, dst
        self.jobs = max(1, jobs)
        self.prefetched = dict(prefetched or {})
        self.server_side = dst.capabilities.server_copy_with(src.capabilities)
        self.denied: AccessDenied | None = None  # the first refusal: the run stops

    async def copy(
        self, copies: Iterable[FileCopy], done: Callable[[FileCopy, str | None], None]
    ) -> None:
        """Copy every file; ``done(copy, None)`` for each that landed, ``done(copy, why)``
        for each that failed (after the retries)."""
        limit = asyncio.Semaphore(self.jobs)

        async def one(copy: FileCopy) -> None:
            async with limit:
                if self.denied is not None:
                    return  # the run stops: nothing more starts
                try:
                    await self._transfer(copy)
                except AccessDenied as denied:
                    self.denied = self.denied or denied
                except Exception as exc:
                    done(copy, describe(exc))
                else:
                    done(copy, None)

        await asyncio.gather(*(one(c) for c in copies))
        if self.denied is not None:
            raise self.denied

    async def delete(self, relpaths: Iterable[str]) -> str | None:
        """Delete the files in one batch; ``None``, or why it failed."""
        paths = [join(self.dst.root, r) for r in relpaths]
        try:
            where = paths[0] if paths else self.dst.root
            await _named(self.dst, "deleting", where, self.dst.delete(paths))
        except AccessDenied:
            raise
        except Exception as exc:
            return describe(exc)
        return None

    async def _transfer(self, copy: FileCopy) -> None:
        src_path = join(self.src.root, copy.relpath)
        dst_path = join(self.dst.root, copy.relpath)
        data = self.prefetched.get(copy.relpath)
        if data is None and self.server_side:
            copied = self.dst.copy(src_path, dst_path, copy.size)
            await _named(self.dst, "copying", dst_path, copied)
            return
        if data is None:
            data = await _named(self.src, "reading", src_path, self._read(src_path))
        await _named(self.dst, "writing", dst_path, self.dst.write({dst_path: data}))

    async def _read(self, path: str) -> bytes:
        """One whole source file (``FileNotFoundError`` if missing): one request."""
        data = (await self.src.read([path]))[path]
        if isinstance(data, Exception):
            raise data
        if data is None:
            raise FileNotFoundError(path)
        return data


class Executor:
    """Runs a plan on this machine: each phase's transfers on the one event loop, a phase
    ending (a barrier) before the next starts."""

    def __init__(
        self,
        src: Backend,
        dst: Backend,
        *,
        jobs: int = DEFAULT_JOBS,
        prefetched: Mapping[str, bytes] | None = None,
    ) -> None:
        self.transfers = Transfers(src, dst, jobs=jobs, prefetched=prefetched)

    def run(self, ledger: RunLedger) -> None:
        """Run the ledger's plan to the end on the event loop (blocking). Interrupted
        (Ctrl-C), it stops cleanly before raising ``KeyboardInterrupt`` (see
        ``backends.loop.run``)."""
        run(self._run(ledger))

    async def _run(self, ledger: RunLedger) -> None:
        for copies in ledger.copy_phases():
            if copies:
                await self.transfers.copy(copies, ledger.record)
        for phase in ledger.delete_phases():
            ledger.record_delete(phase, await self.transfers.delete(phase))


async def _named(backend: Backend, operation: str, path: str, step: Awaitable[T]) -> T:
    """``await step``; a refusal of the credentials raised as ``AccessDenied`` naming
    ``operation`` and ``path``."""
    try:
        return await step
    except Exception as exc:
        denied = denial(exc, operation, backend.url(path))
        if denied is None:
            raise
        raise denied from None


def describe(exc: BaseException) -> str:
    """An exception as one line of a report: its type and message."""
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"
