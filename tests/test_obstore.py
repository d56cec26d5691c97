"""The obstore engine: the backend contract on moto and Azurite, the S3 request budget
(counted by the proxy in front of moto), options and environment, and sync with obstore on
either side."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pytest
from azure.storage.blob import BlobServiceClient

from gens_fs import DataRoot, GensStore, StorageError, load_generation, sync
from gens_fs.backends import Capabilities, SyncBackend, open_backend
from gens_fs.backends.obstore_config import store_settings
from gens_fs.testing.azure import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from gens_fs.testing.invariants import mirror_problems, snapshot
from gens_fs.testing.s3 import MotoServer, create_bucket, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.s3_requests import FaultPlan
from gens_fs.testing.synthetic import make_store
from tests.process import gens_fs, one_error_line
from tests.test_backend_contract import AzureMedium, BackendContract, Medium, S3Medium
from tests.test_faults import DRAFTS, FAST, _seeds
from tests.test_sync_matrix import Side, check_mirror, write_store

META = {"task_id": "t", "template_id": "x", "model_id": "m"}


def new_bucket(endpoint_url: str) -> str:
    name = f"obstore-{uuid.uuid4().hex[:12]}"
    create_bucket(endpoint_url, name)
    return name


def seed(store: GensStore, drafts: int) -> None:
    for i in range(drafts):
        store.write("draft", f"d{i}", metadata=META, raw="r", parsed="p", prompt="q")


# -- the contract ------------------------------------------------------------------------------


class TestObstoreS3(BackendContract):
    declared = Capabilities(True, "md5", costs_requests=True, copy_scope="obstore")

    @pytest.fixture
    def backend(self, moto_server: MotoServer) -> SyncBackend:
        bucket = new_bucket(moto_server.endpoint_url)
        options = s3_storage_options(moto_server.endpoint_url)
        return SyncBackend(
            open_backend(f"s3://{bucket}/root", storage_options=options, engine="obstore")
        )

    @pytest.fixture
    def medium(self, moto_server: MotoServer) -> Medium:
        return S3Medium(moto_server.endpoint_url)

    def test_a_missing_bucket_is_a_storage_error(self, moto_server: MotoServer) -> None:
        options = s3_storage_options(moto_server.endpoint_url)
        missing = SyncBackend(
            open_backend("s3://no-such-bucket/x", storage_options=options, engine="obstore")
        )
        with pytest.raises(StorageError, match="'no-such-bucket' does not exist"):
            missing.scan([missing.root])
        with pytest.raises(StorageError, match="'no-such-bucket' does not exist"):
            missing.children(missing.root)

    def test_a_root_opened_with_either_engine_is_the_same_root(
        self, backend: SyncBackend, moto_server: MotoServer
    ) -> None:
        options = s3_storage_options(moto_server.endpoint_url)
        fsspec_side = SyncBackend(open_backend(backend.url(backend.root), storage_options=options))
        assert backend.same_root(fsspec_side)


@pytest.fixture
def obstore_container(azurite: Azurite) -> str:
    name = f"obstore-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(name)
    return name


class TestObstoreAzure(BackendContract):
    """obstore's listings carry the ETag only, which on Azure is not the MD5 of the bytes:
    no listing hash is declared."""

    declared = Capabilities(True, None, costs_requests=True, copy_scope="obstore")

    @pytest.fixture
    def backend(self, obstore_container: str, azure_options: dict[str, Any]) -> SyncBackend:
        url = f"az://{obstore_container}/root"
        return SyncBackend(open_backend(url, storage_options=azure_options, engine="obstore"))

    @pytest.fixture
    def medium(self, azurite: Azurite) -> AzureMedium:
        return AzureMedium(azurite.connection_string)

    def test_a_missing_container_is_a_storage_error(self, azure_options: dict[str, Any]) -> None:
        missing = SyncBackend(
            open_backend(
                "az://no-such-container/x", storage_options=azure_options, engine="obstore"
            )
        )
        with pytest.raises(StorageError, match="'no-such-container' does not exist"):
            missing.scan([missing.root])
        with pytest.raises(StorageError, match="'no-such-container' does not exist"):
            missing.children(missing.root)


# -- the request budget on S3 ----------------------------------------------------------------


@pytest.fixture
def counted(s3_middleware: S3Middleware) -> GensStore:
    """An empty S3 store through obstore, every request counted by ``s3_middleware``."""
    bucket = new_bucket(s3_middleware.endpoint_url)
    options = s3_storage_options(s3_middleware.endpoint_url)
    return GensStore(f"s3://{bucket}/gens", storage_options=options, engine="obstore")


def test_load_is_one_get_per_file_and_no_head(
    counted: GensStore, s3_middleware: S3Middleware
) -> None:
    seed(counted, 30)
    s3_middleware.reset_counts()
    counted.load("draft", "d0")
    assert s3_middleware.counts() == {"GET": 4}
    s3_middleware.reset_counts()
    assert len(counted.load_many("draft", [f"d{i}" for i in range(30)])) == 30
    assert s3_middleware.counts() == {"GET": 120}


def test_listing_is_one_request(counted: GensStore, s3_middleware: S3Middleware) -> None:
    seed(counted, 30)
    s3_middleware.reset_counts()
    assert len(counted.gen_ids("draft")) == 30
    assert s3_middleware.counts() == {"LIST": 1}


def test_write_is_one_put_per_file_and_the_commit_a_conditional_put(
    counted: GensStore, s3_middleware: S3Middleware
) -> None:
    seed(counted, 1)
    s3_middleware.reset_counts()
    counted.write("essay", "e1", metadata={**META, "parent_gen_id": "d0"}, raw="r", parsed="p")
    assert s3_middleware.counts() == {"GET": 2, "PUT": 3}
    assert [r.path for r in s3_middleware.log if r.kind == "PUT"][-1].endswith("/e1/metadata.json")
    # The commit is create-only on the service's side: a second one is one PUT, refused
    # there (no HEAD, no GET first), and the first bytes stay; then one GET tells the
    # refusal from an earlier attempt of this create that landed (other bytes: it did not).
    s3_middleware.reset_counts()
    path = counted.path("essay", "e1", "metadata.json")
    backend = SyncBackend(open_backend(f"s3://{path}", storage_options=s3_storage_options(
        s3_middleware.endpoint_url), engine="obstore"))  # fmt: skip
    assert backend.create(path, b"second") is False
    assert s3_middleware.counts() == {"PUT": 1, "GET": 1}
    assert json.loads(counted.load("essay", "e1").metadata.model_dump_json())["template_id"] == "x"


def test_a_no_op_sync_lists_and_nothing_else_and_one_bucket_copies_server_side(
    s3_middleware: S3Middleware, tmp_path: Path
) -> None:
    bucket = new_bucket(s3_middleware.endpoint_url)
    options = s3_storage_options(s3_middleware.endpoint_url)
    src, dst = f"s3://{bucket}/src", f"s3://{bucket}/dst"
    seed(GensStore(f"{src}/gens", storage_options=options, engine="obstore"), 3)
    s3_middleware.reset_counts()
    first = sync(src, dst, src_options=options, dst_options=options, engine="obstore")
    counts = s3_middleware.counts()
    assert (first.copied, first.errors) == (12, [])
    assert counts.get("COPY", 0) + counts.get("PUT", 0) == 12 and counts.get("COPY", 0) > 0
    assert "HEAD" not in counts
    s3_middleware.reset_counts()
    again = sync(src, dst, src_options=options, dst_options=options, engine="obstore")
    assert (again.copied, again.skipped) == (0, 12)
    assert set(s3_middleware.counts()) == {"LIST"}


# -- engine choice, options and environment ----------------------------------------------------


def test_local_and_memory_roots_are_the_same_under_either_engine(tmp_path: Path) -> None:
    store = GensStore(tmp_path / "gens", engine="obstore")
    store.write("draft", "d1", metadata=META, raw="r")
    assert load_generation(tmp_path / "gens", "draft", "d1", engine="obstore")["raw_text"] == "r"
    assert DataRoot("memory://obstore-mem/data", engine="obstore").cohort_ids() == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: open_backend("sftp://host/x", engine="obstore"), "serves s3://, gs:// and az://"),
        (lambda: open_backend("s3://b/x", engine="boto"), "unknown engine 'boto'"),
        (
            lambda: open_backend("s3://b/x", storage_options={"use_ssl": False}, engine="obstore"),
            "storage option 'use_ssl' has no equivalent in the obstore engine",
        ),
        (
            lambda: open_backend(
                "az://c/x", storage_options={"connection_string": "nonsense"}, engine="obstore"
            ),
            "connection string names no AccountName",
        ),
    ],
    ids=["protocol", "engine", "option", "connection-string"],
)
def test_what_the_engine_cannot_serve_is_a_storage_error(
    call: Callable[[], Any], message: str
) -> None:
    with pytest.raises(StorageError, match=message):
        call()


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without obstore: importing it fails."""
    monkeypatch.setitem(sys.modules, "obstore", None)
    monkeypatch.delitem(sys.modules, "gens_fs.backends.obstore", raising=False)
    with pytest.raises(StorageError, match=r"pip install 'gens_fs\[obstore\]'"):
        open_backend("s3://bucket/x", engine="obstore")


def test_options_are_mapped_to_obstore_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    s3 = store_settings("s3", s3_storage_options("http://127.0.0.1:9"))
    assert s3.config == {
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "region": "us-east-1",
        "endpoint": "http://127.0.0.1:9",
        "virtual_hosted_style_request": False,
    }
    # obstore retries nothing: config_kwargs.retries sets gens_fs's retry layer instead
    assert s3.client_options == {"allow_http": True} and s3.retry_config == {"max_retries": 0}
    retried = s3_storage_options("http://127.0.0.1:9", max_attempts=3)
    assert store_settings("s3", retried).retry_config == {"max_retries": 0}
    assert store_settings("s3", {"anon": True}).config == {"skip_signature": True}
    connection = (
        f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        "EndpointSuffix=core.windows.net"
    )
    azure = store_settings("az", {"connection_string": connection})
    assert azure.config == {
        "account_name": ACCOUNT_NAME,
        "account_key": ACCOUNT_KEY,
        "endpoint": f"https://{ACCOUNT_NAME}.blob.core.windows.net",
    }
    assert azure.client_options == {}


def test_s3_from_the_standard_environment_and_a_profile(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing passed: the endpoint (plain HTTP), keys and region from ``AWS_*``; then the
    keys from an ``AWS_PROFILE`` in a credentials file instead."""
    bucket = new_bucket(moto_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    GensStore(f"s3://{bucket}/gens", engine="obstore").write("draft", "d1", metadata=META, raw="r")

    credentials = tmp_path / "credentials"
    credentials.write_text("[gens]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "gens")
    assert GensStore(f"s3://{bucket}/gens", engine="obstore").gen_ids("draft") == ["d1"]
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(StorageError, match="AWS profile 'nobody' is not in"):
        GensStore(f"s3://{bucket}/gens", engine="obstore")


def test_no_credentials_is_one_storage_error(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No keys anywhere: obstore falls back to the cloud's instance metadata service, which
    answers only on a cloud VM (refused here, or silent: the probe's time limit)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    root = DataRoot(f"s3://{new_bucket(moto_server.endpoint_url)}/data", engine="obstore")
    with pytest.raises(StorageError, match=r"no credentials for|cannot reach the storage"):
        root.cohort_ids()


# -- sync with obstore on either side ----------------------------------------------------------


@pytest.fixture
def obstore_side(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str, str], Side]:
    """``obstore_side(kind, name)``: an empty data root; ``s3``/``azure`` through obstore
    (its medium's URL and options are the default engine's), ``s3-fsspec`` and ``local``
    as they are."""
    unique = uuid.uuid4().hex[:10]

    def make(kind: str, name: str) -> Side:
        if kind == "local":
            return Side(str(tmp_path / name), str(tmp_path / name), {})
        if kind.startswith("s3"):
            server: MotoServer = request.getfixturevalue("moto_server")
            url = f"s3://{new_bucket(server.endpoint_url)}/{name}"
            options = s3_storage_options(server.endpoint_url)
        else:
            options = request.getfixturevalue("azure_options")
            url = f"az://gens-test/{unique}/{name}"
        engine = "fsspec" if kind.endswith("-fsspec") else "obstore"
        return Side(DataRoot(url, storage_options=options, engine=engine), url, options)

    return make


PAIRS = [
    ("local", "s3"),
    ("s3", "local"),
    ("local", "azure"),
    ("azure", "local"),
    ("s3", "azure"),
    ("azure", "s3"),
    ("s3", "s3"),
    ("s3-fsspec", "s3"),
    ("s3", "s3-fsspec"),
]


@pytest.mark.parametrize(("src_kind", "dst_kind"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_mirror_resync_and_same_size_edit(
    src_kind: str, dst_kind: str, obstore_side: Callable[[str, str], Side]
) -> None:
    src, dst = obstore_side(src_kind, "src"), obstore_side(dst_kind, "dst")
    # obstore's Azure listings carry no MD5: a same-size edit there is found when asked
    # (--checksum), as on the generic path.
    check_mirror(src, dst, checksum="azure" in (src_kind, dst_kind))


def test_cli_with_engine_obstore_from_the_standard_environment(
    obstore_side: Callable[[str, str], Side], moto_server: MotoServer, tmp_path: Path
) -> None:
    """``gens-fs sync/ls/show/check/stats --engine obstore`` with S3 configured only by
    ``AWS_*`` variables, as a user runs it; a missing bucket is one line, exit 2."""
    src = obstore_side("local", "src")
    write_store(src)  # two lineages, and a cohort listing the second
    bucket = new_bucket(moto_server.endpoint_url)
    dst = f"s3://{bucket}/data"
    env = {
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = gens_fs("sync", str(src.root), dst, "--engine", "obstore", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copied"] == len(snapshot(src.url))
    listed = gens_fs("ls", dst, "--engine", "obstore", "--json", env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 6
    shown = gens_fs("show", dst, "essay", "e0", "--engine", "obstore", "--json", env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["raw_text"] == "essay 0"
    for command in ("check", "stats"):
        assert gens_fs(command, dst, "--engine", "obstore", env=env).returncode == 0
    missing = one_error_line(gens_fs("ls", "s3://no-such-bucket/x", "--engine", "obstore", env=env))
    assert "'no-such-bucket' does not exist" in missing
    unknown = one_error_line(gens_fs("ls", dst, "--engine", "boto", env=env))
    assert "--engine" in unknown


# -- faults ------------------------------------------------------------------------------------

FAULT_CASES = list(zip(["local-s3", "s3-local", "s3-s3"], _seeds(3), strict=True))


@pytest.mark.parametrize(("direction", "seed"), FAULT_CASES)
def test_sync_under_faults_converges(
    direction: str, seed: int, tmp_path: Path, moto_server: MotoServer
) -> None:
    """5% of requests answered 500 / 503 SlowDown, delayed, or cut mid-body: gens_fs's
    retries (obstore makes one attempt) finish the mirror, and the destination keeps its
    invariants throughout (checked after)."""
    bucket = new_bucket(moto_server.endpoint_url)
    direct = s3_storage_options(moto_server.endpoint_url)
    with S3Middleware() as faulty:
        through = s3_storage_options(faulty.endpoint_url)
        src_kind, dst_kind = direction.split("-")
        src, dst = (
            f"s3://{bucket}/{name}" if kind == "s3" else str(tmp_path / name)
            for kind, name in ((src_kind, "src"), (dst_kind, "dst"))
        )
        so, do = (through if kind == "s3" else {} for kind in (src_kind, dst_kind))
        src_fs, src_path = fsspec.core.url_to_fs(src, **(direct if src_kind == "s3" else {}))
        make_store(src_fs, src_path, drafts=DRAFTS, seed=seed)
        src_files = snapshot(src, direct if src_kind == "s3" else {})
        faulty.faults = FaultPlan(rate=0.05, seed=seed, delay_s=0.2)
        report = sync(src, dst, src_options=so, dst_options=do, retry=FAST, engine="obstore")
        assert faulty.wait_idle()
        assert {r.fault for r in faulty.log if r.fault} >= {"500", "503", "cut"}
    dst_files = snapshot(dst, direct if dst_kind == "s3" else {})
    assert report.ok, report.errors
    assert mirror_problems(src_files, dst_files) == [] and dst_files == src_files


# -- a process exits cleanly -----------------------------------------------------------------

EXIT_SCRIPT = """
import sys
from gens_fs import GensStore
from gens_fs.testing.s3 import s3_storage_options
store = GensStore(sys.argv[1], storage_options=s3_storage_options(sys.argv[2]), engine="obstore")
store.write("draft", sys.argv[3], metadata={"task_id": "t", "template_id": "x", "model_id": "m"},
            raw="r", parsed="p", prompt="q")
store.load_many("draft", [sys.argv[3]])
"""


def test_a_process_exits_cleanly_right_after_its_last_request(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    """A short process that writes and reads, then ends, exits 0 every time. (Through
    obstore's ``*_async`` API, 13-22% of such runs died of SIGABRT at exit: its Tokio
    threads touched the interpreter while it was finalizing.)"""
    root = f"s3://{new_bucket(moto_server.endpoint_url)}/gens"
    script = tmp_path / "short.py"
    script.write_text(EXIT_SCRIPT)
    codes = [
        subprocess.run(
            [sys.executable, str(script), root, moto_server.endpoint_url, f"d{i}"],
            capture_output=True,
            timeout=120,
        ).returncode
        for i in range(12)
    ]
    assert codes == [0] * 12
