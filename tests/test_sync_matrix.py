"""``sync`` between every pair of backends that matters: each pair with one side on local
disk, S3 and Azure both ways and to themselves (server side), and the generic fsspec path
with a synchronous and an asynchronous filesystem.

For each pair: the first sync gives an exact mirror, the second copies nothing, a same-size
edit (its mtime put back on local disk) is caught, and ``verify`` agrees. Files are written,
edited and read back through the storage itself (fsspec on the medium's URL), not through
the backend under test.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from gens_fs import DataRoot, GensStore, SyncReport, sync, write_membership
from gens_fs.backends.retry import is_transient
from gens_fs.testing.invariants import snapshot
from gens_fs.testing.s3 import MotoServer, create_bucket, s3_storage_options
from tests.process import gens_fs, one_error_line
from tests.test_backend_contract import AzureMedium

EDITED = "gens/essay/e1/raw.txt"


@dataclass(frozen=True)
class Side:
    """One side of a sync: what ``sync`` is given, and the medium's own URL and options."""

    root: str | DataRoot
    url: str
    options: dict[str, Any]


def meta(parent: str = "") -> dict[str, str]:
    return {"task_id": "t", "template_id": "tpl", "model_id": "m", "parent_gen_id": parent}


def write_store(side: Side, n: int = 2) -> None:
    """``n`` lineages (draft, essay, evaluation), a file of the original pipeline's, a cohort."""
    store = GensStore(f"{side.url}/gens", storage_options=side.options)
    for i in range(n):
        store.write("draft", f"d{i}", metadata=meta(), raw=f"draft {i}", parsed=f"d{i}")
        store.write("essay", f"e{i}", metadata=meta(f"d{i}"), raw=f"essay {i}", prompt="p")
        store.write("evaluation", f"v{i}", metadata=meta(f"e{i}"), raw=f"score {i}", parsed="5")
    raw(side, "gens/essay/e0/raw_metadata.json", b'{"finish_reason": "stop"}')
    write_membership(side.url, "c1", [("evaluation", "v1")], storage_options=side.options)


def raw(side: Side, relpath: str, data: bytes) -> None:
    """Write a file through the medium itself; on local disk with its old mtime kept."""
    fs, path = fsspec.core.url_to_fs(f"{side.url}/{relpath}", **side.options)
    before = os.stat(path) if isinstance(fs, LocalFileSystem) and fs.exists(path) else None
    fs.pipe_file(path, data)
    if before is not None:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def make_side(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str, str], Side]:
    """``make_side(kind, name)``: an empty data root of that kind."""
    unique = uuid.uuid4().hex[:10]

    def make(kind: str, name: str) -> Side:
        if kind == "local":
            return Side(str(tmp_path / name), str(tmp_path / name), {})
        if kind == "memory":
            url = f"memory://{unique}/{name}"
            return Side(url, url, {})
        if kind == "generic-sync":  # memory under a DirFileSystem: wrapped, worker threads
            fs = DirFileSystem(path=f"/{unique}", fs=MemoryFileSystem())
            return Side(DataRoot(name, fs=fs), f"memory://{unique}/{name}", {})
        if kind == "s3":
            server: MotoServer = request.getfixturevalue("moto_server")
            bucket = f"matrix-{unique}"
            create_bucket(server.endpoint_url, bucket)
            url = f"s3://{bucket}/{name}"
            return Side(url, url, s3_storage_options(server.endpoint_url))
        options = request.getfixturevalue("azure_options")
        url = f"az://gens-test/{unique}/{name}"
        if kind == "azure":
            return Side(url, url, options)
        assert kind == "generic-async"  # adlfs under a DirFileSystem: its coroutines awaited
        fs = DirFileSystem(path=f"gens-test/{unique}", fs=fsspec.filesystem("az", **options))
        return Side(DataRoot(name, fs=fs), url, options)

    return make


PAIRS = [
    ("local", "memory"),
    ("memory", "local"),
    ("local", "s3"),
    ("s3", "local"),
    ("local", "azure"),
    ("azure", "local"),
    ("s3", "azure"),
    ("azure", "s3"),
    ("s3", "s3"),
    ("azure", "azure"),
    ("local", "generic-sync"),
    ("generic-sync", "local"),
    ("local", "generic-async"),
    ("generic-async", "local"),
]


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_mirror_resync_and_same_size_edit(
    src_kind: str, dst_kind: str, make_side: Callable[[str, str], Side]
) -> None:
    src, dst = make_side(src_kind, "src"), make_side(dst_kind, "dst")
    # The generic path's listings carry no hash and its reads cost requests: it compares
    # sizes, and reads to compare only when asked (--checksum).
    check_mirror(src, dst, checksum="generic" in src_kind or "generic" in dst_kind)


def check_mirror(src: Side, dst: Side, *, checksum: bool) -> None:
    """An exact mirror, a no-op second run, a same-size edit caught (with ``checksum`` where
    the pair has no hash to compare), and a verify that agrees."""
    write_store(src)
    files = snapshot(src.url, src.options)

    def run(**kwargs: Any) -> Any:
        return sync(src.root, dst.root, src_options=src.options, dst_options=dst.options, **kwargs)

    first = run()
    assert (first.copied, first.skipped, first.errors) == (len(files), 0, [])
    assert snapshot(dst.url, dst.options) == files

    again = run()
    assert (again.copied, again.skipped, again.errors) == (0, len(files), [])

    raw(src, EDITED, b"ESSAY 1")  # "essay 1", same size
    edited = run(checksum=checksum)
    assert (edited.copied, edited.skipped) == (1, len(files) - 1)
    assert snapshot(dst.url, dst.options)[EDITED] == b"ESSAY 1"
    assert run(verify=True, checksum=checksum).verified is True


def test_an_azure_blob_without_content_md5_is_compared_by_reading(
    make_side: Callable[[str, str], Side], azurite: Any
) -> None:
    """A blob uploaded in blocks has no Content-MD5 in its listing: a same-size difference
    is still caught, by reading it (without --checksum)."""
    src, dst = make_side("local", "src"), make_side("azure", "dst")
    write_store(src, n=1)
    sync(src.root, dst.url, dst_options=dst.options)
    medium = AzureMedium(azurite.connection_string)
    blob = f"{dst.url.removeprefix('az://')}/gens/essay/e0/raw.txt"
    medium.set_in_blocks(blob, [b"ESSAY", b" 0"])  # "essay 0", same size, no MD5
    report = sync(src.root, dst.url, dst_options=dst.options)
    assert report.copied == 1
    assert medium.get(blob) == b"essay 0"
    assert sync(src.root, dst.url, dst_options=dst.options).copied == 0


def test_azure_connection_errors_and_busy_answers_are_retried() -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

    busy = HttpResponseError("server busy")
    busy.status_code = 503
    missing = ResourceNotFoundError("no such blob")
    missing.status_code = 404
    assert is_transient(ServiceRequestError("connection refused")) and is_transient(busy)
    assert not is_transient(missing)


def test_cli_on_azure_from_the_standard_environment(
    make_side: Callable[[str, str], Side], azurite: Any
) -> None:
    """``gens-fs`` with ``az://`` roots and only ``AZURE_STORAGE_CONNECTION_STRING`` set, as a
    user runs it; a missing container is one line, exit 2."""
    src, dst = make_side("local", "src"), make_side("azure", "dst")
    write_store(src, n=1)
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    done = gens_fs("sync", str(src.root), dst.url, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert SyncReport.model_validate_json(done.stdout).copied == len(snapshot(src.url))
    listed = gens_fs("ls", dst.url, "--json", env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 3
    missing = one_error_line(gens_fs("ls", "az://no-such-container/data", env=env))
    assert "container 'no-such-container' does not exist" in missing
