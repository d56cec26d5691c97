"""One contract, every backend (zarr-python's ``StoreTests``, rclone's ``fstests``).

:class:`BackendContract` holds the tests; each subclass gives a backend under a fresh root and
a :class:`Medium`: its own way in to the bytes (the OS, boto3, the Azure SDK, the memory
filesystem's dict) that never goes through the backend under test, so the backend is
checked against the storage itself. Subclasses: local disk, memory, S3 (moto server), Azure
Blob (Azurite), and the generic fsspec path with a synchronous filesystem (memory, wrapped)
and an asynchronous one (adlfs under a ``DirFileSystem``).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
from azure.storage.blob import BlobBlock, BlobServiceClient
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from gens_fs import StorageError
from gens_fs.backends import Capabilities, SyncBackend, open_backend, run
from gens_fs.backends.generic import FsspecBackend
from gens_fs.errors import SpecialFile
from gens_fs.testing.azure import Azurite
from gens_fs.testing.s3 import MotoServer, boto3_client, create_bucket, s3_storage_options

CHUNK = 1000


class Medium(Protocol):
    """The storage under a backend, reached without it. Paths are the backend's."""

    def set(self, path: str, data: bytes) -> None: ...

    def get(self, path: str) -> bytes | None: ...


class BackendContract:
    """What every backend guarantees. ``declared``: the capabilities it must declare (its
    ``copy_scope`` aside, which names an endpoint)."""

    declared: ClassVar[Capabilities]

    @pytest.fixture
    def backend(self) -> SyncBackend:
        raise NotImplementedError

    @pytest.fixture
    def medium(self) -> Medium:
        raise NotImplementedError

    def test_declares_its_capabilities(self, backend: SyncBackend) -> None:
        caps = backend.capabilities
        assert (caps.exclusive_create, caps.listing_hash, caps.costs_requests) == (
            self.declared.exclusive_create,
            self.declared.listing_hash,
            self.declared.costs_requests,
        )
        assert caps.server_copy_with(caps) == (self.declared.copy_scope is not None)

    def test_read_many_gives_bytes_and_missing_as_none(
        self, backend: SyncBackend, medium: Medium
    ) -> None:
        here, empty, gone = (f"{backend.root}/{name}" for name in ("a/here", "a/empty", "a/gone"))
        medium.set(here, b"bytes \x00\xff")
        medium.set(empty, b"")
        expected = {here: b"bytes \x00\xff", empty: b"", gone: None}
        assert backend.read_many([here, empty, gone]) == expected
        assert backend.read_each([here, empty, gone]) == expected
        assert backend.read_many([]) == {}

    def test_write_lands_every_file_and_replaces(
        self, backend: SyncBackend, medium: Medium
    ) -> None:
        one, two = f"{backend.root}/x/one.txt", f"{backend.root}/x/y/two.txt"
        medium.set(one, b"old content, longer")
        backend.write_many({one: b"new", two: "två".encode()})
        assert (medium.get(one), medium.get(two)) == (b"new", "två".encode())

    def test_create_is_exclusive_and_keeps_the_first(
        self, backend: SyncBackend, medium: Medium
    ) -> None:
        path = f"{backend.root}/gens/draft/d1/metadata.json"
        assert backend.create(path, b"first") is True
        assert backend.create(path, b"second") is False
        assert medium.get(path) == b"first"

    def test_scan_lists_sizes_and_the_declared_hash(
        self, backend: SyncBackend, medium: Medium
    ) -> None:
        root = backend.root
        files = {
            f"{root}/gens/draft/d1/raw.txt": b"draft one",
            f"{root}/gens/draft/d1/metadata.json": b"{}",
            f"{root}/gens/draft/d2/deep/er.txt": b"",
            f"{root}/gens/drafts/not/under.txt": b"a sibling that shares the prefix's name",
            f"{root}/cohorts/c1/membership.csv": b"stage,gen_id\n",
        }
        for path, data in files.items():
            medium.set(path, data)
        scan = backend.scan([f"{root}/gens/draft", f"{root}/cohorts", f"{root}/absent"])
        listed = {p: d for p, d in files.items() if "/drafts/" not in p}
        assert {p: info.size for p, info in scan.files.items()} == {
            p: len(d) for p, d in listed.items()
        }
        for path, info in scan.files.items():
            if backend.capabilities.listing_hash is None:
                assert info.hash is None
            else:  # both declared kinds are the MD5 of the bytes for a file written whole
                assert info.hash == hashlib.md5(listed[path]).hexdigest()
        assert scan.ignored == []
        assert backend.listing(f"{root}/gens/draft/d1") == {
            f"{root}/gens/draft/d1/raw.txt": 9,
            f"{root}/gens/draft/d1/metadata.json": 2,
        }

    def test_children_are_the_first_level(self, backend: SyncBackend, medium: Medium) -> None:
        root = backend.root
        for rel in ("top/a/x.txt", "top/b/c/y.txt", "top/f.txt"):
            medium.set(f"{root}/{rel}", b"1")
        found = backend.children(f"{root}/top")
        assert (found.folders, found.files, found.exists) == ({"a", "b"}, {"f.txt"}, True)
        absent = backend.children(f"{root}/absent")
        assert (absent.folders, absent.files) == (frozenset(), frozenset())
        assert absent.exists in (False, None)  # an object store cannot tell absent from empty

    def test_delete_many_and_missing_is_fine(self, backend: SyncBackend, medium: Medium) -> None:
        keep, drop = f"{backend.root}/d/keep", f"{backend.root}/d/drop"
        medium.set(keep, b"k")
        medium.set(drop, b"d")
        backend.remove([drop, f"{backend.root}/d/never-was"])
        assert (medium.get(keep), medium.get(drop)) == (b"k", None)
        backend.remove([keep])
        assert backend.listing(f"{backend.root}/d") == {}

    def test_server_copy_where_declared(self, backend: SyncBackend, medium: Medium) -> None:
        src, dst = f"{backend.root}/copy/src.txt", f"{backend.root}/copy/sub/dst.txt"
        medium.set(src, b"copied server side")
        if not backend.capabilities.server_copy_with(backend.capabilities):
            with pytest.raises(NotImplementedError):
                run(backend.backend.copy(src, dst, 18))
            return
        run(backend.backend.copy(src, dst, 18))
        assert medium.get(dst) == b"copied server side"
        assert backend.scan([f"{backend.root}/copy/sub"]).files[dst].size == 18

    def test_stream_in_chunks(self, backend: SyncBackend, medium: Medium) -> None:
        path = f"{backend.root}/big/raw.txt"
        data = bytes(range(256)) * 10  # 2,560 bytes: two whole chunks and a part
        medium.set(path, data)
        chunks = backend.iter_file(path, CHUNK)
        assert chunks is not None
        got = list(chunks)
        assert b"".join(got) == data and max(len(c) for c in got) <= CHUNK
        assert backend.iter_file(f"{backend.root}/big/absent", CHUNK) is None
        medium.set(f"{backend.root}/big/empty", b"")
        empty = backend.iter_file(f"{backend.root}/big/empty", CHUNK)
        assert empty is not None and list(empty) == []
        stopped = backend.iter_file(path, CHUNK)
        assert stopped is not None and next(stopped) == data[:CHUNK]
        stopped.close()  # a reader that stops early closes the stream

    def test_md5_many_streams_each_file(self, backend: SyncBackend, medium: Medium) -> None:
        files = {f"{backend.root}/h/{i}": bytes([i]) * (i * 700) for i in range(4)}
        for path, data in files.items():
            medium.set(path, data)
        wanted = [*files, f"{backend.root}/h/absent"]
        assert backend.md5_many(wanted) == {p: hashlib.md5(d).hexdigest() for p, d in files.items()}

    def test_primitives_run_together_on_the_loop(
        self, backend: SyncBackend, medium: Medium
    ) -> None:
        """What the sync executor does: many coroutines of one backend in flight at once on
        the event loop (the generic path used to call fsspec's blocking wrappers here)."""
        inner, root = backend.backend, backend.root
        medium.set(f"{root}/loop/in", b"in")

        async def together() -> list[Any]:
            return await asyncio.gather(
                inner.read([f"{root}/loop/in"]),
                inner.write({f"{root}/loop/out": b"out"}),
                inner.create(f"{root}/loop/new", b"new"),
                inner.scan([f"{root}/loop"]),
                inner.children(f"{root}/loop"),
            )

        read, _, created, _, _ = run(together())
        assert read == {f"{root}/loop/in": b"in"} and created is True
        assert (medium.get(f"{root}/loop/out"), medium.get(f"{root}/loop/new")) == (b"out", b"new")

    def test_at_is_the_same_storage_under_another_root(
        self, backend: SyncBackend, medium: Medium
    ) -> None:
        other = backend.at(f"{backend.root}/elsewhere")
        other.write_many({f"{other.root}/f": b"seen"})
        assert medium.get(f"{backend.root}/elsewhere/f") == b"seen"
        assert other.same_root(backend.at(other.root)) and not other.same_root(backend)


# -- local disk ------------------------------------------------------------------------------


class LocalMedium:
    def set(self, path: str, data: bytes) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    def get(self, path: str) -> bytes | None:
        return Path(path).read_bytes() if Path(path).is_file() else None


class TestLocal(BackendContract):
    declared = Capabilities(exclusive_create=True, listing_hash=None, costs_requests=False)

    @pytest.fixture
    def backend(self, tmp_path: Path) -> SyncBackend:
        return SyncBackend(open_backend(tmp_path / "root"))

    @pytest.fixture
    def medium(self) -> Medium:
        return LocalMedium()

    def test_read_each_gives_a_failure_as_a_value(self, backend: SyncBackend) -> None:
        good, folder = f"{backend.root}/f/good", f"{backend.root}/f/folder"
        LocalMedium().set(good, b"read")
        Path(folder).mkdir()
        got = backend.read_each([good, folder])
        assert got[good] == b"read" and isinstance(got[folder], SpecialFile)
        with pytest.raises(SpecialFile, match="folder, not a regular file"):
            backend.read_many([good, folder])


# -- memory ----------------------------------------------------------------------------------


class MemoryMedium:
    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def set(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)

    def get(self, path: str) -> bytes | None:
        return bytes(self.fs.cat_file(path)) if self.fs.isfile(path) else None


@pytest.fixture
def memory_root() -> Iterator[str]:
    unique = f"/contract-{uuid.uuid4().hex[:12]}"
    yield unique
    fs = MemoryFileSystem()
    if fs.exists(unique):
        fs.rm(unique, recursive=True)


class TestMemory(BackendContract):
    declared = Capabilities(exclusive_create=True, listing_hash=None, costs_requests=False)

    @pytest.fixture
    def backend(self, memory_root: str) -> SyncBackend:
        return SyncBackend(open_backend(f"memory://{memory_root.lstrip('/')}/root"))

    @pytest.fixture
    def medium(self) -> Medium:
        return MemoryMedium(MemoryFileSystem())


class TestGenericSynchronous(BackendContract):
    """The generic path with a synchronous filesystem: memory's, wrapped in fsspec's
    ``AsyncFileSystemWrapper`` (worker threads) instead of the memory backend's own."""

    declared = Capabilities(exclusive_create=False, listing_hash=None, costs_requests=True)

    @pytest.fixture
    def backend(self, memory_root: str) -> SyncBackend:
        return SyncBackend(FsspecBackend(MemoryFileSystem(), f"{memory_root}/root"))

    @pytest.fixture
    def medium(self) -> Medium:
        return MemoryMedium(MemoryFileSystem())


# -- S3: the moto server -------------------------------------------------------------------


class S3Medium:
    def __init__(self, endpoint_url: str) -> None:
        self.client = boto3_client(endpoint_url)

    def set(self, path: str, data: bytes) -> None:
        bucket, key = path.split("/", 1)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, path: str) -> bytes | None:
        bucket, key = path.split("/", 1)
        try:
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body


class TestS3(BackendContract):
    declared = Capabilities(True, "md5", costs_requests=True, copy_scope="s3")

    @pytest.fixture
    def backend(self, moto_server: MotoServer) -> SyncBackend:
        bucket = f"contract-{uuid.uuid4().hex[:12]}"
        create_bucket(moto_server.endpoint_url, bucket)
        options = s3_storage_options(moto_server.endpoint_url)
        return SyncBackend(open_backend(f"s3://{bucket}/root", storage_options=options))

    @pytest.fixture
    def medium(self, moto_server: MotoServer) -> Medium:
        return S3Medium(moto_server.endpoint_url)

    def test_a_missing_bucket_is_a_storage_error(self, moto_server: MotoServer) -> None:
        options = s3_storage_options(moto_server.endpoint_url)
        missing = SyncBackend(open_backend("s3://no-such-bucket/x", storage_options=options))
        with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
            missing.scan([missing.root])
        with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
            missing.children(missing.root)


# -- Azure Blob: Azurite -------------------------------------------------------------------


class AzureMedium:
    """The Azure SDK's synchronous client: paths are ``container/blob``."""

    def __init__(self, connection: str) -> None:
        self.service = BlobServiceClient.from_connection_string(connection)

    def _blob(self, path: str) -> Any:
        container, name = path.lstrip("/").split("/", 1)
        return self.service.get_blob_client(container, name)

    def set(self, path: str, data: bytes) -> None:
        self._blob(path).upload_blob(data, overwrite=True)

    def get(self, path: str) -> bytes | None:
        blob = self._blob(path)
        if not blob.exists():
            return None
        return bytes(blob.download_blob().readall())

    def set_in_blocks(self, path: str, parts: list[bytes]) -> None:
        """Upload as staged blocks: the service keeps no Content-MD5 for such a blob."""
        blob = self._blob(path)
        ids = [f"{i:08d}" for i in range(len(parts))]
        for block_id, part in zip(ids, parts, strict=True):
            blob.stage_block(block_id, part)
        blob.commit_block_list([BlobBlock(block_id) for block_id in ids])


@pytest.fixture
def azure_container(azurite: Azurite) -> str:
    name = f"contract-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(name)
    return name


class TestAzure(BackendContract):
    declared = Capabilities(True, "content-md5", costs_requests=True, copy_scope="az")

    @pytest.fixture
    def backend(self, azure_container: str, azure_options: dict[str, Any]) -> SyncBackend:
        url = f"az://{azure_container}/root"
        return SyncBackend(open_backend(url, storage_options=azure_options))

    @pytest.fixture
    def medium(self, azurite: Azurite) -> AzureMedium:
        return AzureMedium(azurite.connection_string)

    def test_a_blob_without_content_md5_lists_no_hash(
        self, backend: SyncBackend, medium: AzureMedium
    ) -> None:
        path = f"{backend.root}/blocks/raw.txt"
        medium.set_in_blocks(path, [b"two ", b"blocks"])
        assert backend.scan([f"{backend.root}/blocks"]).files[path] == (10, None)

    def test_a_missing_container_is_a_storage_error(self, azure_options: dict[str, Any]) -> None:
        missing = SyncBackend(
            open_backend("az://no-such-container/x", storage_options=azure_options)
        )
        for call in (
            lambda: missing.scan([missing.root]),
            lambda: missing.children(missing.root),
            lambda: missing.write_many({f"{missing.root}/f": b"1"}),
        ):
            with pytest.raises(StorageError, match="container 'no-such-container' does not exist"):
                call()


class TestGenericAsynchronous(BackendContract):
    """The generic path with an asynchronous filesystem: adlfs under a ``DirFileSystem``
    (which no backend knows more about), so its coroutines are awaited directly."""

    declared = Capabilities(exclusive_create=False, listing_hash=None, costs_requests=True)

    @pytest.fixture
    def backend(self, azure_container: str, azure_options: dict[str, Any]) -> SyncBackend:
        import fsspec

        adlfs = fsspec.filesystem("az", **azure_options)
        fs = DirFileSystem(path=azure_container, fs=adlfs)
        return SyncBackend(open_backend("root", fs=fs))

    @pytest.fixture
    def medium(self, azurite: Azurite, azure_container: str) -> Medium:
        return _Prefixed(AzureMedium(azurite.connection_string), azure_container)


class _Prefixed:
    """A medium seen through a ``DirFileSystem``: its paths are under ``prefix``."""

    def __init__(self, medium: Medium, prefix: str) -> None:
        self.medium, self.prefix = medium, prefix

    def set(self, path: str, data: bytes) -> None:
        self.medium.set(f"{self.prefix}/{path}", data)

    def get(self, path: str) -> bytes | None:
        return self.medium.get(f"{self.prefix}/{path}")
