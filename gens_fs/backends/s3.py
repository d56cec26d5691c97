"""S3 through s3fs, tuned for many small objects and an exact request budget.

One GET per file read and no HEAD; one PUT per file written; the commit a conditional PUT
(``If-None-Match: *``); listings are ListObjectsV2 pages only, reduced to size and ETag as
they arrive; deletes one DeleteObjects per 1,000 keys; a copy between buckets of one
endpoint (and one set of credentials) one CopyObject; a streamed read one GET.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from gens_fs.backends.base import (
    PROBE_TIMEOUT_S,
    STREAM_CHUNK,
    Capabilities,
    Children,
    FileInfo,
    PageRetry,
    Scan,
)
from gens_fs.backends.file_table import FileTable, FileTableBuilder
from gens_fs.backends.generic import FsspecBackend
from gens_fs.backends.retry import is_transient
from gens_fs.backends.sharded import Page, Shard, list_prefix
from gens_fs.errors import StorageError

# s3fs tuned for many small objects. Its default ``max_concurrency=10`` makes ``cat_file``
# send a HEAD before every GET (to decide on ranged parallel reads); our artifacts are a few
# KB, so one GET each is all we want. A larger connection pool lets fsspec's batched gather
# (128 coroutines by default) actually run concurrently instead of queueing on 10 sockets.
# botocore makes one attempt per request (S3_CLIENT_RETRIES): gens_fs's retry layer
# (backends/retry.py) is the only one, so attempts do not multiply and every backend
# retries the same errors.
S3_CLIENT_RETRIES: dict[str, Any] = {"total_max_attempts": 1, "mode": "standard"}
S3_DEFAULT_OPTIONS: dict[str, Any] = {
    "max_concurrency": 1,
    "config_kwargs": {"max_pool_connections": 128, "retries": S3_CLIENT_RETRIES},
}
# s3fs's own retries around each call (``S3FileSystem.retries``): one attempt. (It still
# pauses 0.1 s after a failed attempt of some kinds before it raises.)
S3FS_ATTEMPTS = 1
# The largest object one CopyObject request may copy; larger ones take a multipart copy.
S3_MAX_COPY_SIZE = 5 * 2**30
# The most keys one DeleteObjects request may name.
S3_MAX_DELETE_KEYS = 1000
# botocore is optional for users without S3, so its errors are matched by name.
_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError"})
_NO_ENDPOINT = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "InvalidEndpointError"})


class S3Backend(FsspecBackend):
    """An ``s3://bucket/prefix`` root on an ``S3FileSystem``."""

    def __init__(self, fs: Any, root: str) -> None:
        super().__init__(fs, root)
        self.capabilities = Capabilities(
            exclusive_create=True,
            listing_hash="md5",
            costs_requests=True,
            copy_scope=f"{self.service} {_credential_id(fs)}",
        )

    @property
    def service(self) -> str:
        endpoint = (self.fs.client_kwargs or {}).get("endpoint_url") or os.environ.get(
            "AWS_ENDPOINT_URL_S3", os.environ.get("AWS_ENDPOINT_URL", "aws")
        )
        return f"s3 {endpoint}"

    def url(self, path: str) -> str:
        return f"s3://{path.lstrip('/')}"

    def _read_options(self) -> dict[str, Any]:
        # Also for a user-built S3FileSystem that kept the default max_concurrency.
        return {"max_concurrency": 1}

    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        """Every object under each prefix with its size and ETag: ListObjectsV2 pages only,
        the prefixes side by side, and a prefix that holds more than a page listed in
        parallel shards by key prefix (:mod:`gens_fs.backends.sharded`): the wait is a few
        round trips, not one per 1,000 keys. Each request goes through ``retry_page``: a
        page that fails is asked for again on its own.

        No HEAD, and no second listing when a prefix is empty (``find`` sends both). Each
        page is reduced to a compact row as it arrives (s3fs's ``_lsdir`` would keep every
        page's full dicts until the end: about 1 KB per object). A missing bucket raises
        ``StorageError``; listing a prefix never fails otherwise.
        """
        try:
            parts = await asyncio.gather(*(self._collect(p, retry_page) for p in prefixes))
        except FileNotFoundError:
            raise _no_bucket(self.fs.split_path(self.root)[0], self.url(self.root)) from None
        return Scan(FileTable.merged(parts))

    @property
    def pages_retried(self) -> bool:
        return True

    async def _collect(self, prefix: str, retry_page: PageRetry | None) -> FileTable:
        bucket, key, _ = self.fs.split_path(prefix)
        pages: list[FileTable] = []  # one per page, kept compact as it arrives

        def keep(rows: list[tuple[str, FileInfo]]) -> None:
            pages.append(FileTableBuilder().extend(rows).build())

        prefix_path = f"{bucket}/{key.rstrip('/')}/"
        await list_prefix(self._list_page, prefix_path, keep, retry_page=retry_page)
        return FileTable.merged(pages)

    async def _list_page(self, shard: Shard) -> Page[FileInfo]:
        """One ListObjectsV2 request; shards and keys are ``bucket/key`` paths."""
        bucket, _, prefix = shard.prefix.partition("/")
        after = shard.start_after
        start = {} if after is None else {"StartAfter": after[len(bucket) + 1 :]}
        page = await self.fs._call_s3(
            "list_objects_v2", Bucket=bucket, Prefix=prefix, **start, **self.fs.req_kw
        )
        entries = [
            (f"{bucket}/{o['Key']}", FileInfo(int(o.get("Size") or 0), _unquote(o.get("ETag"))))
            for o in _get(page, "Contents")
        ]
        return Page(entries, bool(page.get("IsTruncated")))

    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """ListObjectsV2 with ``Delimiter="/"``: one request (more pages only when the
        folder holds over 1,000 entries and none of ``stop_at`` was seen), each page within
        :data:`PROBE_TIMEOUT_S`: this is the first request most commands send, and an
        endpoint that does not answer must be one line, not a hang. A missing bucket is a
        ``StorageError``."""
        bucket, key, _ = self.fs.split_path(path)
        url = self.url(path)
        if not bucket:
            raise StorageError(f"{url!r} names no bucket: use s3://BUCKET/PREFIX")
        prefix = key.rstrip("/") + "/" if key else ""
        folders: set[str] = set()
        files: set[str] = set()
        token: dict[str, str] = {}
        while True:
            page = await self._probe(url, bucket, Bucket=bucket, Prefix=prefix, **token)
            for common in _get(page, "CommonPrefixes"):
                folders.add(common["Prefix"][len(prefix) :].rstrip("/"))
            files.update(obj["Key"][len(prefix) :] for obj in _get(page, "Contents"))
            if not page.get("IsTruncated") or folders & set(stop_at):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        files.discard("")  # a "folder marker" object named like the prefix itself
        return Children(frozenset(folders), frozenset(files), True if folders or files else None)

    async def _probe(self, url: str, bucket: str, **params: str) -> dict[str, Any]:
        # The client is built first, outside the bound: loading botocore's service models
        # is local work (about a second of CPU on a busy machine), not the endpoint's answer.
        await self.fs.set_session()
        try:
            page: dict[str, Any] = await asyncio.wait_for(
                self.fs._call_s3("list_objects_v2", Delimiter="/", **params), PROBE_TIMEOUT_S
            )
        except asyncio.TimeoutError:
            raise StorageError(
                f"cannot reach the storage endpoint for {url}: no answer within "
                f"{PROBE_TIMEOUT_S:g} s; check AWS_ENDPOINT_URL (or the endpoint_url option) "
                "and the network"
            ) from None
        except FileNotFoundError:
            raise _no_bucket(bucket, url) from None
        return page

    async def delete(self, paths: Sequence[str]) -> None:
        """One DeleteObjects request per 1000 keys (all in this backend's bucket)."""
        for start in range(0, len(paths), S3_MAX_DELETE_KEYS):
            await self.fs._bulk_delete(list(paths[start : start + S3_MAX_DELETE_KEYS]))

    async def copy(self, src: str, dst: str, size: int) -> None:
        """One CopyObject (no HEAD: the size comes from the listing); a multipart copy above
        5 GiB."""
        if size <= S3_MAX_COPY_SIZE:
            await self.fs._copy_basic(src, dst)
        else:
            await self.fs._copy_managed(src, dst, size)

    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        """One GET, its body read ``chunk_size`` at a time as the caller iterates."""
        bucket, key, _ = self.fs.split_path(path)
        try:
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None
        return _body_chunks(response["Body"], chunk_size)

    def storage_error(self, exc: BaseException) -> StorageError | None:
        name, where = type(exc).__name__, self.url(self.root)
        if name in _NO_CREDENTIALS:
            return StorageError(
                f"no credentials for {where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE, or pass storage options"
            )
        if name in _NO_ENDPOINT:
            return StorageError(f"cannot reach the storage endpoint for {where}: {exc}")
        if _is_client_configuration_error(exc) and not is_transient(exc):
            return StorageError(
                f"cannot use {where}: {exc} (check AWS_PROFILE, AWS_ENDPOINT_URL, "
                "AWS_DEFAULT_REGION and the storage options)"
            )
        return super().storage_error(exc)


def _is_client_configuration_error(exc: BaseException) -> bool:
    """True for errors the S3 client raises while it is being set up from the environment
    and options (a profile that does not exist, an endpoint that is not a URL), which
    s3fs does not translate: they reach us as botocore's own classes, or as botocore's
    ``ValueError("Invalid endpoint: ...")``."""
    module = type(exc).__module__.split(".", 1)[0]
    if module in ("botocore", "aiobotocore"):
        return True
    return isinstance(exc, ValueError) and str(exc).startswith("Invalid endpoint")


async def _body_chunks(body: Any, chunk_size: int) -> AsyncIterator[bytes]:
    try:
        while chunk := await body.read(chunk_size):
            yield bytes(chunk)
    finally:
        body.close()


def _credential_id(fs: Any) -> str:
    """Who the client is, without the secret: a digest of the access key (or anonymous)."""
    if fs.anon:
        return "anonymous"
    return hashlib.sha256(str(fs.key).encode()).hexdigest()[:12]


def _no_bucket(bucket: str, url: str) -> StorageError:
    return StorageError(
        f"bucket {bucket!r} does not exist (or is not visible with these credentials): "
        f"create it or fix the URL {url} (and AWS_ENDPOINT_URL, AWS_PROFILE)"
    )


def _unquote(etag: object) -> str | None:
    return etag.strip('"') if isinstance(etag, str) and etag.strip('"') else None


def _get(page: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = page.get(key)
    return value if isinstance(value, list) else []
