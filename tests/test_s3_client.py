"""The S3 client of a filesystem gens_fs builds leaves S3's timestamps as text (parsing a
``LastModified`` per listed object is most of botocore's work on a listing page), and
parses every other protocol as botocore does: credential providers compute expiry times
from STS's answers through the same session."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from typing import Any

import botocore.session

from gens_fs.backends import FileInfo, SyncBackend, open_backend
from gens_fs.backends.s3_client import listing_session

STS_ANSWER = b"""<GetSessionTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetSessionTokenResult><Credentials><AccessKeyId>AK</AccessKeyId><SecretAccessKey>S</SecretAccessKey>
<SessionToken>T</SessionToken><Expiration>2026-11-30T12:00:00Z</Expiration></Credentials>
</GetSessionTokenResult></GetSessionTokenResponse>"""


def test_s3_timestamps_stay_text(bucket: str, s3_options: dict[str, Any]) -> None:
    backend = open_backend(f"s3://{bucket}/data", storage_options=s3_options)
    fs = backend.inner.fs  # type: ignore[attr-defined]
    fs.pipe(f"{bucket}/data/x.txt", b"x")
    info = fs.info(f"{bucket}/data/x.txt")
    assert isinstance(info["LastModified"], str) and info["size"] == 1
    listed = SyncBackend(backend).scan([f"{bucket}/data"]).files
    assert listed == {f"{bucket}/data/x.txt": FileInfo(1, hashlib.md5(b"x").hexdigest())}


def test_other_protocols_parse_timestamps_as_botocore_does() -> None:
    model = botocore.session.get_session().get_service_model("sts")
    shape = model.operation_model("GetSessionToken").output_shape
    factory = listing_session({}).get_component("response_parser_factory")
    parser = factory.create_parser(model.metadata["protocol"])
    answer = {"status_code": 200, "headers": {}, "body": STS_ANSWER}
    parsed = asyncio.run(parser.parse(answer, shape))
    assert isinstance(parsed["Credentials"]["Expiration"], datetime.datetime)
