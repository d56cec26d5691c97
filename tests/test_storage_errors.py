"""Storage that cannot be used is one line on stderr and exit 2, quickly, with nothing
written: unknown and unsupported protocols, an endpoint that refuses or never answers, and
a destination where a file stands in the place of a folder. Run as real processes."""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gens_fs import GensStore, StorageError, sync
from gens_fs.cli._common import parse_options
from tests.process import gens_fs, one_error_line


def assert_one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    line = one_error_line(result)
    assert all(phrase in line for phrase in phrases), line


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("ftpx://host/data", "unknown protocol 'ftpx'"),
        ("simplecache::nope://b/data", "unknown protocol 'nope'"),
        ("https://example.invalid/data", "https:// cannot hold a gens store"),
        ("github://org:repo@main/data", "github:// cannot hold a gens store"),
        ("ftp://no-such-host.invalid/data", "cannot open 'ftp://no-such-host.invalid/data'"),
    ],
)
def test_unknown_or_unsupported_protocol(url: str, phrase: str) -> None:
    assert_one_line_error(gens_fs("ls", url), phrase)


@pytest.fixture
def refusing_port() -> int:
    """A port nothing listens on: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def endpoint(port: int) -> list[str]:
    return [
        "-o", "key=k", "-o", "secret=s", "-o", "client_kwargs.region_name=us-east-1",
        "-o", f"client_kwargs.endpoint_url=http://127.0.0.1:{port}",
    ]  # fmt: skip


@pytest.mark.parametrize("which", ["refusing_port", "silent_port"])
def test_unreachable_endpoint_is_one_line(which: str, request: pytest.FixtureRequest) -> None:
    port = request.getfixturevalue(which)
    assert_one_line_error(
        gens_fs("stats", "s3://bucket/data", *endpoint(port)), "cannot reach the storage endpoint"
    )


def test_sync_to_an_unreachable_endpoint_is_one_line(silent_port: int, tmp_path: Path) -> None:
    src = tmp_path / "data"
    GensStore(src / "gens").write("draft", "d1", metadata=META, raw="r")
    result = gens_fs("sync", str(src), "s3://bucket/data", *endpoint(silent_port))
    assert_one_line_error(result, "cannot reach the storage endpoint for s3://bucket/data")


META = {"task_id": "t", "template_id": "tpl", "model_id": "m"}


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def five_drafts(src: Path) -> None:
    store = GensStore(src / "gens")
    for i in range(5):
        store.write("draft", f"d{i}", metadata=META, raw="raw", parsed="parsed")


@pytest.mark.parametrize("blocker", ["gens", "gens/draft", "gens/draft/d1", ".", ".."])
def test_destination_blocked_by_a_file(blocker: str, tmp_path: Path) -> None:
    """A file where the sync needs a folder: inside the destination, the destination itself,
    or a folder above it (``backup/data`` where ``backup`` is a file)."""
    src, backup = tmp_path / "data", tmp_path / "backup"
    five_drafts(src)
    dst = backup / "data"
    blocked = (dst / blocker).resolve()
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("in the way")
    before = tree(tmp_path)

    result = gens_fs("sync", str(src), str(dst))

    assert_one_line_error(result, f"{blocked} is a file where a folder must be")
    assert tree(tmp_path) == before  # nothing written
    with pytest.raises(StorageError, match="nothing was written"):
        sync(src, dst)


KEYS = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.mark.parametrize(
    ("env", "options", "phrase"),
    [
        ({"AWS_PROFILE": "no-such-profile"}, [], "The config profile (no-such-profile)"),
        ({"AWS_ENDPOINT_URL": "127.0.0.1:9"}, [], "Invalid endpoint: 127.0.0.1:9"),
        ({}, ["-o", "client_kwargs=5"], "storage option client_kwargs must be a mapping"),
        ({}, ["-o", "client_kwargs.region_name=5"], "client_kwargs.region_name must be a string"),
        ({}, ["-o", "client_kwargs.endpoint_url=http://h:1 "], "is not an http(s) URL"),
        ({}, ["-o", "client_kwargs.endpoint_url=ftp://h:1"], "is not an http(s) URL"),
    ],
)
def test_client_configuration_mistakes_are_one_line(
    env: dict[str, str], options: list[str], phrase: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = gens_fs("ls", "s3://bucket/data", *options, env={**KEYS, **env})
    assert_one_line_error(done, phrase)
    # The library meets the same mistakes with a StorageError, not botocore's own errors.
    for name, value in {**KEYS, **env}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StorageError, match=re.escape(phrase)):
        GensStore("s3://bucket/data/gens", storage_options=parse_options(options[1::2])).load(
            "draft", "d"
        )
