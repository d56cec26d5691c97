"""Shared fixtures: one moto S3 server per test run, a fresh bucket per test, and a
``store`` on local, memory and S3.

The S3 server is moto's own app served on 127.0.0.1 (a free port): s3fs talks real HTTP to
it, so what the tests see is what s3fs does against a bucket. moto's state lives as long as
the process and is never wiped: each test that uses S3 gets a bucket no other test has
touched (``bucket``), so the suite passes with its files in any order.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from gens_fs import GensStore
from gens_fs.testing.azure import Azurite, azure_storage_options, create_container
from gens_fs.testing.s3 import MotoServer, new_bucket, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware


@pytest.fixture(scope="session", autouse=True)
def hash_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This run's local hash caches (``gens_fs.backends.local_hashes``), kept apart from the
    user's own: every sync of a test's temporary root would leave one in ~/.cache. Set in
    the environment, so the ``gens-fs`` processes tests start use it too."""
    folder = tmp_path_factory.mktemp("gens-fs-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENS_FS_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    """A new, empty bucket for this test alone."""
    return new_bucket(moto_server.endpoint_url)


@pytest.fixture(scope="session")
def s3_options(moto_server: MotoServer) -> dict[str, Any]:
    return s3_storage_options(moto_server.endpoint_url)


@pytest.fixture(params=["local", "memory", "s3"])
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def data_root_url(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh, empty data root (holds ``gens/`` and ``cohorts/``) on the backend."""
    unique = uuid.uuid4().hex[:12]
    if backend_name == "local":
        yield str(tmp_path / "data")
    elif backend_name == "memory":
        url = f"memory://{unique}/data"
        yield url
        with contextlib.suppress(FileNotFoundError):
            fsspec.filesystem("memory").rm(f"/{unique}", recursive=True)
    else:
        yield f"s3://{request.getfixturevalue('bucket')}/data"


@pytest.fixture
def storage_options(backend_name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend_name == "s3":
        return dict(request.getfixturevalue("s3_options"))
    return {}


@pytest.fixture
def store(data_root_url: str, storage_options: dict[str, Any]) -> GensStore:
    """An empty ``GensStore`` on local disk, in memory, or in the moto S3 bucket."""
    return GensStore(f"{data_root_url}/gens", storage_options=storage_options)


@pytest.fixture
def s3_middleware(moto_server: MotoServer) -> Iterator[S3Middleware]:
    """The session's moto state behind counting / latency / fault / hold middleware, on an
    endpoint of this test's own (fresh counts, no faults, no latency)."""
    with S3Middleware() as middleware:
        yield middleware


@pytest.fixture
def counted_store(s3_middleware: S3Middleware, bucket: str) -> GensStore:
    """An empty S3 ``GensStore`` whose every request goes through ``s3_middleware``."""
    options = s3_storage_options(s3_middleware.endpoint_url)
    return GensStore(f"s3://{bucket}/gens", storage_options=options)


@pytest.fixture
def aws_env(backend_name: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """S3 configured the standard way, through the environment (nothing on the command
    line), for CLI processes; nothing for the other backends."""
    if backend_name != "s3":
        return {}
    server = request.getfixturevalue("moto_server")
    return {
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries at once: its backoff (up to seconds per attempt) only slows tests."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def cli_options(s3_options: dict[str, Any]) -> list[str]:
    """The ``-o KEY=VALUE`` flags of ``gens-fs`` for these s3fs options' endpoint."""
    endpoint = s3_options["client_kwargs"]["endpoint_url"]
    return [
        "-o", "key=testing", "-o", "secret=testing",
        "-o", f"client_kwargs.endpoint_url={endpoint}", "-o", "client_kwargs.region_name=us-east-1",
    ]  # fmt: skip


# -- Azure Blob: Azurite (the Azure Storage emulator) over HTTP, one per session -----------

CONTAINER = "gens-test"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service on 127.0.0.1 (installed from npm on first use), with the
    container ``gens-test``; stopped at the end of the session."""
    with Azurite() as server:
        create_container(server.connection_string, CONTAINER)
        yield server


@pytest.fixture(scope="session")
def azure_options(azurite: Azurite) -> dict[str, Any]:
    """adlfs storage options for the session's Azurite account."""
    return azure_storage_options(azurite.connection_string)
