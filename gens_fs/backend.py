"""The one boundary between gens_fs and fsspec: where backend quirks stop.

``open_backend`` turns a root (path, URL or filesystem) into a :class:`Backend` that offers
the few primitives the store needs, each batched:

* ``read_many(paths)`` -> bytes or ``None`` (missing) per path, one request per file, all in
  flight at once on async filesystems (s3fs), no existence probes first; ``read_each`` the
  same with a failed read's exception as its value instead of raising;
* ``write_many(files)`` -> every file whole or not at all (atomic rename on local disk; an
  object PUT is atomic by nature);
* ``create(path, data)`` -> exclusive create, using the medium's own guarantee where it has
  one (``os.link`` on local disk, ``If-None-Match: *`` on S3, the memory filesystem's
  ``xb`` mode);
* ``listing(prefix)`` -> every file under a prefix with its size, one recursive listing;
  ``listing_info(prefix)`` the same with the content hash the listing gives for free (the S3
  ETag), no request per file; ``scan(prefixes)`` the same with the entries it left out.
  On local disk no listing follows a symbolic link or opens a FIFO, socket or device: they
  are left out and reported by ``scan`` (``follow_symlinks=True`` follows the links whose
  target stays inside the root);
* ``remove(paths)``;
* ``iter_file(path)`` -> one file's bytes in chunks, so a large file never sits in memory;
* ``children(path)`` -> the names of the folders and files directly in ``path``: on S3 one
  ``ListObjectsV2`` with a delimiter, which also fails early when the bucket does not exist.

For transfers (``gens_fs.sync``) there are coroutine versions of one-file primitives,
``read_file`` / ``write_file`` / ``copy_file`` / ``remove_files``, so many can be in flight on
fsspec's event loop: on S3 exactly one GET, one PUT, one server-side COPY, or one bulk DELETE
per 1000 keys, never a HEAD first.

Errors that mean "the storage cannot be used" (no credentials, access denied, no endpoint)
become :class:`StorageError` here, once, for everyone above.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final, NamedTuple

import fsspec
from fsspec.asyn import sync
from fsspec.implementations.local import LocalFileSystem

from gens_fs.errors import SpecialFile, StorageError

# s3fs tuned for many small objects. Its default ``max_concurrency=10`` makes ``cat_file``
# send a HEAD before every GET (to decide on ranged parallel reads); our artifacts are a few
# KB, so one GET each is all we want. A larger connection pool lets fsspec's batched gather
# (128 coroutines by default) actually run concurrently instead of queueing on 10 sockets.
# botocore's "standard" retry mode retries throttling, 5xx and connection errors with jittered
# exponential backoff (the default "legacy" mode retries fewer kinds of error).
S3_DEFAULT_OPTIONS: dict[str, Any] = {
    "max_concurrency": 1,
    "config_kwargs": {
        "max_pool_connections": 128,
        "retries": {"max_attempts": 5, "mode": "standard"},
    },
}
# The first request to a storage (the root probe) answers within this, or the storage is
# reported unreachable: botocore would otherwise retry a refused connection for 10-25 s,
# and wait 60 s for an endpoint that accepts the connection but never answers.
PROBE_TIMEOUT_S = 4.0
# Filesystems that fsspec knows but that cannot hold a store: read-only, or no listing of a
# tree (an HTTP "listing" is links scraped from a page).
UNSUPPORTED_PROTOCOLS = frozenset({"http", "https", "github", "git", "tar", "libarchive", "data"})
# The largest object one CopyObject request may copy; larger ones take a multipart copy.
S3_MAX_COPY_SIZE = 5 * 2**30
# The most keys one DeleteObjects request may name.
S3_MAX_DELETE_KEYS = 1000
# How much of a file ``iter_file`` holds at once (on S3: one ranged GET each).
STREAM_CHUNK = 8 * 2**20


class FileInfo(NamedTuple):
    """A file as a listing shows it: its size and, where the listing gives one for free, its
    content hash (the S3 ETag, without quotes; ``None`` elsewhere)."""

    size: int
    etag: str | None = None


class Ignored(NamedTuple):
    """An entry a listing left out without reading it: a symbolic link not followed, a FIFO,
    socket or device. ``path`` as the listing found it; ``reason`` says what it is."""

    path: str
    reason: str


@dataclass(frozen=True)
class Scan:
    """A listing's result: the regular files with their :class:`FileInfo`, and the entries
    it left out (:class:`Ignored`)."""

    files: dict[str, FileInfo]
    ignored: list[Ignored] = field(default_factory=list)


class Children(NamedTuple):
    """The names of the folders and files directly in a directory. ``exists``: False when
    the directory is absent, ``None`` when it holds nothing on a medium that cannot tell
    absent from empty (an object store's prefix)."""

    folders: frozenset[str]
    files: frozenset[str]
    exists: bool | None


def _merge_defaults(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in options.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@contextlib.contextmanager
def storage_errors(root: str) -> Iterator[None]:
    """Turn "this storage cannot be used" errors into ``StorageError`` naming the root."""
    try:
        yield
    except PermissionError as exc:
        raise StorageError(f"access denied to {root}: check your credentials ({exc})") from None
    except Exception as exc:
        name = type(exc).__name__
        # botocore is optional for local-only users, so match its errors by name.
        if name in {"NoCredentialsError", "PartialCredentialsError"}:
            raise StorageError(
                f"no credentials for {root}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE, or pass storage options"
            ) from None
        if name in {"EndpointConnectionError", "ConnectTimeoutError", "InvalidEndpointError"}:
            raise StorageError(f"cannot reach the storage endpoint for {root}: {exc}") from None
        if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
            # s3fs hands unknown storage options to the client it builds on first use
            raise StorageError(f"a storage option for {root} is not known: {exc}") from None
        if _is_client_configuration_error(exc):
            raise StorageError(
                f"cannot use {root}: {exc} (check AWS_PROFILE, AWS_ENDPOINT_URL, "
                "AWS_DEFAULT_REGION and the storage options)"
            ) from None
        raise


def _is_client_configuration_error(exc: Exception) -> bool:
    """True for errors the S3 client raises while it is being set up from the environment
    and options (a profile that does not exist, an endpoint that is not a URL), which
    s3fs does not translate: they reach us as botocore's own classes, or as botocore's
    ``ValueError("Invalid endpoint: ...")``."""
    module = type(exc).__module__.split(".", 1)[0]
    if module in ("botocore", "aiobotocore"):
        return True
    return isinstance(exc, ValueError) and str(exc).startswith("Invalid endpoint")


class Backend:
    """Batched file primitives over any fsspec filesystem. Paths are the filesystem's own."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root

    @property
    def exclusive_create(self) -> bool:
        """True when ``create`` is atomic against concurrent writers on this medium."""
        return False

    def url(self, path: str) -> str:
        """``path`` as a user would type it: with its protocol (a plain path on local disk)."""
        return str(self.fs.unstrip_protocol(path))

    def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """What ``path`` holds at its first level: one listing. ``stop_at``: folder names
        after which an object store may stop paging (the caller needs nothing more)."""
        with storage_errors(self.root):
            try:
                infos = self.fs.ls(path, detail=True)
            except (FileNotFoundError, NotADirectoryError):
                return Children(frozenset(), frozenset(), False)
        folders: set[str] = set()
        files: set[str] = set()
        for info in infos:
            name = _child_name(path, info["name"])
            if name:
                (folders if info.get("type") == "directory" else files).add(name)
        return Children(frozenset(folders), frozenset(files), True)

    def read_many(self, paths: list[str]) -> dict[str, bytes | None]:
        """Read every path; a missing file reads as ``None``. One request per file."""
        out: dict[str, bytes | None] = {}
        for path, value in self.read_each(paths).items():
            if isinstance(value, Exception):
                with storage_errors(self.root):
                    raise value
            out[path] = value
        return out

    def read_each(self, paths: list[str]) -> dict[str, bytes | Exception | None]:
        """Like :meth:`read_many`, but a file that cannot be read (after the client's own
        retries) gives its exception instead of failing the whole batch."""
        if not paths:
            return {}
        # cat_ranges, not cat: cat expands glob characters, and a root such as
        # s3://bucket/[x]/data is a path, not a pattern. Same requests, same batching.
        with storage_errors(self.root):
            values = self.fs.cat_ranges(paths, None, None, on_error="return", **self._cat_kwargs())
        results = dict(zip(paths, values, strict=True))
        out: dict[str, bytes | Exception | None] = {}
        for path in paths:
            value = results.get(path, FileNotFoundError(path))
            if isinstance(value, FileNotFoundError):
                out[path] = None
            elif isinstance(value, Exception):
                out[path] = value
            else:
                out[path] = bytes(value)
        return out

    def _cat_kwargs(self) -> dict[str, Any]:
        return {}

    def iter_file(self, path: str, chunk_size: int = STREAM_CHUNK) -> Iterator[bytes] | None:
        """One file's bytes, as they are, in chunks of at most ``chunk_size``; ``None`` when
        the file is missing. Opened here (so a missing file is known at once), read as the
        caller iterates, closed at the end."""
        with storage_errors(self.root):
            try:
                handle = self.fs.open(path, "rb", block_size=chunk_size, **self._open_kwargs())
            except (FileNotFoundError, NotADirectoryError):
                return None
        return self._chunks(handle, chunk_size)

    def _open_kwargs(self) -> dict[str, Any]:
        return {}

    def _chunks(self, handle: Any, chunk_size: int) -> Iterator[bytes]:
        with handle, storage_errors(self.root):
            while chunk := handle.read(chunk_size):
                yield bytes(chunk)

    def write_many(self, files: Mapping[str, bytes]) -> None:
        """Write every file (overwriting); each file lands whole or not at all."""
        if files:
            with storage_errors(self.root):
                self.fs.pipe(dict(files))

    def create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only if it does not exist; False if it did.

        The generic fallback checks then writes: two writers racing in the gap can both
        "win". Subclasses override it with the medium's own exclusive create.
        """
        with storage_errors(self.root):
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
        return True

    def listing(self, prefix: str) -> dict[str, int]:
        """Every file under the directory ``prefix`` with its size: one recursive listing."""
        with storage_errors(self.root):
            try:
                found = self.fs.find(prefix, detail=True)
            except FileNotFoundError:
                return {}
        base = prefix.rstrip("/") + "/"
        return {
            path: int(info.get("size") or 0)
            for path, info in found.items()
            if path.startswith(base) and info.get("type", "file") != "directory"
        }

    def listing_info(self, prefix: str) -> dict[str, FileInfo]:
        """Like :meth:`listing`, with the hash the listing carries (none here)."""
        return {path: FileInfo(size) for path, size in self.listing(prefix).items()}

    def listing_info_many(self, prefixes: list[str]) -> dict[str, FileInfo]:
        """:meth:`listing_info` of several prefixes, merged (one after the other here)."""
        found: dict[str, FileInfo] = {}
        for prefix in prefixes:
            found.update(self.listing_info(prefix))
        return found

    def scan(self, prefixes: list[str], *, follow_symlinks: bool = False) -> Scan:
        """:meth:`listing_info_many` with the entries it left out. Only local disk has
        symbolic links and special files to leave out (see :class:`LocalBackend`)."""
        return Scan(self.listing_info_many(prefixes))

    @property
    def costs_requests(self) -> bool:
        """True when every read is a billed, high-latency request (object stores); False for
        local disk and memory, where hashing a file to compare it costs nothing remote."""
        return not isinstance(self, (LocalBackend, MemoryBackend))

    def same_service(self, other: Backend) -> bool:
        """True when ``copy_file`` can copy from ``other`` server side (no bytes through us)."""
        return False

    async def read_file(self, path: str) -> bytes:
        """Read one whole file (``FileNotFoundError`` if missing): one request."""
        data = self.read_many([path])[path]
        if data is None:
            raise FileNotFoundError(path)
        return data

    async def write_file(self, path: str, data: bytes) -> None:
        """Write one whole file, replacing it: lands whole or not at all. One request."""
        self.write_many({path: data})

    async def copy_file(self, src: str, dst: str, size: int) -> None:
        """Copy ``src`` to ``dst`` inside the service (see :meth:`same_service`)."""
        raise NotImplementedError(f"{type(self).__name__} has no server-side copy")

    async def remove_files(self, paths: list[str]) -> None:
        """Remove files in one batch; already-missing ones are fine."""
        self.remove(paths)

    def remove(self, paths: Iterable[str]) -> None:
        """Remove files; already-missing ones are fine."""
        paths = list(paths)
        if not paths:
            return
        with storage_errors(self.root):
            try:
                self.fs.rm(paths)
            except FileNotFoundError:
                for path in paths:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(path)

    def remove_dir(self, path: str) -> None:
        """Remove an (emptied) directory where the medium has directories."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rmdir(path)

    def blocked_folder(self, folders: Iterable[str]) -> str | None:
        """The first of ``folders`` (or of the folders above them) that exists as something
        other than a folder, so nothing can be written below it; ``None`` when every one can
        be made. Object stores have no folders: nothing is ever in the way."""
        return None


class S3Backend(Backend):
    """s3fs: GETs without HEAD probes, conditional PUT for exclusive create."""

    @property
    def exclusive_create(self) -> bool:
        return True

    def _cat_kwargs(self) -> dict[str, Any]:
        # Also for a user-built S3FileSystem that kept the default max_concurrency.
        return {"max_concurrency": 1}

    def _open_kwargs(self) -> dict[str, Any]:
        # One ranged GET per chunk read: s3fs's default read-ahead cache would fetch a
        # further block (50 MB by default) with each one.
        return {"cache_type": "none"}

    def remove_dir(self, path: str) -> None:
        """Object stores have no directories to remove."""

    def listing(self, prefix: str) -> dict[str, int]:
        """ListObjectsV2 pages only (see :meth:`listing_info`); a missing bucket is a
        ``StorageError``, not an empty store."""
        return {path: info.size for path, info in self.listing_info(prefix).items()}

    def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """ListObjectsV2 with ``Delimiter="/"``: one request (more pages only when the
        folder holds over 1,000 entries and none of ``stop_at`` was seen). A missing bucket
        is a ``StorageError``."""
        bucket, key, _ = self.fs.split_path(path)
        if not bucket:
            raise StorageError(f"{self.url(path)!r} names no bucket: use s3://BUCKET/PREFIX")
        prefix = key.rstrip("/") + "/" if key else ""
        folders: set[str] = set()
        files: set[str] = set()

        async def list_pages() -> None:
            token: dict[str, str] = {}
            while True:
                # Each page within the probe's time: this is the first request most commands
                # send, and an endpoint that does not answer must be one line, not a hang.
                page = await asyncio.wait_for(
                    self.fs._call_s3(
                        "list_objects_v2", Bucket=bucket, Prefix=prefix, Delimiter="/", **token
                    ),
                    PROBE_TIMEOUT_S,
                )
                for common in _get(page, "CommonPrefixes"):
                    folders.add(common["Prefix"][len(prefix) :].rstrip("/"))
                files.update(obj["Key"][len(prefix) :] for obj in _get(page, "Contents"))
                if not page.get("IsTruncated") or folders & set(stop_at):
                    return
                token = {"ContinuationToken": page["NextContinuationToken"]}

        url = self.url(path)
        with storage_errors(url):
            try:
                sync(self.fs.loop, list_pages)
            except asyncio.TimeoutError:
                raise StorageError(
                    f"cannot reach the storage endpoint for {url}: no answer within "
                    f"{PROBE_TIMEOUT_S:g} s; check AWS_ENDPOINT_URL (or the endpoint_url option) "
                    "and the network"
                ) from None
            except FileNotFoundError:
                raise _no_bucket(bucket, url) from None
        files.discard("")  # a "folder marker" object named like the prefix itself
        return Children(frozenset(folders), frozenset(files), True if folders or files else None)

    def listing_info(self, prefix: str) -> dict[str, FileInfo]:
        """Every object under ``prefix/`` with its size and ETag: ListObjectsV2 pages only.

        No HEAD, and no second listing when the prefix is empty (``fs.find`` sends both).
        Each page is reduced to ``FileInfo`` as it arrives (s3fs's ``_lsdir`` would keep
        every page's full dicts until the end: about 1 KB per object, a gigabyte for a
        million files). A missing bucket raises ``StorageError``; listing a prefix never
        fails otherwise.
        """
        return self.listing_info_many([prefix])

    def listing_info_many(self, prefixes: list[str]) -> dict[str, FileInfo]:
        """:meth:`listing_info` of several prefixes at once: their page chains run
        concurrently, so the wall time is the longest chain, not the sum."""

        async def collect_all() -> dict[str, FileInfo]:
            found: dict[str, FileInfo] = {}
            for part in await asyncio.gather(*(self._collect(p) for p in prefixes)):
                found.update(part)
            return found

        with storage_errors(self.root):
            try:
                found: dict[str, FileInfo] = sync(self.fs.loop, collect_all)
                return found
            except FileNotFoundError:
                bucket = self.fs.split_path(self.root)[0]
                raise _no_bucket(bucket, self.url(self.root)) from None

    async def _collect(self, prefix: str) -> dict[str, FileInfo]:
        bucket, key, _ = self.fs.split_path(prefix)
        base = prefix.rstrip("/") + "/"
        out: dict[str, FileInfo] = {}
        async for info in self.fs._iterdir(bucket, delimiter="", prefix=key.rstrip("/") + "/"):
            name = info["name"]
            if info.get("type") != "directory" and name.startswith(base):
                out[name] = FileInfo(int(info.get("size") or 0), _unquote(info.get("ETag")))
        return out

    def same_service(self, other: Backend) -> bool:
        if not isinstance(other, S3Backend):
            return False
        if other.fs is self.fs:
            return True
        mine, theirs = self.fs, other.fs
        return bool(
            (mine.client_kwargs or {}).get("endpoint_url")
            == (theirs.client_kwargs or {}).get("endpoint_url")
            and mine.key == theirs.key
            and mine.anon == theirs.anon
        )

    async def read_file(self, path: str) -> bytes:
        return bytes(await self.fs._cat_file(path, max_concurrency=1))

    async def write_file(self, path: str, data: bytes) -> None:
        await self.fs._pipe_file(path, data)

    async def copy_file(self, src: str, dst: str, size: int) -> None:
        """One CopyObject (no HEAD: the size comes from the listing); a multipart copy above
        5 GiB."""
        if size <= S3_MAX_COPY_SIZE:
            await self.fs._copy_basic(src, dst)
        else:
            await self.fs._copy_managed(src, dst, size)

    async def remove_files(self, paths: list[str]) -> None:
        """One DeleteObjects request per 1000 keys (all in this backend's bucket)."""
        for start in range(0, len(paths), S3_MAX_DELETE_KEYS):
            await self.fs._bulk_delete(paths[start : start + S3_MAX_DELETE_KEYS])


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


def _child_name(parent: str, path: str) -> str:
    """The name of ``path`` directly inside ``parent`` ("" for anything else)."""
    base = parent.rstrip("/") + "/"
    rest = path.rstrip("/")[len(base) :] if path.startswith(base) else ""
    return "" if "/" in rest else rest


class MemoryBackend(Backend):
    """fsspec's memory filesystem: its ``xb`` open is a check-and-set under the GIL."""

    @property
    def exclusive_create(self) -> bool:
        return True


class LocalBackend(Backend):
    """Local disk through the OS directly: atomic renames and ``os.link`` exclusive create.

    Reads skip fsspec's file objects: a plain ``open().read()`` is what a pathlib reader does,
    and the store's local ``load`` should cost no more than that.
    """

    @property
    def exclusive_create(self) -> bool:
        return True

    def url(self, path: str) -> str:
        return path

    def read_many(self, paths: list[str]) -> dict[str, bytes | None]:
        """A symbolic link is read through (the caller named the path); a FIFO, socket,
        device or folder raises ``SpecialFile`` without being opened."""
        out: dict[str, bytes | None] = {}
        for path in paths:
            try:
                with open_regular(path) as handle:
                    out[path] = handle.read()
            except (FileNotFoundError, NotADirectoryError):
                out[path] = None
        return out

    def iter_file(self, path: str, chunk_size: int = STREAM_CHUNK) -> Iterator[bytes] | None:
        try:
            handle = open_regular(path)  # closed by _chunks
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self._chunks(handle, chunk_size)

    def read_each(self, paths: list[str]) -> dict[str, bytes | Exception | None]:
        out: dict[str, bytes | Exception | None] = {}
        for path in paths:
            try:
                out.update(self.read_many([path]))
            except OSError as exc:
                out[path] = exc
        return out

    def _write_temp(self, path: str, data: bytes) -> str:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        # Hidden temporary name in the same directory: listings skip it, and the rename
        # that follows stays on one filesystem, so it is atomic.
        temp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        with open(temp, "wb") as handle:
            handle.write(data)
        return temp

    def write_many(self, files: Mapping[str, bytes]) -> None:
        for path, data in files.items():
            temp = self._write_temp(path, data)
            try:
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise

    def create(self, path: str, data: bytes) -> bool:
        temp = self._write_temp(path, data)
        try:
            os.link(temp, path)  # fails with EEXIST if the target exists: exclusive
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        return True

    def listing(self, prefix: str) -> dict[str, int]:
        return {path: info.size for path, info in self.scan([prefix]).files.items()}

    def listing_info_many(self, prefixes: list[str]) -> dict[str, FileInfo]:
        return self.scan(prefixes).files

    def scan(self, prefixes: list[str], *, follow_symlinks: bool = False) -> Scan:
        """Regular files under the ``prefixes``, never following a symbolic link (nor one on
        the way from the root down to a prefix) and never opening a FIFO, socket or device:
        each is left out and reported. With ``follow_symlinks`` a link is followed when
        its target stays inside the root (a link to a folder that contains it is a loop:
        reported, not followed)."""
        walk = _LocalWalk(self.root, follow_symlinks)
        for prefix in prefixes:
            walk.prefix(prefix)
        return Scan(walk.files, walk.ignored)

    def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """One ``scandir``; a symbolic link to a folder counts as a folder (listings then
        report it rather than follow it)."""
        folders: set[str] = set()
        files: set[str] = set()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    (folders if entry.is_dir() else files).add(entry.name)
        except FileNotFoundError:
            return Children(frozenset(), frozenset(), False)
        except NotADirectoryError:
            raise StorageError(f"{path} is a file, not a folder") from None
        except PermissionError as exc:
            raise StorageError(f"access denied to {path}: {exc}") from None
        return Children(frozenset(folders), frozenset(files), True)

    def remove(self, paths: Iterable[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def blocked_folder(self, folders: Iterable[str]) -> str | None:
        for folder in sorted(set(folders), key=len):  # the outermost is the culprit
            blocker = _non_folder_on_path(folder)
            if blocker is not None:
                return blocker
        return None


def _non_folder_on_path(folder: str) -> str | None:
    """``folder`` or the nearest existing path above it, when that is not a folder (so
    nothing can be created at ``folder``); ``None`` when ``folder`` is, or can be, made."""
    path = os.path.abspath(folder)
    while True:
        try:
            return None if stat.S_ISDIR(os.stat(path).st_mode) else path
        except NotADirectoryError:  # a file somewhere above: find it
            path = os.path.dirname(path)
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent


def open_regular(path: str) -> IO[bytes]:
    """Open the regular file at ``path`` for reading (through symbolic links); the caller
    closes it (``with open_regular(path) as handle``). Anything else raises ``SpecialFile``
    unopened: ``/dev/zero`` never ends and a FIFO blocks forever. The open is non-blocking
    and checked again, in case the path changed since the stat."""
    kind = _special_kind(os.stat(path).st_mode)
    if kind is None:
        handle = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")  # noqa: SIM115
        kind = _special_kind(os.fstat(handle.fileno()).st_mode)
        if kind is None:
            return handle
        handle.close()
    raise SpecialFile(f"{path}: {kind}, not a regular file: never read")


def _special_kind(mode: int) -> str | None:
    """What a non-regular file is, in words; ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _inside(path: str, boundary: str) -> bool:
    return path == boundary or path.startswith(boundary.rstrip(os.sep) + os.sep)


class _LocalWalk:
    """One local listing (:meth:`LocalBackend.scan`): regular files with their sizes, and
    the entries left out. Types come from ``scandir`` (no syscall for most entries)."""

    def __init__(self, root: str, follow_symlinks: bool) -> None:
        self.root = root
        self.boundary = os.path.realpath(root)
        self.follow = follow_symlinks
        self.files: dict[str, FileInfo] = {}
        self.ignored: list[Ignored] = []

    def prefix(self, prefix: str) -> None:
        """Walk ``prefix``, if every folder from the root down to it may be entered."""
        under = prefix.startswith(self.root.rstrip("/") + "/")
        path = self.root
        for part in prefix[len(self.root) :].split("/") if under else []:
            if not part:
                continue
            path = os.path.join(path, part)
            try:
                mode = os.lstat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISLNK(mode):
                target = self._target(path)
                if target is None:
                    return
                mode = target.st_mode
            if not stat.S_ISDIR(mode):
                return  # a file where a folder should be: nothing under it
        self._walk(prefix)

    def _walk(self, top: str) -> None:
        # Folder identities on the way down, to refuse a followed link back up (a loop).
        stack = [(top, frozenset([_identity(top)]) if self.follow else frozenset())]
        while stack:
            directory, ancestors = stack.pop()
            try:
                with os.scandir(directory) as entries:
                    found = list(entries)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in found:
                with contextlib.suppress(FileNotFoundError):  # removed since the scandir
                    folder = self._entry(entry, ancestors)
                    if folder is not None:
                        stack.append(folder)

    def _entry(self, entry: os.DirEntry[str], ancestors: _Ancestors) -> _Folder | None:
        """Record one entry; a folder to walk comes back, with its ancestors."""
        path = entry.path
        if entry.is_symlink():
            target = self._target(path)
            return None if target is None else self._followed(path, target, ancestors)
        if entry.is_dir(follow_symlinks=False):
            return path, ancestors | {_identity(path)} if self.follow else ancestors
        info = entry.stat(follow_symlinks=False)  # types came free; the size costs an lstat
        if stat.S_ISREG(info.st_mode):
            self.files[_posix(path)] = FileInfo(info.st_size)
        else:
            self._ignore(path, f"{_special_kind(info.st_mode)}, never opened")
        return None

    def _followed(self, path: str, target: os.stat_result, ancestors: _Ancestors) -> _Folder | None:
        """Record a symbolic link that may be followed, by what it points to."""
        if stat.S_ISDIR(target.st_mode):
            identity = (target.st_dev, target.st_ino)
            if identity in ancestors:
                self._ignore(path, "symbolic link to a folder holding it (a loop), not followed")
                return None
            return path, ancestors | {identity}
        if stat.S_ISREG(target.st_mode):
            self.files[_posix(path)] = FileInfo(target.st_size)
        else:
            kind = _special_kind(target.st_mode)
            self._ignore(path, f"symbolic link to a {kind}, never opened")
        return None

    def _target(self, link: str) -> os.stat_result | None:
        """What the symbolic link points to, when it may be followed; else reported."""
        if not self.follow:
            self._ignore(link, "symbolic link, not followed")
            return None
        target = os.path.realpath(link)
        if not _inside(target, self.boundary):
            self._ignore(link, f"symbolic link to {target}, outside the data root, not followed")
            return None
        try:
            return os.stat(link)
        except OSError:
            self._ignore(link, "broken symbolic link")
            return None

    def _ignore(self, path: str, reason: str) -> None:
        self.ignored.append(Ignored(_posix(path), reason))


_Ancestors = frozenset[tuple[int, int]]
_Folder = tuple[str, _Ancestors]


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _posix(path: str) -> str:
    return path.replace(os.sep, "/")


def open_backend(
    root: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    fs: Any = None,
) -> Backend:
    """Build the backend for ``root``: a local path, any fsspec URL (chained ones too), or a
    path inside the filesystem ``fs``. S3 gets :data:`S3_DEFAULT_OPTIONS` under yours."""
    text = os.fspath(root)
    options = dict(storage_options or {})
    if fs is None:
        _check_protocols(text)
        if fsspec.core.split_protocol(text)[0] in ("s3", "s3a"):
            _check_s3_options(options)
    try:
        if fs is None:
            protocol = fsspec.core.split_protocol(text)[0] or "file"
            if protocol in ("s3", "s3a") and "::" not in text:
                options = _merge_defaults(S3_DEFAULT_OPTIONS, options)
            fs, path = fsspec.core.url_to_fs(text, **options)
        else:
            path = fs._strip_protocol(text)
    except Exception as exc:  # a filesystem that cannot even be built: config or network
        raise StorageError(
            f"cannot open {text!r}: {type(exc).__name__}: {exc}; check the URL and the storage "
            "options"
        ) from None
    path = path.rstrip("/") or path
    return _backend_for(fs, path)


# s3fs options whose values must be strings, at the top level and inside client_kwargs; a
# wrong type would otherwise surface as a TypeError deep inside botocore on first use.
_S3_TEXT_OPTIONS: Final = ("key", "secret", "token", "profile", "endpoint_url")
_S3_CLIENT_TEXT_OPTIONS: Final = ("endpoint_url", "region_name", "aws_access_key_id")
_S3_MAPPING_OPTIONS: Final = ("client_kwargs", "config_kwargs", "s3_additional_kwargs")


def _check_s3_options(options: Mapping[str, Any]) -> None:
    """Refuse storage options of the wrong shape before the client is built from them."""

    def refuse(name: str, value: object, kind: str) -> StorageError:
        return StorageError(f"storage option {name} must be {kind}, not {value!r}")

    for name in _S3_MAPPING_OPTIONS:
        if name in options and not isinstance(options[name], Mapping):
            raise refuse(name, options[name], f"a mapping (-o {name}.KEY=VALUE)")
    client = options.get("client_kwargs") or {}
    found = [(n, options.get(n)) for n in _S3_TEXT_OPTIONS]
    found += [(f"client_kwargs.{n}", client.get(n)) for n in _S3_CLIENT_TEXT_OPTIONS]
    for name, value in found:
        if value is not None and not isinstance(value, str):
            raise refuse(name, value, "a string")
    endpoint = client.get("endpoint_url") or options.get("endpoint_url")
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint):
        raise StorageError(
            f"endpoint URL {endpoint!r} is not an http(s) URL: write it as "
            "http://HOST:PORT or https://HOST"
        )


def _check_protocols(url: str) -> None:
    """Refuse, before building anything, a protocol fsspec does not know or one that
    cannot hold a store (:data:`UNSUPPORTED_PROTOCOLS`); each part of a chained URL."""
    for part in url.split("::"):
        protocol = fsspec.core.split_protocol(part)[0]
        if protocol is None:
            continue
        if protocol not in fsspec.available_protocols():
            raise StorageError(
                f"unknown protocol {protocol!r} in {url!r}: use a local path or a URL such as "
                "s3://bucket/prefix, memory://name, or another fsspec protocol"
            )
        if protocol in UNSUPPORTED_PROTOCOLS:
            raise StorageError(
                f"{protocol}:// cannot hold a gens store (it is read-only or cannot list a "
                f"folder): {url!r}; copy the data somewhere that can (local disk, s3://...)"
            )


def _backend_for(fs: Any, root: str) -> Backend:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if isinstance(fs, LocalFileSystem):
        return LocalBackend(fs, root)
    if "s3" in protocols:
        return S3Backend(fs, root)
    if "memory" in protocols:
        return MemoryBackend(fs, root)
    return Backend(fs, root)
