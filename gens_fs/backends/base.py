"""The backend contract: the few async primitives every storage offers, and what it declares.

A :class:`Backend` is one storage seen from one root. Its primitives are coroutines, so that
many can be in flight on one event loop (see :mod:`gens_fs.backends.loop`, which owns that
loop and gives synchronous code a blocking view of any backend):

* ``read(paths)``: every file's bytes; a missing file is ``None`` and a failed read its
  exception, both as values, so a caller reasoning over many files can report each one;
* ``write(files)``: each file lands whole or not at all, replacing what was there;
* ``create(path, data)``: the medium's exclusive create where it has one (False when the
  file exists);
* ``scan(prefixes)``: every file under the prefixes with its size and the hash the listing
  gives for free (what that hash is: :attr:`Capabilities.listing_hash`), and the entries
  the listing left out without reading them (symbolic links, FIFOs... on local disk);
* ``children(path)``: the first level of a folder (one request on an object store);
* ``delete(paths)``: already-missing files are fine;
* ``copy(src, dst, size)``: server side, between backends whose capabilities say so;
* ``stream(path, chunk_size)``: one file in chunks, memory flat for any size;
* ``leftovers(prefixes)`` / ``remove_leftovers(files, folders)``: what this backend's own
  writers leave when killed (local disk's temporary files; object stores: nothing).
* ``md5(paths)``: each file's MD5, read (by default through ``stream``) and hashed; local
  disk answers from its hash cache what has not changed
  (:mod:`gens_fs.backends.local_hashes`).

What a backend guarantees is declared data (:class:`Capabilities`), never found out by
asking which class it is. This module imports no storage library.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, NamedTuple, Protocol, TypeVar

from gens_fs.errors import StorageError

ListingHash = Literal["md5", "content-md5"]
"""What the hash in a listing is. ``"md5"``: an S3 ETag, the MD5 of the bytes for a
single-part upload (a multipart ETag, ``<hex>-<parts>``, is not one). ``"content-md5"``: an
Azure blob's Content-MD5 property, the MD5 of the bytes where the blob has one."""

# How much of a file ``stream`` holds at once.
STREAM_CHUNK = 8 * 2**20
# Files hashed at once by the default ``md5`` (each one streamed: memory stays flat).
HASH_CONCURRENCY = 64
# The first request to a storage (a first-level listing) answers within this, or the
# storage is reported unreachable: a client would otherwise retry a refused connection for
# tens of seconds, and wait a minute for an endpoint that accepts it but never answers.
PROBE_TIMEOUT_S = 4.0

B = TypeVar("B", bound="Backend")
T = TypeVar("T")
W = TypeVar("W", bound="WrappedBackend")


@dataclass(frozen=True)
class Capabilities:
    """What a backend guarantees, declared.

    ``exclusive_create``: ``create`` is atomic against concurrent writers (one winner).
    ``listing_hash``: the hash a listing carries for free (see :data:`ListingHash`), if any.
    ``costs_requests``: each read is a billed, high-latency request (object stores); False
    where reading a file to hash it costs nothing remote (local disk, memory).
    ``copy_scope``: backends with the same (non-``None``) scope copy from each other server
    side: one service, one set of credentials that can read both sides.
    """

    exclusive_create: bool
    listing_hash: ListingHash | None
    costs_requests: bool
    copy_scope: str | None = None

    def server_copy_with(self, other: Capabilities) -> bool:
        """True when a backend with these capabilities can copy ``other``'s files server
        side (no bytes through this process)."""
        return self.copy_scope is not None and self.copy_scope == other.copy_scope


class FileInfo(NamedTuple):
    """A file as a listing shows it: its size and the hash the listing gave (hex, as
    declared by :attr:`Capabilities.listing_hash`; ``None`` when it gave none)."""

    size: int
    hash: str | None = None


class Ignored(NamedTuple):
    """An entry a listing left out without reading it: a symbolic link not followed, a FIFO,
    socket or device. ``path`` as the listing found it; ``reason`` says what it is."""

    path: str
    reason: str


@dataclass(frozen=True)
class Scan:
    """A listing's result: the regular files with their :class:`FileInfo`, and the entries
    it left out (:class:`Ignored`). Every backend here gives ``files`` as a
    :class:`~gens_fs.backends.file_table.FileTable` (about 75 bytes a file), filled as the
    listing's pages arrive."""

    files: Mapping[str, FileInfo]
    ignored: list[Ignored] = field(default_factory=list)


class Children(NamedTuple):
    """The names of the folders and files directly in a directory. ``exists``: False when
    the directory is absent, ``None`` when it holds nothing on a medium that cannot tell
    absent from empty (an object store's prefix)."""

    folders: frozenset[str]
    files: frozenset[str]
    exists: bool | None


class Stat(NamedTuple):
    """A file or folder as ``leftovers`` finds it: its size (0 for a folder), when it was
    last modified (seconds since the epoch) and, for a folder, how many entries it holds
    (hidden ones too)."""

    path: str
    size: int
    mtime: float
    entries: int = 0


@dataclass(frozen=True)
class Leftovers:
    """What killed writers left under some folders: their temporary files, and the
    folders that hold nothing but such files, or nothing at all."""

    temp_files: list[Stat] = field(default_factory=list)
    folders: list[Stat] = field(default_factory=list)


class Removed(NamedTuple):
    """One leftover ``remove_leftovers`` was asked to remove: ``error`` is ``None`` when it
    is gone, else why it is still there."""

    path: str
    error: str | None = None


ReadResult = bytes | Exception | None
"""One file as ``read`` gives it: its bytes, ``None`` when missing, or why it failed."""

HashResult = str | BaseException
"""One file as ``md5`` gives it: its MD5 (hex), or why it could not be hashed."""


class PageRetry(Protocol):
    """How the retry layer sends one listing request: ``attempt`` again after a transient
    failure, as its policy says, each attempt at its turn (see
    :mod:`gens_fs.backends.retried`)."""

    def __call__(self, attempt: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


class Backend(ABC):
    """One storage under one root. Paths are the storage's own (no protocol), built by
    :mod:`gens_fs.layout` from :attr:`root`."""

    capabilities: Capabilities
    runs_inline: ClassVar[bool] = False
    """True when no coroutine of this backend ever waits on the event loop (plain OS calls),
    so synchronous callers may run them in their own thread (local disk's fast path)."""
    delete_batch: ClassVar[int] = 1
    """How many files one delete request removes (S3's DeleteObjects: 1,000): what a rate
    limit charges a ``delete`` (:mod:`gens_fs.backends.limits`)."""
    list_page: ClassVar[int] = 1000
    """The most files one listing page holds (S3 and GCS: 1,000; Azure: 5,000, so counted
    high): how a rate limit counts a listing's pages after it."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or root

    @property
    @abstractmethod
    def service(self) -> str:
        """The storage service and account: two backends with the same ``service`` see the
        same file at the same path."""

    @abstractmethod
    def url(self, path: str) -> str:
        """``path`` as a user would type it: with its protocol (a plain path on local disk)."""

    @abstractmethod
    def path_of(self, location: str) -> str:
        """A path or URL of this storage as a path of this backend (no protocol)."""

    def resolved(self, path: str) -> str:
        """``path`` in the storage's own normal form, for telling whether two paths are one
        (on local disk: through symbolic links; elsewhere the path itself)."""
        return path

    def at(self: B, root: str) -> B:
        """The same storage (same client) under another root."""
        other = copy.copy(self)
        other.root = root.rstrip("/") or root
        return other

    def durable(self) -> Backend:
        """This storage with every change on disk before the call returns, for callers
        that must survive a power loss: local disk overrides it (``fsync`` of each file
        and of the folders whose entries changed). An object store has acknowledged a
        write only once it is stored, and memory has no disk: itself, as it is."""
        return self

    def with_known_md5s(self) -> Backend:
        """This storage, its listings carrying the MD5 of every file whose MD5 is known
        without reading it (local disk: from its hash cache, see
        :meth:`~gens_fs.backends.local.LocalBackend.with_known_md5s`), and capabilities
        that say so. Elsewhere a listing carries what it always does: itself."""
        return self

    @abstractmethod
    async def read(self, paths: Sequence[str]) -> dict[str, ReadResult]:
        """Every path's bytes, one request each, all in flight at once where the medium
        allows; no existence probe first."""

    @abstractmethod
    async def write(self, files: Mapping[str, bytes]) -> None:
        """Write every file, replacing it; each lands whole or not at all."""

    @abstractmethod
    async def create(self, path: str, data: bytes) -> bool:
        """Create ``path`` only if it does not exist; False if it did. Atomic against
        concurrent writers exactly when ``capabilities.exclusive_create``."""

    @abstractmethod
    async def scan(
        self,
        prefixes: Sequence[str],
        *,
        follow_symlinks: bool = False,
        retry_page: PageRetry | None = None,
    ) -> Scan:
        """Every file under the directories ``prefixes``, one recursive listing each (side
        by side where the medium allows). ``follow_symlinks`` matters on local disk only.
        ``retry_page``: what a backend that :attr:`pages_retried` sends each listing
        request through (the others ignore it)."""

    @property
    def pages_retried(self) -> bool:
        """True when :meth:`scan` sends each listing request through its ``retry_page``: a
        failed page is asked for again, not the whole listing (S3: a stage of 10^6 keys is
        1,000 pages). Otherwise the retry layer retries a prefix's listing whole."""
        return False

    @abstractmethod
    async def children(self, path: str, *, stop_at: Collection[str] = ()) -> Children:
        """What ``path`` holds at its first level. ``stop_at``: folder names after which an
        object store may stop paging (the caller needs nothing more)."""

    @abstractmethod
    async def delete(self, paths: Sequence[str]) -> None:
        """Delete files; already-missing ones are fine."""

    async def copy(self, src: str, dst: str, size: int) -> None:
        """Copy ``src`` (a path of a backend whose capabilities
        :meth:`~Capabilities.server_copy_with` these) to ``dst``, server side."""
        raise NotImplementedError(f"{type(self).__name__} has no server-side copy")

    @abstractmethod
    async def stream(
        self, path: str, chunk_size: int = STREAM_CHUNK
    ) -> AsyncIterator[bytes] | None:
        """One file's bytes in chunks of at most ``chunk_size``; ``None`` when the file is
        missing (known before the first chunk). The caller closes the iterator if it stops
        early (``aclose``)."""

    async def leftovers(self, prefixes: Sequence[str]) -> Leftovers:
        """The temporary files this backend's own writers leave when killed, under the
        folders ``prefixes``, and the folders that hold nothing else. Object stores have
        none: each file is one PUT that lands whole or not at all (an interrupted multipart
        upload leaves parts no listing shows; the service's lifecycle rules expire them)."""
        return Leftovers()

    async def remove_leftovers(self, files: Sequence[str], folders: Sequence[str]) -> list[Removed]:
        """Remove the temporary ``files``, then each of ``folders`` if it is empty: one
        :class:`Removed` each, in that order. A folder that is not empty (a writer came
        back) stays, and says so."""
        return [Removed(p, "this storage leaves no temporary files") for p in [*files, *folders]]

    async def md5(self, paths: Sequence[str], *, fresh: bool = False) -> dict[str, HashResult]:
        """The MD5 (hex) of each file, each one streamed (memory stays flat),
        :data:`HASH_CONCURRENCY` at once; a missing file gives ``FileNotFoundError``, a file
        that cannot be read its exception. ``fresh``: nothing from a cache (local disk keeps
        one; everything else reads every time)."""
        limit = asyncio.Semaphore(HASH_CONCURRENCY)

        async def one(path: str) -> str:
            async with limit:
                chunks = await self.stream(path)
                if chunks is None:
                    raise FileNotFoundError(path)
                digest = hashlib.md5()
                async for chunk in chunks:
                    digest.update(chunk)
                return digest.hexdigest()

        found = await asyncio.gather(*(one(p) for p in paths), return_exceptions=True)
        return dict(zip(paths, found, strict=True))

    async def blocked_folder(self, folders: Collection[str]) -> str | None:
        """The first of ``folders`` that exists as something other than a folder, so nothing
        can be written below it. Object stores have no folders: nothing is ever in the way."""
        return None

    def storage_error(self, exc: BaseException) -> StorageError | None:
        """What ``exc`` means for the storage as a whole (no credentials, access denied, no
        endpoint), or ``None`` when it concerns one file only."""
        where = self.url(self.root)
        if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
            return StorageError(f"access denied to {where}: check your credentials ({exc})")
        if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
            # clients hand unknown storage options to what they build on first use
            return StorageError(f"a storage option for {where} is not known: {exc}")
        return None


class WrappedBackend(Backend):
    """A concern added around another backend (retries, a rate limit): what is stored
    where, and what it means, stays ``inner``'s (paths, URLs, capabilities, error mapping,
    leftovers); a subclass overrides the primitives it changes and :meth:`around`."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.root)
        self.inner = inner
        self.capabilities = inner.capabilities

    @abstractmethod
    def around(self: W, inner: Backend) -> W:
        """The same concern, with its state, around another backend."""

    @property
    def service(self) -> str:
        return self.inner.service

    def url(self, path: str) -> str:
        return self.inner.url(path)

    def path_of(self, location: str) -> str:
        return self.inner.path_of(location)

    def resolved(self, path: str) -> str:
        return self.inner.resolved(path)

    def at(self: W, root: str) -> W:
        return self.around(self.inner.at(root))

    def durable(self) -> Backend:
        return self.around(self.inner.durable())

    @property
    def pages_retried(self) -> bool:
        return self.inner.pages_retried

    def storage_error(self, exc: BaseException) -> StorageError | None:
        return self.inner.storage_error(exc)

    async def blocked_folder(self, folders: Collection[str]) -> str | None:
        return await self.inner.blocked_folder(folders)

    async def leftovers(self, prefixes: Sequence[str]) -> Leftovers:
        return await self.inner.leftovers(prefixes)

    async def remove_leftovers(self, files: Sequence[str], folders: Sequence[str]) -> list[Removed]:
        return await self.inner.remove_leftovers(files, folders)
