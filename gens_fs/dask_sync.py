"""A sync whose listing and copies run as Dask tasks on a ``distributed`` cluster
(``pip install 'gens_fs[dask]'``): :func:`sync`, also ``gens_fs.dask.sync`` and
``gens-fs sync ... --dask-scheduler ADDRESS``.

It is :func:`gens_fs.sync.sync` with the work moved, not a second sync: the same plan
(:func:`~gens_fs.sync.plan_sync`, pure data, made in this process), the same runtime rules
and report (:class:`~gens_fs.sync.execute.RunLedger`), the same byte mover
(:class:`~gens_fs.sync.execute.Transfers`) inside each task. What moves to the workers:

* **the listings**: one task per folder the plan lists at each side (each stage folder, and
  ``cohorts/``), which opens the root on its worker and lists it there, as the
  single-machine sync would (on an object store a folder of more than a page is listed in
  parallel shards by key prefix, on that worker: :mod:`gens_fs.backends.sharded`); the
  driver merges the listings, in folder order, into the one
  :class:`~gens_fs.listing.Listing` per side the planner reads (:class:`ClusterLister` says
  why a folder is not spread over several workers). The reads the plan makes (parents'
  ``metadata.json``, membership CSVs, hashes where a listing gives none) stay batched in
  this process.
* **the copies**: each phase (files, drafts' commits, essays', evaluations', membership
  CSVs) is split into batches of at most ``batch_size`` files, at least one per worker
  thread; each batch is a task that opens both roots on its worker and copies its files
  ``jobs`` at a time, returning each file's outcome. Only the batch's relpaths and sizes
  travel, plus the bytes the plan already read for its files (``metadata.json`` and
  membership CSVs), not the whole plan.
* **the deletes**: each delete phase in batches of tasks, the same way.

**Guarantees.** A phase's tasks all end before the ledger decides the next phase from their
outcomes (the barrier), so drafts' commits land before essays', essays' before
evaluations', the membership CSVs after, deletes last and only when nothing failed: what a
reader sees at the destination, at any moment, is what the single-machine sync lets it see.
A worker that dies mid-task has its task run again by Dask on another worker (copies are
idempotent: the same bytes to the same path); a task that still fails (its workers kept
dying: ``KilledWorker``; a root its worker cannot open) fails its files, which the ledger
treats as any failed file: their generations stay uncommitted, and so do their descendants
and the membership CSVs naming them, deletes are skipped, and a rerun converges. Ctrl-C
cancels the tasks not started; those running finish their batch, of the current phase only.

**Roots** are given as paths or URLs with their storage options (not as ``DataRoot``
objects): every task opens them anew on its worker, so the driver and every worker must
reach them with the same URL and options (credentials from each one's environment, a local
path on a filesystem they share; a relative one is made absolute here). A ``memory://`` root
lives in one process: refused unless every worker runs in this one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from gens_fs.backends import Engine, RetryPolicy, SyncBackend, run
from gens_fs.backends.file_table import FileTable
from gens_fs.data_root import DataRoot
from gens_fs.errors import GensError, StorageError
from gens_fs.listing import Listing, list_data_root
from gens_fs.selection import Selection
from gens_fs.sync.api import plan_sync, run_plan
from gens_fs.sync.execute import (
    DEFAULT_JOBS,
    ProgressCallback,
    RunLedger,
    Transfers,
    describe,
)
from gens_fs.sync.plan import FileCopy
from gens_fs.sync.report import SyncReport
from gens_fs.sync.roots import open_root

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")

# Files per copy task. Large enough that a task's own cost (scheduling, opening the roots
# on its worker: milliseconds) is small beside its copies (``jobs`` in flight), small enough
# that a worker lost mid-task costs little to redo. Phases smaller than this times the
# number of worker threads are split among all the threads instead.
BATCH_SIZE = 1000


class ClusterUnavailable(GensError):
    """No Dask cluster to run on: no client given nor created, or the scheduler at the
    address given cannot be reached."""


def sync(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    client: Client | None = None,
    cohort: str | None = None,
    stages: Iterable[str] | None = None,
    delete: bool = False,
    max_delete: int | None = None,
    dry_run: bool = False,
    checksum: bool = False,
    jobs: int | None = None,
    progress: ProgressCallback | None = None,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
    verify: bool = False,
    retry: RetryPolicy | None = None,
    allow_empty_source: bool = False,
    follow_symlinks: bool = False,
    allow_orphans: bool = False,
    engine: Engine = "fsspec",
    selection: Selection | None = None,
    batch_size: int = BATCH_SIZE,
) -> SyncReport:
    """:func:`gens_fs.sync` (the same keywords, report, errors and guarantees) with the
    listing and the copies run as tasks on the Dask cluster of ``client`` (default:
    ``distributed.default_client()``). ``jobs``: transfers in flight per task; ``batch_size``:
    files per task at most. ``progress``: called as each task's files are recorded. Errors:
    ``ClusterUnavailable`` (no client), ``StorageError`` (a root the workers cannot reach)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    source = Side.open(src, src_options, engine, retry)
    target = Side.open(dst, dst_options, engine, retry)
    cluster = _client(client)
    _check_reachable(cluster, (source, target))
    planned = plan_sync(
        source.root,
        target.root,
        cohort=cohort,
        stages=stages,
        delete=delete,
        max_delete=max_delete,
        checksum=checksum,
        allow_empty_source=allow_empty_source,
        follow_symlinks=follow_symlinks,
        allow_orphans=allow_orphans,
        selection=selection,
        lister=ClusterLister(cluster, (source, target)),
    )
    if dry_run:
        return planned.report()
    executor = ClusterExecutor(
        cluster,
        source.spec,
        target.spec,
        prefetched=planned.prefetched,
        jobs=jobs or DEFAULT_JOBS,
        batch_size=batch_size,
    )
    return run_plan(planned, executor, progress=progress, verify=verify)


def connect(address: str) -> Client:
    """A client of the Dask scheduler at ``address`` (``tcp://host:8786``; the scheme may be
    left out), or ``ClusterUnavailable`` saying why not. It waits for the scheduler as long
    as Dask's ``distributed.comm.timeouts.connect`` (30 s unless configured)."""
    _require_distributed()
    from distributed import Client
    from distributed.comm.addressing import get_address_host_port, normalize_address

    try:
        # Checked first: a client built on a malformed address fails, then blocks on its
        # way out (a minute) while it closes a connection it never had.
        get_address_host_port(normalize_address(address))
    except ValueError as exc:
        raise ClusterUnavailable(f"bad Dask scheduler address {address!r}: {exc}") from None
    try:
        return Client(address, set_as_default=False)
    except OSError as exc:
        raise ClusterUnavailable(
            f"cannot reach the Dask scheduler at {address}: {exc}; check the address, and that "
            "the scheduler is running (dask scheduler)"
        ) from None


@dataclass(frozen=True)
class RootSpec:
    """A root as a task opens it on its worker: everything in it pickles."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    engine: Engine = "fsspec"
    retry: RetryPolicy | None = None

    def open(self) -> SyncBackend:
        return open_root(self.url, self.options, self.engine, self.retry)


@dataclass(frozen=True)
class Side:
    """One root of the sync: opened here (``root``, for the plan) and as the workers open it
    (``spec``)."""

    root: DataRoot
    spec: RootSpec

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        options: Mapping[str, Any] | None,
        engine: Engine,
        retry: RetryPolicy | None,
    ) -> Side:
        if isinstance(root, DataRoot):
            raise TypeError(
                "a distributed sync opens its roots on every worker: give the root as a path "
                "or URL with its storage options (src_options=, dst_options=), not a DataRoot"
            )
        opened = DataRoot(root, storage_options=options, engine=engine, retry=retry)
        # On local disk the path the backend resolved (absolute): workers do not share this
        # process's working directory. Elsewhere the URL as given (chained URLs included).
        url = opened.url if opened.backend.backend.service == "file" else os.fspath(root)
        return cls(opened, RootSpec(url, dict(options or {}), engine, retry))

    @property
    def in_this_process_only(self) -> bool:
        return self.root.backend.backend.service == "memory"


class ClusterLister:
    """:func:`~gens_fs.listing.list_data_root` of a side, one task per folder: the plan's
    :class:`~gens_fs.sync.api.Lister` for both sides (and ``verify``'s).

    A folder is one task, not spread over several workers. Its listing is already in
    parallel where it is large: the backend's ``scan`` on the worker lists a stage of more
    than a page in shards by key prefix, up to 64 at once, so the wait is a few round trips,
    not a page chain (a stage of 10^5 keys at 100 ms: 129 listings, the one-process
    listing's, in 26-27 s on a worker where a page chain takes 53-54 s, plus under a second
    to bring the entries here; ``benchmarks/README.md``, *Distributed sync*). Spreading the
    shards over workers would divide only the worker's CPU, parsing the pages (about 60 us
    a key with botocore), while every entry still travels to this process, which merges
    them and plans over all of them, so the wait would not shrink in proportion. And
    it would not stay simple and complete: shards are key ranges (a prefix, where to start,
    where to stop) found from each first page, which the backend contract does not take
    (``scan`` takes prefixes), and splitting a stage by gen_id prefix alone would miss a
    stray whose first character is outside the gen_id alphabet."""

    def __init__(self, client: Client, sides: Sequence[Side]) -> None:
        self.client = client
        self.sides = sides

    def __call__(
        self, backend: SyncBackend, folders: Sequence[str], *, follow_symlinks: bool = False
    ) -> Listing:
        spec = next(s.spec for s in self.sides if s.root.backend.same_root(backend))
        token = uuid.uuid4().hex[:8]
        futures = {
            self.client.submit(
                list_folder, spec, folder, follow_symlinks, key=f"gens_fs-list-{token}-{n}"
            ): folder
            for n, folder in enumerate(folders)
        }
        found: dict[str, Listing] = {}
        for folder, listing, error in outcomes(self.client, futures):
            if isinstance(error, GensError):  # a mistake to fix: say where it was met
                raise type(error)(f"{error} (met by a Dask worker listing {folder})") from None
            if error is not None:
                raise error
            found[folder] = listing
        files = FileTable.merged(found[folder].files for folder in folders)
        ignored = tuple(i for folder in folders for i in found[folder].ignored)
        return Listing(files, ignored)


class ClusterExecutor:
    """Runs a plan's phases as batches of Dask tasks (a :class:`PlanRunner`): each phase's
    tasks all end, their outcomes recorded in the ledger, before the next phase is asked
    for."""

    def __init__(
        self,
        client: Client,
        src: RootSpec,
        dst: RootSpec,
        *,
        prefetched: Mapping[str, bytes],
        jobs: int = DEFAULT_JOBS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.client = client
        self.src, self.dst = src, dst
        self.prefetched = prefetched
        self.jobs = jobs
        self.batch_size = batch_size
        self._run = uuid.uuid4().hex[:8]

    def run(self, ledger: RunLedger) -> None:
        for n, copies in enumerate(ledger.copy_phases()):
            if copies:
                self._copy(f"copy{n}", copies, ledger)
        for n, phase in enumerate(ledger.delete_phases()):
            self._delete(f"delete{n}", phase, ledger)

    def _copy(self, phase: str, copies: Sequence[FileCopy], ledger: RunLedger) -> None:
        futures: dict[Future[Any], Sequence[FileCopy]] = {}
        for n, batch in enumerate(self._batches(copies)):
            files = [(c.relpath, c.size) for c in batch]
            # Only the bytes this batch writes travel with it.
            data = {r: self.prefetched[r] for r, _size in files if r in self.prefetched}
            key = f"gens_fs-{phase}-{self._run}-{n}"
            future = self.client.submit(
                copy_files, self.src, self.dst, files, data, self.jobs, key=key
            )
            futures[future] = batch
        for batch, results, error in outcomes(self.client, futures):
            if error is not None:
                why = f"its Dask task failed: {describe(error)}"
                for copy in batch:
                    ledger.record(copy, why)
                continue
            by_path = {c.relpath: c for c in batch}
            for relpath, why in results:
                ledger.record(by_path[relpath], why)

    def _delete(self, phase: str, relpaths: Sequence[str], ledger: RunLedger) -> None:
        futures = {
            self.client.submit(
                delete_files, self.dst, list(batch), key=f"gens_fs-{phase}-{self._run}-{n}"
            ): batch
            for n, batch in enumerate(self._batches(relpaths))
        }
        for batch, why, error in outcomes(self.client, futures):
            if error is not None:
                why = f"its Dask task failed: {describe(error)}"
            ledger.record_delete(batch, why)

    def _batches(self, items: Sequence[T]) -> list[Sequence[T]]:
        """``items`` in batches of at most ``batch_size``, at least one per worker thread
        (when there are that many items), so a small phase still uses every worker."""
        threads = max(1, sum(self.client.nthreads().values()))
        size = max(1, min(self.batch_size, -(-len(items) // threads)))
        return [items[start : start + size] for start in range(0, len(items), size)]


# -- the tasks: module-level functions, so workers import them rather than unpickle code --


def list_folder(spec: RootSpec, folder: str, follow_symlinks: bool) -> Listing:
    """On a worker: :func:`~gens_fs.listing.list_data_root` of one folder of a root."""
    return list_data_root(spec.open(), [folder], follow_symlinks=follow_symlinks)


def copy_files(
    src: RootSpec,
    dst: RootSpec,
    files: Sequence[tuple[str, int]],
    prefetched: Mapping[str, bytes],
    jobs: int,
) -> list[tuple[str, str | None]]:
    """On a worker: copy one batch of ``(relpath, size)``, ``jobs`` at a time; each file's
    relpath and ``None``, or why it failed (after the retries)."""
    transfers = Transfers(src.open().backend, dst.open().backend, jobs=jobs, prefetched=prefetched)
    done: list[tuple[str, str | None]] = []
    copies = [FileCopy(relpath, size) for relpath, size in files]
    run(transfers.copy(copies, lambda copy, why: done.append((copy.relpath, why))))
    return done


def delete_files(dst: RootSpec, relpaths: Sequence[str]) -> str | None:
    """On a worker: delete one batch of files; ``None``, or why it failed."""
    backend = dst.open().backend
    return run(Transfers(backend, backend).delete(relpaths))


# -- the driver's side -------------------------------------------------------------------


def outcomes(
    client: Client, futures: Mapping[Future[Any], T]
) -> Iterator[tuple[T, Any, Exception | None]]:
    """Each task's item and result, or ``None`` and its exception, as the tasks finish. If
    the caller stops early (Ctrl-C, an error), the tasks not finished are cancelled."""
    from distributed import as_completed

    try:
        for future in as_completed(list(futures), loop=client.loop):
            try:
                result = future.result()
            except Exception as exc:
                yield futures[future], None, exc
            else:
                yield futures[future], result, None
    except BaseException:
        client.cancel(list(futures))
        raise


def _client(client: Client | None) -> Client:
    if client is not None:
        return client
    _require_distributed()
    from distributed import default_client

    try:
        found: Client = default_client()
    except ValueError:
        raise ClusterUnavailable(
            "no Dask client: pass client=distributed.Client(ADDRESS), or create one first"
        ) from None
    return found


def _check_reachable(client: Client, sides: Iterable[Side]) -> None:
    """``StorageError`` for a ``memory://`` root when a worker runs in another process:
    it would list and write a memory of its own."""
    local = [side.spec.url for side in sides if side.in_this_process_only]
    if local and set(client.run(os.getpid).values()) != {os.getpid()}:
        raise StorageError(
            f"{local[0]} lives in this process's memory, which the Dask workers (other "
            "processes) cannot reach: sync a path or a bucket they share, or run the workers "
            "in this process (LocalCluster(processes=False))"
        )


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:  # the extra is optional; say which one to install
        raise ImportError(
            "a distributed sync needs Dask's distributed scheduler: pip install 'gens_fs[dask]'"
        ) from exc
