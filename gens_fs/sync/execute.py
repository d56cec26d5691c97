"""The sync executor: runs a ``SyncPlan``'s phases in order, each one concurrently.

Thin: every decision is in the plan; this module moves bytes. Within a phase up to ``jobs``
transfers are in flight on the one event loop (``gens_fs.backends.run``); a phase ends (a
barrier) before the next one starts, which is what makes parents-first and
``metadata.json``-last hold on the wire.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar

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


class Executor:
    """Runs one plan from ``src`` to ``dst``, recording what it does in ``report``.
    ``prefetched`` holds source bytes already read (metadata read for planning), written as
    they are instead of being read again."""

    def __init__(
        self,
        src: Backend,
        dst: Backend,
        report: SyncReport,
        *,
        jobs: int = DEFAULT_JOBS,
        prefetched: Mapping[str, bytes] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.src, self.dst = src, dst
        self.jobs = max(1, jobs)
        self.prefetched = dict(prefetched or {})
        self.progress = progress
        self.server_side = dst.capabilities.server_copy_with(src.capabilities)
        self.result = report
        self._failed: set[GenKey] = set()
        self.failed = False  # a file failed in this run (the plan's held ones do not count)
        self._files_total = 0
        self._bytes_total = 0
        self._denied: AccessDenied | None = None  # the first refusal: the run stops

    def run(self, plan: SyncPlan) -> None:
        """Run ``plan`` to the end on the event loop (blocking). Interrupted (Ctrl-C), it
        stops cleanly before raising ``KeyboardInterrupt`` (see ``backends.loop.run``)."""
        run(self._run(plan))

    async def _run(self, plan: SyncPlan) -> None:
        self._files_total = len(plan.copies)
        self._bytes_total = plan.copy_bytes
        await self._copy_phase(plan.files)
        for phase in plan.commits:
            await self._copy_phase(self._committable(phase))
        await self._copy_phase(self._listable(plan.cohort_files))
        if plan.deletes:
            if self.failed:
                self.result.deletes_skipped = True
                self.result.deletes_not_run += len(plan.delete_paths)
                log.warning("deletes skipped: some files failed")
            else:
                await self._delete_phases(plan.deletes)

    def _committable(self, phase: Iterable[FileCopy]) -> list[FileCopy]:
        """The commits whose generation is whole and whose parent got committed; the others
        (and so, in later phases, their descendants) are marked failed."""
        out = []
        for commit in phase:
            assert commit.generation is not None
            if commit.generation in self._failed or commit.after in self._failed:
                self._failed.add(commit.generation)
                self.result.uncommitted.append(f"{commit.generation[0]}/{commit.generation[1]}")
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

    async def _copy_phase(self, copies: list[FileCopy] | tuple[FileCopy, ...]) -> None:
        if not copies:
            return
        limit = asyncio.Semaphore(self.jobs)

        async def one(copy: FileCopy) -> None:
            async with limit:
                if self._denied is not None:
                    return  # the run stops: nothing more starts
                try:
                    await self._transfer(copy)
                except AccessDenied as denied:
                    self._denied = self._denied or denied
                except Exception as exc:
                    self._fail(copy, exc)
                else:
                    self.result.copied += 1
                    self.result.bytes += copy.size
                    self._report_progress()

        await asyncio.gather(*(one(c) for c in copies))
        if self._denied is not None:
            raise self._denied

    def _fail(self, copy: FileCopy, exc: Exception) -> None:
        log.warning("sync: %s failed: %s", copy.relpath, exc)
        self._error(copy.relpath, _describe(exc))
        if copy.generation is not None:
            self._failed.add(copy.generation)
            if copy.relpath.endswith("/metadata.json"):
                where = f"{copy.generation[0]}/{copy.generation[1]}"
                self.result.uncommitted.append(where)

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

    async def _delete_phases(self, phases: tuple[tuple[str, ...], ...]) -> None:
        """Each phase in one batch; a failing phase stops the later ones (a parent is never
        uncommitted while a child's uncommit failed)."""
        for phase in phases:
            if not phase:
                continue
            paths = [join(self.dst.root, r) for r in phase]
            try:
                await _named(self.dst, "deleting", paths[0], self.dst.delete(paths))
            except AccessDenied:
                raise
            except Exception as exc:
                for relpath in phase:
                    self._error(relpath, _describe(exc))
                return
            self.result.deleted += len(phase)

    def _error(self, relpath: str, error: str) -> None:
        self.failed = True
        self.result.errors.append(SyncError(path=relpath, error=error))

    def _report_progress(self) -> None:
        if self.progress is not None:
            self.progress(
                SyncProgress(
                    self.result.copied, self._files_total, self.result.bytes, self._bytes_total
                )
            )


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


def _describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"
