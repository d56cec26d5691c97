"""Azure Blob Storage through adlfs (``pip install 'gens_fs[azure]'``).

adlfs builds the client (credentials from ``storage_options``, or the standard
``AZURE_STORAGE_CONNECTION_STRING`` / ``AZURE_STORAGE_ACCOUNT_NAME`` + ``..._KEY`` /
``..._SAS_TOKEN`` environment); the primitives talk to the Azure SDK's asynchronous clients
under it where they need more than adlfs offers:

* every blob written carries its ``Content-MD5`` (set by us, whatever the size), so a
  listing tells a same-size edit without a read;
* the commit is a conditional create (``If-None-Match: *``): of racing writers exactly one
  wins, as on S3;
* listings are ``List Blobs`` pages reduced to size and Content-MD5 as they arrive;
* a copy within one storage account is server side (``Copy Blob``);
* a streamed read is one download, read as the caller iterates.

Every request makes one attempt (``retry_total=0``, the SDK's per-request setting: adlfs
builds the client with the SDK's default of 3 retries, 15 s to 24 s apart, and passes no
retry option): gens_fs's retry layer (``backends/retry.py``) is the only one. The one retry
nothing turns off: the SDK's download reads a body cut short again, up to 3 times, 1 s
apart (hard-coded in ``StorageStreamDownloader``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import BlobProperties, ContentSettings
from fsspec.asyn import _run_coros_in_chunks

from gens_fs.backends.base import (
    PROBE_TIMEOUT_S,
    STREAM_CHUNK,
    Capabilities,
    Children,
    FileInfo,
    PageRetry,
    ReadResult,
    Scan,
)
from gens_fs.backends.file_table import FileTable, FileTableBuilder
from gens_fs.backends.generic import FsspecBackend
from gens_fs.errors import StorageError

# Requests in flight at once for a batch of writes or deletes.
_BATCH = 128
# How often a pending server-side copy is looked at (within one account it is done at once).
_COPY_POLL_S = 0.2
# Each request's options: one attempt (see the module docstring).
_ONE_ATTEMPT: dict[str, Any] = {"retry_total": 0}


class AzureBackend(FsspecBackend):
    """An ``az://container/prefix`` (or ``abfs://``) root on an ``AzureBlobFileSystem``."""

    def __init__(self, fs: Any, root: str) -> None:
        super().__init__(fs, root)
        self.capabilities = Capabilities(
            exclusive_create=True,
            listing_hash="content-md5",
            costs_requests=True,
            copy_scope=self.service,
        )

    @property
    def service(self) -> str:
        return f"az {self.fs.service_client.url}"

    def url(self, path: str) -> str:
        return f"az://{path.lstrip('/')}"

    def _blob(self, path: str) -> Any:
        container, key, _ = self.fs.split_path(path)
        return self.fs.service_client.get_blob_client(container, key)

    def _container(self, path: str) -> tuple[Any, str]:
        """The container client of ``path`` and the key prefix of the folder ``path``."""
        container, key, _ = self.fs.split_path(path)
        prefix = key.rstrip("/") + "/" if key else ""
        return self.fs.service_client.get_container_client(container), prefix

    async def read(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        """One download (GET) per blob, through the SDK (adlfs's reads take no retry
        option); a missing blob (or container) is ``None``, a failed read its error."""
        values = await _run_coros_in_chunks(
            [self._download(p) for p in paths], batch_size=_BATCH, return_exceptions=True
        )
        return dict(zip(paths, values, strict=True))

    async def _download(self, path: str) -> bytes | None:
        # adlfs's timeouts (storage options timeout, connection_timeout, read_timeout)
        timeouts = getattr(self.fs, "_timeout_kwargs", {})
        try:
            download = await self._blob(path).download_blob(
                max_concurrency=1, **timeouts, **_ONE_ATTEMPT
            )
        except ResourceNotFoundError:
            return None
        return bytes(await download.readall())

    async def write(self, files: Mapping[str, bytes]) -> None:
        coros = [self._upload(path, data, overwrite=True) for path, data in files.items()]
        await _run_coros_in_chunks(coros, batch_size=_BATCH)

    async def create(self, path: str, data: bytes) -> bool:
        """One conditional Put Blob (``If-None-Match: *``): the service decides the race."""
        try:
            await self._upload(path, data, overwrite=False)
        except FileExistsError:
            return False
        return True

    async def _upload(self, path: str, data: bytes, *, overwrite: bool) -> None:
        md5 = bytearray(hashlib.md5(data).digest())
        await self.afs._pipe_file(
            path,
            data,
            overwrite=overwrite,
            content_settings=ContentSettings(content_md5=md5),
            **_ONE_ATTEMPT,
        )

    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        """Every blob under each prefix with its size and Content-MD5 (hex; ``None`` for a
        blob uploaded without one): List Blobs pages only, the prefixes side by side."""
        parts = await asyncio.gather(*(self._collect(p) for p in prefixes))
        return Scan(FileTable.merged(parts))

    async def _collect(self, folder: str) -> FileTable:
        client, prefix = self._container(folder)
        out = FileTableBuilder()
        blobs = client.list_blobs(name_starts_with=prefix, include=["metadata"], **_ONE_ATTEMPT)
        try:
            async for blob in blobs:
                if not _is_folder_marker(blob):
                    md5 = blob.content_settings.content_md5
                    info = FileInfo(int(blob.size), bytes(md5).hex() if md5 else None)
                    out.add(f"{client.container_name}/{blob.name}", info)
        except ResourceNotFoundError as exc:
            raise self._missing_container(exc, folder) from None
        return out.build()

    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """List Blobs with a delimiter: one request (more pages only past 5,000 entries and
        none of ``stop_at`` seen), each page within :data:`PROBE_TIMEOUT_S`. A missing
        container is a ``StorageError``."""
        client, prefix = self._container(path)
        folders: set[str] = set()
        files: set[str] = set()
        pages = client.walk_blobs(name_starts_with=prefix, delimiter="/", **_ONE_ATTEMPT).by_page()
        while True:
            page = await self._probe(pages, path)
            if page is None:
                break
            async for item in page:
                name = item.name[len(prefix) :].rstrip("/")
                is_file = isinstance(item, BlobProperties) and not _is_folder_marker(item)
                (files if is_file else folders).add(name)
            if folders & set(stop_at):
                break
        files.discard("")
        return Children(frozenset(folders), frozenset(files), True if folders or files else None)

    async def _probe(self, pages: Any, path: str) -> Any:
        """The next page of a listing, or ``None`` after the last."""
        try:
            return await asyncio.wait_for(pages.__anext__(), PROBE_TIMEOUT_S)
        except StopAsyncIteration:
            return None
        except asyncio.TimeoutError:
            raise StorageError(
                f"cannot reach the storage endpoint for {self.url(path)}: no answer within "
                f"{PROBE_TIMEOUT_S:g} s; check the account URL or connection string and the "
                "network"
            ) from None
        except ResourceNotFoundError as exc:
            raise self._missing_container(exc, path) from None

    async def delete(self, paths: Sequence[str]) -> None:
        await _run_coros_in_chunks([self._delete_one(p) for p in paths], batch_size=_BATCH)

    async def _delete_one(self, path: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            await self._blob(path).delete_blob(**_ONE_ATTEMPT)

    async def copy(self, src: str, dst: str, size: int) -> None:
        """One Copy Blob within the account (properties, Content-MD5 included, travel with
        the bytes); a copy the service reports pending is waited for."""
        target = self._blob(dst)
        copying = await target.start_copy_from_url(self._blob(src).url, **_ONE_ATTEMPT)
        status = copying["copy_status"]
        while status == "pending":
            await asyncio.sleep(_COPY_POLL_S)
            status = (await target.get_blob_properties(**_ONE_ATTEMPT)).copy.status
        if status != "success":
            raise OSError(f"server-side copy of {src} to {dst} ended {status}")

    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        """One download, read as the caller iterates (the SDK fetches up to 32 MB first,
        then 4 MB ranges)."""
        try:
            download = await self._blob(path).download_blob(max_concurrency=1, **_ONE_ATTEMPT)
        except ResourceNotFoundError:
            return None
        return _rechunked(download.chunks(), chunk_size)

    def storage_error(self, exc: BaseException) -> StorageError | None:
        where = self.url(self.root)
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code == 403
        ):
            return StorageError(
                f"access denied to {where}: check AZURE_STORAGE_CONNECTION_STRING (or "
                f"account_name/account_key, sas_token) ({_first_line(exc)})"
            )
        if isinstance(exc, ServiceRequestError):
            return StorageError(f"cannot reach the storage endpoint for {where}: {exc}")
        if type(exc).__name__ == "CredentialUnavailableError":
            return StorageError(
                f"no credentials for {where}: set AZURE_STORAGE_CONNECTION_STRING, or pass "
                "storage options (connection_string, or account_name and account_key)"
            )
        if isinstance(exc, ResourceNotFoundError) and _code(exc) == "ContainerNotFound":
            return self._missing_container(exc, self.root)
        return super().storage_error(exc)

    def _missing_container(self, exc: ResourceNotFoundError, path: str) -> StorageError:
        container = self.fs.split_path(path)[0]
        return StorageError(
            f"container {container!r} does not exist (or is not visible with these "
            f"credentials): create it or fix the URL {self.url(path)} ({_code(exc)})"
        )


def _is_folder_marker(blob: Any) -> bool:
    """A zero-size blob standing for a folder (adlfs and hierarchical namespaces write
    them)."""
    metadata = blob.get("metadata") or {}
    marked = "true" in (metadata.get("is_directory"), metadata.get("hdi_isfolder"))
    return bool(marked or blob.name.endswith("/"))


async def _rechunked(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        for start in range(0, len(chunk), size):
            yield bytes(chunk[start : start + size])


def _code(exc: HttpResponseError) -> str:
    """The service's error code (``ContainerNotFound``...)."""
    return str(getattr(exc, "error_code", None) or type(exc).__name__)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
