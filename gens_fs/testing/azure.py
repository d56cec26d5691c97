"""Azurite, the Azure Storage emulator, for tests and demos: the real Blob service API on
127.0.0.1, data in memory, started and stopped by the caller.

Azurite is a Node.js program from npm. :func:`azurite_command` finds it, installing it on
first use into a cache folder (``$XDG_CACHE_HOME/gens_fs/azurite-<version>``, or
``~/.cache/...``) with ``npm``, so a fresh machine needs only Node.js and npm. The account
is Azurite's well-known development account; :attr:`Azurite.connection_string` is what
adlfs (``connection_string=``) and the Azure SDK take, and what
``AZURE_STORAGE_CONNECTION_STRING`` may hold.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

AZURITE_VERSION = "3.35.0"
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's published development key (not a secret: the same in every Azurite).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
LOOPBACK = "127.0.0.1"
# Starting Node and Azurite takes about a second; installing it first, about a minute.
START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"Blob service successfully listens on (http://\S+)")


class AzuriteUnavailable(RuntimeError):
    """Azurite cannot be installed or started here (no Node.js or npm, an npm failure)."""


def cache_dir() -> Path:
    """Where Azurite is installed: one folder per version, reused across runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "gens_fs" / f"azurite-{AZURITE_VERSION}"


def azurite_command(folder: Path | None = None) -> list[str]:
    """The command that runs Azurite's blob service, installed into ``folder`` (default:
    :func:`cache_dir`) with ``npm install`` if it is not there yet."""
    folder = folder or cache_dir()
    program = folder / "node_modules" / ".bin" / "azurite-blob"
    if not program.exists():
        _npm_install(folder)
    node = shutil.which("node")
    if node is None:
        raise AzuriteUnavailable("Azurite needs Node.js: install it (e.g. apt-get install nodejs)")
    return [str(program)]


def _npm_install(folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise AzuriteUnavailable(
            "Azurite (the Azure Storage emulator the Azure tests use) comes from npm, and npm "
            "is not installed: install Node.js and npm (e.g. apt-get install nodejs npm)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    # Into a temporary sibling, then renamed: a run killed halfway leaves no broken install.
    staging = Path(tempfile.mkdtemp(prefix=".azurite-", dir=folder.parent))
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(staging)]
    done = subprocess.run(
        [*command, f"azurite@{AZURITE_VERSION}"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise AzuriteUnavailable(f"npm install azurite@{AZURITE_VERSION} failed: {done.stderr}")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


class Azurite:
    """Azurite's blob service on ``127.0.0.1`` (a free port), in memory, as a child process.

    ``with Azurite() as azurite:`` starts it and waits until it listens; leaving the block
    stops it. Telemetry is off: it never talks to the network.
    """

    def __init__(self, *, install_dir: Path | None = None) -> None:
        self._install_dir = install_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._endpoint: str | None = None

    def start(self) -> Azurite:
        if self._process is not None:
            raise RuntimeError("Azurite already started")
        command = [
            *azurite_command(self._install_dir),
            "--blobHost", LOOPBACK, "--blobPort", "0",
            "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
            "--disableTelemetry", "--silent",
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop)
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            self._endpoint = self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> str:
        """The endpoint Azurite prints once it listens (it chose the port)."""
        assert self._process is not None and self._log is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            output = self._output()
            found = _LISTENING.search(output)
            if found:
                return found.group(1).rstrip("/")
            if self._process.poll() is not None:
                raise AzuriteUnavailable(f"Azurite exited at start: {output.strip()}")
            time.sleep(0.05)  # polling a child's output: nothing to wait on instead
        raise AzuriteUnavailable(f"Azurite did not listen within {START_TIMEOUT_S:g} s")

    def _output(self) -> str:
        assert self._log is not None
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        """Stop the process and free its port. Idempotent."""
        process, self._process = self._process, None
        self._endpoint = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def blob_endpoint(self) -> str:
        """``http://127.0.0.1:<port>/devstoreaccount1``."""
        if self._endpoint is None:
            raise RuntimeError("Azurite is not started")
        return f"{self._endpoint}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_endpoint)


def connection_string(blob_endpoint: str) -> str:
    """The connection string of Azurite's account at ``blob_endpoint``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={blob_endpoint};"
    )


def azure_storage_options(connection: str) -> dict[str, Any]:
    """adlfs options (``fsspec.filesystem("az", **options)``) for that account."""
    return {"connection_string": connection}


def create_container(connection: str, name: str) -> None:
    """Create the container ``name``; fine if it exists."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection)
    with service, contextlib.suppress(ResourceExistsError):
        service.create_container(name)
