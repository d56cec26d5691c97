"""The S3 client of the filesystems gens_fs builds: botocore's work per listing page cut to
what gens_fs reads, with the same result.

botocore turns every timestamp of a response into a ``datetime``, and a ListObjectsV2 page
has one per object (``LastModified``): measured here, that is 45 of the 58 ms of CPU it
spends on a page of 1,000 keys. gens_fs reads sizes and ETags, never those times, so the
S3 client of a filesystem it builds parses S3's responses (the ``rest-xml`` protocol) with
timestamps kept as the text S3 sent; every other protocol (STS and SSO, which botocore's
credential providers call through the same session and whose expiry times they compute
with) is parsed as usual. Imported only when an S3 filesystem is built (it needs
aiobotocore, which s3fs brings).

What was left of a page's parsing was mostly botocore's generic walk of each object's
XML element (a regular expression per child to strip its namespace, a dict of the
children, a look-up of each member the model names, a handler found by name for each
value): 6 of the 9.5 ms a page of 1,000 keys took. :class:`_S3Parser` walks an element
of a plain structure (the listing's ``Object``) once, its children looked up by tag in a
plan made once per shape, and gives what botocore's walk gives (same members, same
values). Only a listing page's entries are walked so (:data:`_LISTED`); anything else,
and anything the plan does not cover (a member repeated that is not a list, a member in
a header or an attribute), goes botocore's way.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from aiobotocore.parsers import PROTOCOL_PARSERS, AioResponseParserFactory
from aiobotocore.session import AioSession

_RestXMLParser: Any = PROTOCOL_PARSERS["rest-xml"]


def _as_sent(value: str) -> str:
    return value


# Shapes whose value is the element's text as it is (a timestamp too: kept as text), and
# whose value is that text as an int: what botocore's handlers give for them outside
# headers (a missing text is "", which int() refuses as botocore's handler does).
_TEXT: Final = frozenset({"string", "character", "timestamp"})
_INT: Final = frozenset({"integer", "long"})
# The structures walked this way: a listing page's entries (thousands a page), which the
# tests compare with botocore's walk; any other answer's structures go botocore's way.
_LISTED: Final = frozenset(
    {"Object", "ObjectVersion", "DeleteMarkerEntry", "CommonPrefix", "Owner", "RestoreStatus"}
)


class _Member(NamedTuple):
    """How one child element of a structure is parsed: the member it is, that member's
    shape (the items' shape for a flattened list), whether it is a flattened list (each
    element an item), and how its value is made: ``"text"``, ``"int"``, or the parser's
    handler for the shape."""

    name: str
    shape: Any
    flattened_list: bool
    kind: str
    handle: Any


class _S3Parser(_RestXMLParser):  # type: ignore[misc]
    """botocore's rest-xml parser, timestamps left as text, plain structures walked once
    (see the module)."""

    def __init__(self) -> None:
        super().__init__(timestamp_parser=_as_sent)
        self._plans: dict[int, tuple[Any, dict[str, _Member] | None]] = {}

    def _handle_structure(self, shape: Any, node: Any) -> Any:
        plan = self._plan(shape)
        if plan is not None and not isinstance(node, list):
            try:
                parsed = _walk(plan, node)
            except (ValueError, TypeError):
                parsed = None  # a value botocore refuses too: its error, raised its way
            if parsed is not None:
                return parsed
        return super()._handle_structure(shape, node)

    def _plan(self, shape: Any) -> dict[str, _Member] | None:
        """The members of ``shape`` by the tag of their element, or ``None`` when botocore's
        walk does more than match tags (exceptions, unions, headers, attributes)."""
        known = self._plans.get(id(shape))
        if known is None:
            known = self._plans[id(shape)] = (shape, self._make_plan(shape))  # keeps the id
        return known[1]

    def _make_plan(self, shape: Any) -> dict[str, _Member] | None:
        if shape.name not in _LISTED or shape.is_tagged_union:
            return None
        plan: dict[str, _Member] = {}
        for name, member in shape.members.items():
            serialization = member.serialization
            special = ("location", "eventheader", "xmlAttribute", "xmlNamespace")
            if any(serialization.get(key) for key in special):
                return None
            flattened = member.type_name == "list" and bool(serialization.get("flattened"))
            item = member.member if flattened else member
            kind = item.type_name
            handle = getattr(self, f"_handle_{kind}", self._default_handle)
            kind = "text" if kind in _TEXT else "int" if kind in _INT else "handler"
            plan[self._member_key_name(member, name)] = _Member(name, item, flattened, kind, handle)
        return plan


def _walk(plan: dict[str, _Member], node: Any) -> dict[str, Any] | None:
    """The members of the structure ``node`` by ``plan``; ``None`` when a member that is
    not a list is repeated (botocore's walk makes a list of its elements)."""
    parsed: dict[str, Any] = {}
    for child in node:
        tag = child.tag
        member = plan.get(tag[tag.rfind("}") + 1 :])  # the tag without its namespace
        if member is None:
            continue  # not in the model: botocore ignores it too
        if not member.flattened_list and member.name in parsed:
            return None
        kind = member.kind
        if kind == "text":
            value = child.text or ""
        elif kind == "int":
            value = int(child.text or "")
        else:
            value = member.handle(member.shape, child)
        if member.flattened_list:
            parsed.setdefault(member.name, []).append(value)
        else:
            parsed[member.name] = value
    return parsed


class _TextTimestampsForS3(AioResponseParserFactory):  # type: ignore[misc]
    """botocore's parsers, but S3's (``rest-xml``) is :class:`_S3Parser`."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return _S3Parser()
        return super().create_parser(protocol_name)


def listing_session(session_kwargs: dict[str, Any]) -> Any:
    """The aiobotocore session s3fs would build from its session options (``profile``...),
    its S3 responses parsed as :class:`_S3Parser` does."""
    session = AioSession(**session_kwargs)
    session.register_component("response_parser_factory", _TextTimestampsForS3())
    return session
