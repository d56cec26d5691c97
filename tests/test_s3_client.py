"""The S3 client of a filesystem gens_fs builds leaves S3's timestamps as text (parsing a
``LastModified`` per listed object is most of botocore's work on a listing page), walks a
listing's objects once and gives what botocore's own walk gives, and parses every other
protocol as botocore does: credential providers compute expiry times from STS's answers
through the same session."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import urllib.request
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import botocore.session
from aiobotocore.parsers import PROTOCOL_PARSERS
from hypothesis import given
from hypothesis import strategies as st

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


# -- the listing's objects walked once: what botocore's walk gives ------------------------

S3_MODEL = botocore.session.get_session().get_service_model("s3")
NS = "http://s3.amazonaws.com/doc/2006-03-01/"
TEXTS = st.text(st.sampled_from("ab1 &<>\"'é-/"), max_size=6).map(xml_escape)
CHILDREN = st.sampled_from(
    [
        "<Key>{t}</Key>",
        "<LastModified>2026-11-30T12:00:00.000Z</LastModified>",
        "<ETag>&quot;{t}&quot;</ETag>",
        "<Size>12</Size>",
        "<Size></Size>",
        "<Size>{t}</Size>",
        "<StorageClass>{t}</StorageClass>",
        "<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>",
        "<ChecksumAlgorithm>{t}</ChecksumAlgorithm>",
        "<ChecksumType>FULL_OBJECT</ChecksumType>",
        "<Owner><ID>{t}</ID><DisplayName>{t}</DisplayName></Owner>",
        "<RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress></RestoreStatus>",
        "<Unknown>{t}</Unknown>",
        "<Key/>",
    ]
)
OBJECTS = st.lists(st.lists(st.tuples(CHILDREN, TEXTS), max_size=8), max_size=4)
OPERATIONS = st.sampled_from(["ListObjectsV2", "ListObjects", "ListObjectVersions"])


def parse(parser: Any, operation: str, body: bytes) -> Any:
    shape = S3_MODEL.operation_model(operation).output_shape
    answer = {"status_code": 200, "headers": {}, "body": body}
    try:
        return plain(asyncio.run(parser.parse(answer, shape)))
    except Exception as exc:  # both parsers must fail alike
        return type(exc)


def plain(value: Any) -> Any:
    """``value`` with XML elements as their tag and text (botocore leaves the elements of
    a scalar repeated by mistake in its result, a list of them, compared by identity)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if hasattr(value, "tag"):
        return ("element", value.tag, value.text)
    return value


@given(OBJECTS, OPERATIONS)
def test_the_s3_parser_gives_what_botocore_gives(
    objects: list[list[tuple[str, str]]], op: str
) -> None:
    """Any listing page (objects with members missing, repeated, unknown, empty, nested):
    the same parse as botocore's own walk with timestamps as text, or the same error."""
    element = "Version" if op == "ListObjectVersions" else "Contents"
    items = "".join(
        f"<{element}>{''.join(child.format(t=text) for child, text in obj)}</{element}>"
        for obj in objects
    )
    root = "ListVersionsResult" if op == "ListObjectVersions" else "ListBucketResult"
    body = f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}"><Name>b</Name>'
    body += f"<IsTruncated>false</IsTruncated><KeyCount>{len(objects)}</KeyCount>{items}</{root}>"
    ours = listing_session({}).get_component("response_parser_factory").create_parser("rest-xml")
    botocores = PROTOCOL_PARSERS["rest-xml"](timestamp_parser=lambda text: text)
    assert parse(ours, op, body.encode()) == parse(botocores, op, body.encode())


def test_the_s3_parser_on_moto_s_own_answers(bucket: str, s3_options: dict[str, Any]) -> None:
    """Pages as moto writes them: many keys (XML and URL escapes), owners, prefixes."""
    fs = open_backend(f"s3://{bucket}", storage_options=s3_options).inner.fs  # type: ignore[attr-defined]
    fs.pipe({f"{bucket}/d/{name}/x&<y>%20 é.txt": b"x" for name in ("a", "b", "c")})
    endpoint = s3_options["client_kwargs"]["endpoint_url"]
    ours = listing_session({}).get_component("response_parser_factory").create_parser("rest-xml")
    botocores = PROTOCOL_PARSERS["rest-xml"](timestamp_parser=lambda text: text)
    for op, query in (
        ("ListObjectsV2", "list-type=2&fetch-owner=true&max-keys=2&encoding-type=url"),
        ("ListObjectsV2", "list-type=2&delimiter=/&prefix=d/"),
        ("ListObjects", ""),
        ("ListObjectVersions", "versions"),
    ):
        with urllib.request.urlopen(f"{endpoint}/{bucket}?{query}") as answer:
            body = answer.read()
        found = parse(ours, op, body)
        assert found == parse(botocores, op, body) and isinstance(found, dict)
