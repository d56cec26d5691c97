"""S3, Google Cloud Storage and Azure Blob through obstore (``pip install 'gens_fs[obstore]'``).

The second engine behind the one backend contract: obstore (Rust's ``object_store``)
signs and sends requests in compiled code, where the default engine's s3fs spends most of
its client CPU in botocore. Chosen with ``engine="obstore"``; how a root's options and the
environment become its stores is :mod:`gens_fs.backends.obstore_config`. The coroutines
call obstore's blocking API in worker threads (why: :data:`_WORKERS`); a Ctrl-C lets the
requests already sent finish (each bounded by obstore's timeouts) before the process ends.

Requests, per primitive (S3 names; Azure and GCS send their equivalents):

* ``read``: one GET per file, no HEAD (a missing file is the GET's 404);
* ``write``: one PUT per file (obstore switches to a multipart upload above 5 MiB);
* ``create``: one conditional PUT (``If-None-Match: *``; on GCS
  ``x-goog-if-generation-match: 0``): the service decides a race;
* ``scan``: ListObjectsV2 pages only, reduced to size and ETag as they arrive; a prefix
  of more than a page in parallel shards (S3, GCS; Azure: one chain of pages);
* ``children``: one delimited listing (every page of it: obstore cannot stop early);
* ``delete``: DeleteObjects per 1,000 keys (Azure: a Blob Batch per 256; GCS: one DELETE
  each); a missing file is fine;
* ``copy``: one CopyObject (Copy Blob), within one bucket or container only (obstore copies
  within one store), and on S3 up to 5 GiB;
* ``stream``: one GET, read as the caller iterates.

What a listing's hash is: on S3 the ETag, the MD5 of the bytes for a single-part upload
(``"md5"``, as the default engine). obstore's listings carry only the ETag, which on Azure
and GCS is not the MD5 of the bytes, so there the listing declares no hash (a sync compares
sizes there unless asked for ``--checksum``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Literal, TypeVar

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import AzureStore, GCSStore, S3Store

from gens_fs.backends.base import (
    PROBE_TIMEOUT_S,
    STREAM_CHUNK,
    Backend,
    Capabilities,
    Children,
    FileInfo,
    ListingHash,
    PageRetry,
    ReadResult,
    Scan,
)
from gens_fs.backends.file_table import FileTable, FileTableBuilder
from gens_fs.backends.obstore_config import StoreSettings
from gens_fs.backends.obstore_listing import SHARDED_KINDS, first_page, list_chain
from gens_fs.backends.retry import is_access_denied
from gens_fs.backends.sharded import Page, Shard, list_prefix
from gens_fs.errors import StorageError

T = TypeVar("T")

# Requests in flight at once for a batch of reads, writes or deletes (what fsspec's batched
# gather gives the default engine, so the engines compare at the same concurrency).
IN_FLIGHT = 128
# obstore is called through its blocking API, one call per worker thread (the GIL released
# while it waits), never through its ``*_async`` API. Those resolve each Python future from
# a Tokio thread that attaches to the interpreter; when a process exits right after (a CLI
# command's last request), that thread can attach while the interpreter is finalizing, and
# the process dies of SIGABRT instead of exiting (measured: 13-22 exits in 100 of a script
# that gathers three ``get_async`` or ``put_async`` and returns; 0 in 200 with the blocking
# API in threads). A pooled thread costs some CPU per request (see benchmarks/README.md).
_WORKERS = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="gens-fs-obstore")

# Keys per delete call (S3's DeleteObjects limit; obstore splits further where needed).
DELETE_BATCH = 1000
# Listing errors that mean the bucket or container is not there.
_NO_BUCKET = ("NoSuchBucket", "ContainerNotFound", "The specified container does not exist")
# What an obstore error says when the connection, not the request, failed: a body cut
# short, a reset, a timeout, a 5xx. obstore raises these as its GenericError; they are
# re-raised as ``ConnectionError`` so that gens_fs's retry layer (``backends/retry.py``;
# obstore itself retries nothing here) treats them as the transient errors they are.
_TRANSIENT = (
    "body error",
    "error sending request",
    "IncompleteBody",
    "connection closed",
    "timed out",
    "status code: 5",
)
# What a refused request says (obstore's S3 store raises a 403 as its generic error).
_REFUSED = "status code: 403"
# Errors that mean no credentials were found: obstore then asks the cloud's instance
# metadata service, which answers only on a cloud VM.
_NO_CREDENTIALS = ("169.254.169.254", "credential", "Credential")
_SCHEMES = {"s3": "s3", "azure": "az", "gcs": "gs"}
_PROBE_CLIENT = {"timeout": f"{PROBE_TIMEOUT_S:g}s", "connect_timeout": f"{PROBE_TIMEOUT_S:g}s"}
_STORES: dict[str, Any] = {"s3": S3Store, "azure": AzureStore, "gcs": GCSStore}


class ObstoreBackend(Backend):
    """A ``bucket/prefix`` root (container for Azure) through obstore: one store per
    bucket, built on first use from the same :class:`StoreSettings`."""

    def __init__(self, settings: StoreSettings, root: str) -> None:
        super().__init__(root)
        self.settings = settings
        self._stores: dict[str, Any] = {}
        self.capabilities = self._capabilities()

    def _capabilities(self) -> Capabilities:
        # obstore copies within one store: one bucket, one client.
        bucket = self.root.lstrip("/").partition("/")[0]
        scope = f"obstore {self.service} {bucket} {self.settings.credential_id}"
        listing_hash: ListingHash | None = "md5" if self.settings.kind == "s3" else None
        return Capabilities(
            exclusive_create=True, listing_hash=listing_hash, costs_requests=True, copy_scope=scope
        )

    @property
    def service(self) -> str:
        # The default engine's form, so that one root opened with either engine is the same.
        return f"{_SCHEMES[self.settings.kind]} {self.settings.endpoint}"

    def url(self, path: str) -> str:
        return f"{_SCHEMES[self.settings.kind]}://{path.lstrip('/')}"

    def path_of(self, location: str) -> str:
        return bucket_path(location)

    def at(self, root: str) -> ObstoreBackend:
        other = super().at(root)
        other.capabilities = other._capabilities()
        return other

    def _probe_store(self, bucket: str) -> Any:
        """A store for the first listing only, whose every request ends within
        :data:`PROBE_TIMEOUT_S`: a worker thread waiting on an endpoint that does not answer
        would otherwise hold the process at exit for the client's full timeout."""
        key = f"probe {bucket}"
        store = self._stores.get(key)
        if store is None:
            bounded = replace(
                self.settings,
                client_options={**self.settings.client_options, **_PROBE_CLIENT},
            )
            store = self._stores[key] = _build_store(bounded, bucket, self.url(bucket))
        return store

    def _locate(self, path: str) -> tuple[Any, str]:
        """The store of ``path``'s bucket and the key inside it."""
        bucket, _, key = path.lstrip("/").partition("/")
        store = self._stores.get(bucket)
        if store is None:
            store = self._stores[bucket] = _build_store(self.settings, bucket, self.url(path))
        return store, key

    async def read(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        values = await _bounded([self._read_one(p) for p in paths])
        return dict(zip(paths, values, strict=True))

    async def _read_one(self, path: str) -> ReadResult:
        store, key = self._locate(path)
        try:
            return await _in_thread(_get_bytes, store, key)
        except (FileNotFoundError, NotFoundError):
            return None
        except Exception as exc:  # a value: the caller reports each file
            return _translated(exc)

    async def write(self, files: Mapping[str, bytes]) -> None:
        await _bounded([self._put(path, data, "overwrite") for path, data in files.items()])

    async def create(self, path: str, data: bytes) -> bool:
        """One conditional PUT: the service decides the race."""
        try:
            await self._put(path, data, "create")
        except AlreadyExistsError:
            return False
        return True

    async def _put(self, path: str, data: bytes, mode: Literal["create", "overwrite"]) -> None:
        store, key = self._locate(path)
        with _connection_errors():
            await _in_thread(functools.partial(obstore.put, store, key, data, mode=mode))

    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        """Every object under each prefix with its size (and ETag on S3): listing pages
        only, the prefixes side by side, and on S3 and GCS a prefix that holds more than a
        page listed in parallel shards by key prefix (:mod:`gens_fs.backends.sharded`,
        one request per shard: :mod:`gens_fs.backends.obstore_listing`); on Azure one
        chain of pages (no start-after there). A missing bucket raises ``StorageError``."""
        parts = await asyncio.gather(*(self._collect(p, retry_page) for p in prefixes))
        return Scan(FileTable.merged(parts))

    @property
    def pages_retried(self) -> bool:
        return self.settings.kind in SHARDED_KINDS

    async def _collect(self, folder: str, retry_page: PageRetry | None) -> FileTable:
        store, key = self._locate(folder)
        bucket = folder.lstrip("/").partition("/")[0] + "/"
        prefix, with_etag = key.strip("/"), self.settings.kind == "s3"
        if self.settings.kind in SHARDED_KINDS:
            return await _list_sharded(
                lambda shard: self._first_page(store, prefix, folder, shard, with_etag),
                prefix,
                bucket,
                retry_page,
            )
        try:
            return await _in_thread(list_chain, store, prefix, bucket, with_etag)
        except BaseError as exc:
            mapped = self._mapped(exc, folder)
            raise mapped from _cause(mapped, exc)

    async def _first_page(
        self, store: Any, prefix: str, folder: str, shard: Shard, with_etag: bool
    ) -> Page[FileInfo]:
        """One shard's request (see :func:`~gens_fs.backends.obstore_listing.first_page`),
        its error mapped as every request's is, for the retry layer to judge."""
        try:
            return await _in_thread(first_page, store, prefix, shard, with_etag)
        except BaseError as exc:
            mapped = self._mapped(exc, folder)
            raise mapped from _cause(mapped, exc)

    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """One delimited listing within :data:`PROBE_TIMEOUT_S` (the first request most
        commands send: an endpoint that does not answer is one line, not a hang)."""
        if not path.strip("/"):
            raise StorageError(f"{self.url(path)!r} names no bucket: use {self.url('BUCKET')}")
        bucket, _, key = path.lstrip("/").partition("/")
        store = self._probe_store(bucket)
        prefix = key.strip("/")
        try:
            listed = await asyncio.wait_for(
                _in_thread(obstore.list_with_delimiter, store, prefix or None), PROBE_TIMEOUT_S
            )
        except asyncio.TimeoutError:
            raise StorageError(
                f"cannot reach the storage endpoint for {self.url(path)}: no answer within "
                f"{PROBE_TIMEOUT_S:g} s; check the endpoint and the network"
            ) from None
        except BaseError as exc:  # the first request most commands send: one line
            mapped = self._mapped(exc, path)  # (a transient one after gens_fs's retries)
            if mapped is exc and not is_access_denied(exc):
                mapped = StorageError(f"cannot list {self.url(path)}: {_first(exc)}")
            raise mapped from _cause(mapped, exc)
        start = len(prefix) + 1 if prefix else 0
        folders = {p[start:] for p in listed["common_prefixes"]}
        files = {meta["path"][start:] for meta in listed["objects"]} - {""}
        return Children(frozenset(folders), frozenset(files), True if folders or files else None)

    async def delete(self, paths: Sequence[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for path in paths:
            by_bucket.setdefault(path.lstrip("/").partition("/")[0], []).append(path)
        for group in by_bucket.values():
            for start in range(0, len(group), DELETE_BATCH):
                await self._delete_batch(group[start : start + DELETE_BATCH])

    async def _delete_batch(self, paths: list[str]) -> None:
        """One bulk delete; where the service reports a missing file as an error (Azure,
        GCS), each file again on its own, a missing one ignored."""
        store = self._locate(paths[0])[0]
        keys = [self._locate(p)[1] for p in paths]
        try:
            with _connection_errors():
                await _in_thread(obstore.delete, store, keys)
        except (FileNotFoundError, NotFoundError):
            await _bounded([_delete_if_there(store, key) for key in keys])

    async def copy(self, src: str, dst: str, size: int) -> None:
        """One server-side copy within the bucket (the capabilities allow no other)."""
        store, src_key = self._locate(src)
        dst_store, dst_key = self._locate(dst)
        if dst_store is not store:
            raise NotImplementedError("obstore copies server side within one bucket only")
        with _connection_errors():
            await _in_thread(obstore.copy, store, src_key, dst_key)

    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        """One GET, its body read as the caller iterates, in chunks of at most
        ``chunk_size``."""
        store, key = self._locate(path)
        try:
            with _connection_errors():
                result = await _in_thread(obstore.get, store, key)
        except (FileNotFoundError, NotFoundError):
            return None
        return _rechunked(result.stream(min_chunk_size=chunk_size), chunk_size)

    def storage_error(self, exc: BaseException) -> StorageError | None:
        # a transient failure, after gens_fs's retries, is raised as a ConnectionError
        cause = exc.__cause__ if isinstance(exc, ConnectionError) else exc
        if isinstance(cause, BaseError):
            return self._mapped(cause, self.root, only_storage=True)
        return super().storage_error(exc)

    def _mapped(
        self, exc: Exception, path: str, *, only_storage: bool = False
    ) -> StorageError | Any:
        """What an obstore error means for the storage, or, when it concerns one request
        (``None`` with ``only_storage``), ``exc`` as Python names it (see
        :func:`_translated`: a refusal is raised as it is, for the caller to name the
        operation). An endpoint that cannot be reached is one such request (retried) until
        ``only_storage`` (after the retries) says what it means."""
        where, text = self.url(path), str(exc)
        if any(marker in text for marker in _NO_CREDENTIALS):  # before a 403 of the IMDS
            return StorageError(
                f"no credentials for {where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE (Azure: AZURE_STORAGE_CONNECTION_STRING...), or pass storage "
                f"options ({_first(exc)})"
            )
        if not only_storage and is_access_denied(_translated(exc)):
            return _translated(exc)
        if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
            return StorageError(f"access denied to {where}: check your credentials ({_first(exc)})")
        if any(marker in text for marker in _NO_BUCKET):
            bucket = path.lstrip("/").partition("/")[0]
            return StorageError(
                f"bucket or container {bucket!r} does not exist (or is not visible with these "
                f"credentials): create it or fix the URL {where}"
            )
        if not only_storage:
            return _translated(exc)
        if "error sending request" in text or "Connection refused" in text:
            return StorageError(f"cannot reach the storage endpoint for {where}: {_first(exc)}")
        return None


def bucket_path(location: str) -> str:
    """``s3://bucket/key`` (or ``bucket/key``) as this engine's path: ``bucket/key``."""
    _, sep, rest = location.partition("://")
    return (rest if sep else location).strip("/")


def _build_store(settings: StoreSettings, bucket: str, url: str) -> Any:
    """One obstore store for ``bucket``; a setting obstore refuses is a ``StorageError``."""
    store_class = _STORES[settings.kind]
    try:
        return store_class(
            bucket,
            config=settings.config,
            client_options=settings.client_options or None,
            retry_config=settings.retry_config,
        )
    except BaseError as exc:
        raise StorageError(f"cannot open {url!r} with the obstore engine: {_first(exc)}") from None


def _translated(exc: Exception) -> Exception:
    """``exc`` as the retry layer and the callers classify errors: a ``ConnectionError``
    saying the same when it is a transient failure (:data:`_TRANSIENT`), a
    ``PermissionError`` when the service refused the request (a 403, which obstore's S3
    store raises as its generic error; not one from the credential provider), else
    ``exc`` itself."""
    if not isinstance(exc, BaseError):
        return exc
    text = str(exc)
    error: Exception
    if _REFUSED in text and not any(marker in text for marker in _NO_CREDENTIALS):
        error = PermissionError(errno.EACCES, _first(exc))
    elif any(marker in text for marker in _TRANSIENT):
        error = ConnectionError(_first(exc))
    else:
        return exc
    error.__cause__ = exc
    return error


def _cause(mapped: BaseException, exc: BaseException) -> BaseException | None:
    """The cause to raise ``mapped`` from: ``exc`` when ``mapped`` is ``exc`` as a
    ``ConnectionError`` (``storage_error`` reads it there), else none (a ``StorageError``
    says all by itself)."""
    return exc if isinstance(mapped, ConnectionError) else None


@contextlib.contextmanager
def _connection_errors() -> Iterator[None]:
    """obstore errors raised as Python names them (see :func:`_translated`)."""
    try:
        yield
    except BaseError as exc:
        mapped = _translated(exc)
        if mapped is exc:
            raise
        raise mapped from exc


async def _bounded(coros: Sequence[Awaitable[T]]) -> list[T]:
    """Every coroutine's result in order, at most :data:`IN_FLIGHT` running at once."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(coro: Awaitable[T]) -> T:
        async with limit:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def _delete_if_there(store: Any, key: str) -> None:
    with contextlib.suppress(FileNotFoundError, NotFoundError):
        await _in_thread(obstore.delete, store, key)


async def _in_thread(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` (a blocking obstore call) in one of :data:`_WORKERS`' threads."""
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, call, *args)


def _get_bytes(store: Any, key: str) -> bytes:
    return bytes(obstore.get(store, key).bytes())


async def _list_sharded(
    fetch: Callable[[Shard], Awaitable[Page[FileInfo]]],
    folder: str,
    bucket: str,
    retry_page: PageRetry | None,
) -> FileTable:
    """Every object under ``folder`` (all for ``""``) as ``bucket`` + its path, each page
    kept as a compact table as it arrives; each shard's page one ``fetch`` (through
    ``retry_page``, when given)."""
    pages: list[FileTable] = []

    def keep(rows: list[tuple[str, FileInfo]]) -> None:
        pages.append(FileTableBuilder().extend((bucket + k, info) for k, info in rows).build())

    await list_prefix(fetch, f"{folder}/" if folder else "", keep, retry_page=retry_page)
    return FileTable.merged(pages)


async def _rechunked(chunks: Iterator[Any], size: int) -> AsyncIterator[bytes]:
    """The body's chunks (each one read in a worker thread) cut to at most ``size``."""
    done = object()
    while (chunk := await _in_thread(next, chunks, done)) is not done:
        data = bytes(chunk)
        for start in range(0, len(data), size):
            yield data[start : start + size]


def _first(exc: BaseException) -> str:
    """The first line of an obstore error (the rest is a debug dump)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]
