"""A stage of more than a page is listed in parallel shards by key prefix, completely
(``gens_fs.backends.sharded`` inside ``S3Backend.scan`` and the obstore engine's scan),
against the moto server."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gens_fs import DataRoot, new_gen_id
from gens_fs.backends import open_backend
from gens_fs.backends.base import WrappedBackend
from gens_fs.backends.obstore import ObstoreBackend
from gens_fs.backends.obstore_listing import first_page, path_at_most
from gens_fs.backends.sharded import Page, Shard, key_before, list_prefix
from gens_fs.testing.s3 import MotoServer, boto3_client, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.s3_requests import failing_once_at

META = b'{"task_id": "t", "template_id": "x", "model_id": "m"}'


def test_a_stage_of_more_than_a_page_is_listed_completely_by_several_prefix_listings(
    moto_server: MotoServer, s3_middleware: S3Middleware, bucket: str
) -> None:
    gen_ids = sorted(new_gen_id("essay", f"task{i}") for i in range(2_000))
    stage = f"{bucket}/data/gens/essay"
    files = {f"{stage}/{g}/metadata.json": META for g in gen_ids}
    # Keys outside the gen_id alphabet (strays) sort between and after the generations.
    strays = ["notes.txt", "a b/raw.txt", "zz~/x", "\u03a9mega/x", "9:x/y", "z\U0010ffff/x"]
    files.update({f"{stage}/{name}": b"stray" for name in strays})
    fsspec.filesystem("s3", **s3_storage_options(moto_server.endpoint_url)).pipe(files)

    root = DataRoot(
        f"s3://{bucket}/data", storage_options=s3_storage_options(s3_middleware.endpoint_url)
    )
    s3_middleware.reset_counts()
    listed = root.backend.scan([stage]).files
    lists = [urllib.parse.parse_qs(r.query) for r in s3_middleware.log if r.kind == "LIST"]

    assert sorted(listed) == sorted(files)
    assert root.store().gen_ids("essay") == gen_ids
    asked = {(q["prefix"][0], q.get("start-after", [""])[0]) for q in lists}
    # One page of the whole stage, then shards from where it stopped: each its own range.
    assert len(lists) == len(asked) >= 3
    assert ("data/gens/essay/", "") in asked
    assert all(prefix.startswith("data/gens/essay/") for prefix, _ in asked)


# Characters of gen_ids and around them: the run boundaries of the split ("-", ".", "/",
# digits, ":", letters, "_", "~"), a space, non-ASCII, and the highest code point.
KEY_CHARS = "-./09:AZ_az~ \u00e9\u03a9\U0010ffff"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sets(st.text(KEY_CHARS, min_size=1, max_size=6), max_size=40))
def test_sharded_listing_returns_every_key_once_whatever_the_keys(
    moto_server: MotoServer, bucket: str, names: set[str]
) -> None:
    """Pages of 3 keys (``MaxKeys``: a real request parameter) make every set of a few
    keys split, and split again."""
    client = boto3_client(moto_server.endpoint_url)
    base = f"p{uuid.uuid4().hex[:8]}/"
    for name in names:
        client.put_object(Bucket=bucket, Key=base + name, Body=b"")
    requests: list[Shard] = []

    async def fetch(shard: Shard) -> Page[None]:
        requests.append(shard)
        after = {} if shard.start_after is None else {"StartAfter": shard.start_after}
        page: dict[str, Any] = client.list_objects_v2(
            Bucket=bucket, Prefix=shard.prefix, MaxKeys=3, **after
        )
        keys = [(o["Key"], None) for o in page.get("Contents", [])]
        return Page(keys, bool(page.get("IsTruncated")))

    listed: list[str] = []
    asyncio.run(list_prefix(fetch, base, lambda page: listed.extend(k for k, _ in page)))

    assert sorted(listed) == sorted(base + name for name in names)  # each key once
    if len(names) > 3:
        assert len(requests) > 1


def _seed(moto_server: MotoServer, files: dict[str, bytes]) -> None:
    fsspec.filesystem("s3", **s3_storage_options(moto_server.endpoint_url)).pipe(files)


def _lists(s3_middleware: S3Middleware) -> int:
    s3_middleware.wait_idle()
    return sum(1 for r in s3_middleware.log if r.kind == "LIST")


@pytest.mark.parametrize("engine", ["fsspec", "obstore"])
def test_a_listing_page_that_fails_is_asked_for_again_alone(
    moto_server: MotoServer, s3_middleware: S3Middleware, bucket: str, engine: str
) -> None:
    gen_ids = sorted(new_gen_id("essay", f"task{i}") for i in range(2_500))
    stage = f"{bucket}/data/gens/essay"
    _seed(moto_server, {f"{stage}/{g}/metadata.json": META for g in gen_ids})
    options = s3_storage_options(s3_middleware.endpoint_url)
    root = DataRoot(f"s3://{bucket}/data", storage_options=options, engine=engine)
    s3_middleware.reset_counts()
    whole = dict(root.backend.scan([stage]).files.items())
    pages = _lists(s3_middleware)
    # The third listing request fails once (503 SlowDown), whichever shard sent it.
    plan = failing_once_at(2, op="LIST", within=3 * pages)
    s3_middleware.faults = plan
    s3_middleware.reset_counts()

    listed = dict(root.backend.scan([stage]).files.items())

    assert listed == whole
    assert pages >= 3  # a first page and shards: the failed one is not the first
    assert _lists(s3_middleware) == pages + 1  # that page again, not the listing again


def test_the_obstore_engine_lists_a_large_stage_in_shards_with_the_default_engines_rows(
    moto_server: MotoServer, s3_middleware: S3Middleware, bucket: str
) -> None:
    gen_ids = sorted(new_gen_id("essay", f"task{i}") for i in range(2_000))
    stage = f"{bucket}/data/gens/essay"
    files = {f"{stage}/{g}/metadata.json": META for g in gen_ids}
    files.update({f"{stage}/{g}/raw.txt": g.encode() * (i % 3) for i, g in enumerate(gen_ids)})
    strays = ["notes.txt", "a b/raw.txt", "zz~/x", "\u03a9mega/x", "9:x/y", "z\U0010ffff/x"]
    files.update({f"{stage}/{name}": b"stray" for name in strays})
    _seed(moto_server, files)
    options = s3_storage_options(s3_middleware.endpoint_url)
    default = DataRoot(f"s3://{bucket}/data", storage_options=options).backend.scan([stage])
    obstore_root = DataRoot(f"s3://{bucket}/data", storage_options=options, engine="obstore")

    s3_middleware.reset_counts()
    listed = obstore_root.backend.scan([stage]).files
    lists = [urllib.parse.parse_qs(r.query) for r in s3_middleware.log if r.kind == "LIST"]

    assert sorted(listed) == sorted(files)  # every key, once, strays too
    assert dict(listed.items()) == dict(default.files.items())  # sizes and ETags alike
    # Split: one page of the stage, then shards, each one request of its own range.
    after = [q.get("start-after", [""])[0] for q in lists]
    assert len(lists) == len(set(after)) >= 3
    assert all(q["prefix"] == ["data/gens/essay/"] for q in lists)
    assert obstore_root.store().gen_ids("essay") == gen_ids


def test_an_obstore_shard_page_taken_is_one_request_and_its_offset_always_parses(
    moto_server: MotoServer, s3_middleware: S3Middleware, bucket: str
) -> None:
    """A shard whose ``StartAfter`` object_store cannot take as a path (``p//...``: an
    empty segment) is asked for from a start of it that parses; the full page of keys
    before the shard that comes back is skipped, with one request more."""
    early = [f"p/-{i:04d}" for i in range(1_100)]  # '-' sorts before '/' and the digits
    wanted = ["p/0a", "p/0b/x", "p/0\u03a9"]
    _seed(moto_server, {f"{bucket}/{k}": b"k" for k in [*early, *wanted, "p/1", "q/0"]})
    options = s3_storage_options(s3_middleware.endpoint_url)
    backend = open_backend(f"s3://{bucket}", storage_options=options, engine="obstore")
    assert isinstance(backend, WrappedBackend) and isinstance(backend.inner, ObstoreBackend)
    store = backend.inner._locate(f"{bucket}/p")[0]  # the store the engine lists with
    assert key_before("p/0") == "p//\U0010ffff" and path_at_most("p//\U0010ffff") == "p"

    s3_middleware.reset_counts()
    page = first_page(store, "p", Shard("p/0"), True)
    assert [k for k, _ in page.entries] == wanted and not page.truncated
    assert s3_middleware.counts() == {"LIST": 2}  # from "p", then after "p/-1099"
    s3_middleware.reset_counts()
    page = first_page(store, "p", Shard("p/"), True)  # the first page of the folder
    assert [k for k, _ in page.entries] == early[:1000] and page.truncated
    assert s3_middleware.counts() == {"LIST": 1}  # one page taken, the rest never asked for


def test_an_offset_is_cut_back_to_a_start_that_object_store_parses() -> None:
    assert path_at_most("a/b\U0010ffff") == "a/b\U0010ffff"
    assert path_at_most("a//\U0010ffff") == "a"
    assert path_at_most("a/./b") == "a" and path_at_most("a/../b") == "a"
    assert path_at_most("a/b\x1f\U0010ffff") == "a/b"
    assert path_at_most("a/b/") == "a/b"
    assert path_at_most("/a") is None and path_at_most("\x00") is None
