"""The S3 client of the filesystems gens_fs builds: botocore's work per listing page cut to
what gens_fs reads.

botocore turns every timestamp of a response into a ``datetime``, and a ListObjectsV2 page
has one per object (``LastModified``): measured here, that is 45 of the 58 ms of CPU it
spends on a page of 1,000 keys. gens_fs reads sizes and ETags, never those times, so the
S3 client of a filesystem it builds parses S3's responses (the ``rest-xml`` protocol) with
timestamps kept as the text S3 sent; every other protocol (STS and SSO, which botocore's
credential providers call through the same session and whose expiry times they compute
with) is parsed as usual. Imported only when an S3 filesystem is built (it needs
aiobotocore, which s3fs brings).
"""

from __future__ import annotations

from typing import Any

from aiobotocore.parsers import PROTOCOL_PARSERS, AioResponseParserFactory
from aiobotocore.session import AioSession


def _as_sent(value: str) -> str:
    return value


class _TextTimestampsForS3(AioResponseParserFactory):  # type: ignore[misc]
    """botocore's parsers, but S3's (``rest-xml``) leave timestamps as text."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return PROTOCOL_PARSERS[protocol_name](timestamp_parser=_as_sent)
        return super().create_parser(protocol_name)


def listing_session(session_kwargs: dict[str, Any]) -> Any:
    """The aiobotocore session s3fs would build from its session options (``profile``...),
    its S3 responses' timestamps left as text."""
    session = AioSession(**session_kwargs)
    session.register_component("response_parser_factory", _TextTimestampsForS3())
    return session
