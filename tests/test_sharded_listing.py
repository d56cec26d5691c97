"""A stage of more than a page is listed in parallel shards by key prefix, completely
(``gens_fs.backends.sharded`` inside ``S3Backend.scan``), against the moto server."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from typing import Any

import fsspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gens_fs import DataRoot, new_gen_id
from gens_fs.backends.sharded import Page, Shard, list_prefix
from gens_fs.testing.s3 import MotoServer, boto3_client, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware

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
