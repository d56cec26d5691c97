"""Access denied, against a moto server that enforces IAM (in a process of its own: see
``gens_fs.testing.s3_iam``): a key without permissions listing, a read-only key writing, a
list-only key reading. Each is one line on stderr naming the operation and the URL, exit
2, never retried, and nothing half-written. Run as real processes, both engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gens_fs import AccessDenied, DataRoot, GensStore, MembershipRow
from gens_fs.testing.invariants import snapshot
from gens_fs.testing.s3_iam import IamMotoServer
from tests.process import gens_fs, one_error_line

BUCKET = "iam-denied"
DATA = f"s3://{BUCKET}/data"
META = {"task_id": "t", "template_id": "x", "model_id": "m"}
USERS = {
    "admin": ["s3:*"],
    "reader": ["s3:ListBucket", "s3:GetObject"],
    "lister": ["s3:ListBucket"],
    "nobody": None,
}
ENGINES = ["fsspec", "obstore"]
# What a command takes here, measured (each refused request is answered at once and never
# retried): a hang guard, far above it, not a measurement.
HANG_GUARD_S = 60.0


@pytest.fixture(scope="module")
def iam() -> Iterator[IamMotoServer]:
    """The server, its users, and a store at ``DATA`` (two drafts, an essay, a cohort)
    written by the admin."""
    with IamMotoServer([BUCKET], USERS) as server:
        root = DataRoot(DATA, storage_options=server.storage_options("admin"))
        store = root.store()
        for gen_id in ("d1", "d2"):
            store.write("draft", gen_id, metadata=META, raw=f"raw {gen_id}", parsed="p")
        store.write("essay", "e1", metadata={**META, "parent_gen_id": "d1"}, raw="essay")
        root.write_membership("c1", [MembershipRow(stage="essay", gen_id="e1")])
        yield server


def env_of(iam: IamMotoServer, user: str) -> dict[str, str]:
    key, secret = iam.credentials[user]
    return {
        "AWS_ENDPOINT_URL": iam.endpoint_url,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def keys_under(iam: IamMotoServer, prefix: str) -> dict[str, bytes]:
    """What the bucket holds under ``prefix``, read with the admin's key."""
    return snapshot(f"s3://{BUCKET}/{prefix}", iam.storage_options("admin"))


def denied_line(iam: IamMotoServer, user: str, *args: str) -> tuple[str, float]:
    started = time.monotonic()
    done = gens_fs(*args, env=env_of(iam, user), timeout=HANG_GUARD_S)
    return one_error_line(done), time.monotonic() - started


def test_the_server_enforces_iam(iam: IamMotoServer) -> None:
    """The premise: the setup key is refused, the admin is not, the others as their
    policies say (so a refusal below is the server's, not a fault of ours)."""
    with pytest.raises(AccessDenied):
        GensStore(f"{DATA}/gens", storage_options=iam.storage_options("nobody")).load("draft", "d1")
    assert GensStore(f"{DATA}/gens", storage_options=iam.storage_options("reader")).exists(
        "draft", "d1"
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("command", [["ls"], ["stats"], ["check"]])
def test_a_key_without_permissions_listing(
    iam: IamMotoServer, engine: str, command: list[str]
) -> None:
    line, _ = denied_line(iam, "nobody", *command, DATA, "--engine", engine)
    assert line.startswith(f"gens-fs: error: access denied listing {DATA}"), line
    assert "check the credentials" in line


@pytest.mark.parametrize("engine", ENGINES)
def test_a_key_without_permissions_syncing_from_the_bucket(
    iam: IamMotoServer, engine: str, tmp_path: Path
) -> None:
    dst = tmp_path / "copy"
    line, _ = denied_line(iam, "nobody", "sync", DATA, str(dst), "--engine", engine)
    assert line.startswith(f"gens-fs: error: access denied listing {DATA}"), line
    assert not dst.exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_read_only_key_writing(iam: IamMotoServer, engine: str, tmp_path: Path) -> None:
    """A sync into the bucket: the first PUT refused stops it; nothing lands."""
    src = tmp_path / "local"
    store = GensStore(src / "gens")
    for gen_id in ("a1", "a2", "a3"):
        store.write("draft", gen_id, metadata=META, raw="raw", parsed="parsed")
    target = f"s3://{BUCKET}/upload-{engine}"
    line, _ = denied_line(iam, "reader", "sync", str(src), target, "--engine", engine)
    assert line.startswith(f"gens-fs: error: access denied writing {target}/gens/draft/a"), line
    assert keys_under(iam, f"upload-{engine}") == {}


def test_a_read_only_key_writing_a_generation(iam: IamMotoServer) -> None:
    store = GensStore(f"{DATA}/gens", storage_options=iam.storage_options("reader"))
    with pytest.raises(AccessDenied, match=r"^access denied writing s3://") as denied:
        store.write("draft", "d9", metadata=META, raw="raw", parsed="parsed")
    assert denied.value.operation == "writing"
    assert denied.value.url.startswith(f"{DATA}/gens/draft/d9/")
    assert not any("/d9/" in key for key in keys_under(iam, "data"))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_list_only_key_reading(iam: IamMotoServer, engine: str, tmp_path: Path) -> None:
    """Reads refused while planning (an essay's metadata.json, for its parent) and while
    copying (drafts only: no planning read): one line, nothing written locally."""
    dst = tmp_path / "copy"
    line, _ = denied_line(iam, "lister", "sync", DATA, str(dst), "--engine", engine)
    assert line.startswith(f"gens-fs: error: access denied reading {DATA}/"), line
    line, _ = denied_line(
        iam, "lister", "sync", DATA, str(dst), "--stage", "draft", "--engine", engine
    )
    assert line.startswith(f"gens-fs: error: access denied reading {DATA}/gens/draft/d"), line
    assert snapshot(str(dst), {}) == {}
    line, _ = denied_line(iam, "lister", "show", DATA, "draft", "d1", "--engine", engine)
    assert line.startswith(f"gens-fs: error: access denied reading {DATA}/gens/draft/d1/"), line
