"""Pydantic models: a generation's metadata and a loaded generation.

Reading is liberal, writing is strict. :class:`GenerationMetadata` is one model of what a
stored ``metadata.json`` *may* be: any JSON object whose named fields, when present, have
their types. That is what ``load`` accepts, so the original pipeline's files (no
``task_id``, ``llm_model_id`` instead of ``model_id``, ``null`` for copy-mode models) load.
What the spec *requires* of a new file is one explicit rule on top of that model,
:func:`require_spec_fields`, applied by ``GensStore.write`` (and reported by ``check``);
there is no second list of fields to drift apart from the first.
"""

from __future__ import annotations

import copy
import json
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Final

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticSerializationError, to_jsonable_python

from gens_fs.errors import InvalidMetadata
from gens_fs.layout import PARENT_STAGE

# What the spec's "Metadata" section requires every new metadata.json to name.
SPEC_REQUIRED: Final = ("task_id", "template_id", "model_id")
COPY_MODE: Final = "copy"
"""``mode`` of a generation the original pipeline copied from its parent (no LLM call)."""


class GenerationMetadata(BaseModel):
    """A ``metadata.json`` as stored: the spec's fields, typed, plus every other key.

    Every field is optional here (see the module docstring: ``write`` adds the spec's
    requirements). ``model_id`` also reads the original pipeline's ``llm_model_id``;
    ``parent_gen_id`` reads ``null`` or an absent key as ``""`` (no parent); ``mode`` is the
    original's ``"llm"`` or ``"copy"``. Keys the model does not name are kept as extras.

    The JSON object itself is kept as well: :meth:`to_dict` (and so ``gen["metadata"]``,
    ``load_generation`` and ``write``) gives it back exactly, with no key renamed, added or
    dropped. A model built from keywords or a dict keeps those; one made by
    ``model_copy(update=...)`` no longer matches what it was read from, and is written in
    the canonical form (the declared names, unset fields left out).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    task_id: str | None = None
    template_id: str | None = None
    model_id: str | None = Field(
        default=None, validation_alias=AliasChoices("model_id", "llm_model_id")
    )
    parent_gen_id: str = ""
    mode: str | None = None
    function: str | None = None
    usage: dict[str, Any] | None = None

    _stored: dict[str, Any] | None = PrivateAttr(default=None)

    @field_validator("parent_gen_id", mode="before")
    @classmethod
    def _none_is_no_parent(cls, value: object) -> object:
        return "" if value is None else value

    @model_validator(mode="wrap")
    @classmethod
    def _keep_the_object(
        cls, data: Any, handler: ModelWrapValidatorHandler[GenerationMetadata]
    ) -> GenerationMetadata:
        if not isinstance(data, dict):
            return handler(data)
        try:
            stored = to_jsonable_python(data)
        except PydanticSerializationError as exc:
            raise ValueError(f"metadata must be JSON-serializable ({exc})") from None
        # When both spellings are present ``model_id`` wins; the original's key must not
        # also show up as an extra (the stored object keeps both, as given).
        if "model_id" in data and "llm_model_id" in data:
            data = {k: v for k, v in data.items() if k != "llm_model_id"}
        model = handler(data)
        model._stored = stored
        return model

    @property
    def is_copy(self) -> bool:
        """True for a generation the original pipeline copied (``mode: "copy"``): it has no
        model and no prompt of its own."""
        return self.mode == COPY_MODE

    def missing_spec_fields(self) -> list[str]:
        """The spec's required fields (``SPEC_REQUIRED``) that are absent, null or empty."""
        return [name for name in SPEC_REQUIRED if not getattr(self, name)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object this metadata was read from or built with (a fresh copy)."""
        if self._stored is not None:
            return copy.deepcopy(self._stored)
        return self.model_dump(mode="json", exclude_unset=True)

    def to_json(self) -> str:
        """:meth:`to_dict` as UTF-8 friendly, indented JSON with a final newline."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> GenerationMetadata:
        """As pydantic's; with ``update`` the copy forgets the stored object (see above)."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied._stored = None
        return copied


def require_spec_fields(meta: GenerationMetadata, *, where: str) -> None:
    """``InvalidMetadata`` unless ``meta`` names what the spec requires of a new file.

    Only writing asks this: a stored file without ``task_id`` (the original pipeline never
    wrote one) still loads, and ``check`` reports it as a warning.
    """
    missing = meta.missing_spec_fields()
    if missing:
        raise InvalidMetadata(
            f"{where}: invalid metadata ({', '.join(missing)} missing or empty): the spec "
            f"requires {', '.join(SPEC_REQUIRED)} in every new metadata.json"
        )


def parse_metadata(value: GenerationMetadata | dict[str, Any], *, where: str) -> GenerationMetadata:
    """Coerce ``value`` to ``GenerationMetadata`` or raise ``InvalidMetadata`` naming ``where``.

    Liberal (see the module docstring): a JSON object whose named fields have their types.
    """
    if isinstance(value, GenerationMetadata):
        return value
    if not isinstance(value, dict):
        raise InvalidMetadata(
            f"{where}: metadata must be a JSON object, not {type(value).__name__}"
        )
    try:
        return GenerationMetadata.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'metadata'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidMetadata(f"{where}: invalid metadata ({problems})") from None


def parse_metadata_json(data: bytes, *, where: str) -> GenerationMetadata:
    """Parse the bytes of a ``metadata.json``; ``InvalidMetadata`` names the file on failure."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMetadata(f"{where}: not valid UTF-8 JSON ({exc})") from None
    return parse_metadata(value, where=where)


MetadataResult = GenerationMetadata | InvalidMetadata | None
"""A ``metadata.json`` as read: parsed, the error it failed with, or ``None`` if absent."""


def read_metadata(data: bytes | None, *, where: str) -> MetadataResult:
    """The one reader of stored ``metadata.json`` bytes for callers that reason over many
    generations (``check``, ``ls``, ``stats``, the sync's parent rule): the parsed model,
    ``None`` when the file is absent, and a problem as a value (the ``InvalidMetadata``),
    not raised, so each one can be reported."""
    if data is None:
        return None
    try:
        return parse_metadata_json(data, where=where)
    except InvalidMetadata as exc:
        return exc


LEGACY_KEYS: Final = (
    "stage",
    "gen_id",
    "parent_gen_id",
    "raw_text",
    "parsed_text",
    "prompt_text",
    "metadata",
)
"""The keys of the original pipeline's ``load_generation`` dict, in its order."""


class Generation(BaseModel):
    """One generation as read from a store.

    Attribute access is the typed API: a missing file is ``None``, ``metadata`` is a
    :class:`GenerationMetadata`. The mapping view (``gen["raw_text"]``, ``in``, ``len``,
    iteration over the keys, ``keys``/``values``/``items``/``get``, ``dict(gen)``) is the
    original pipeline's ``load_generation`` dict, value for value (:meth:`to_dict`):
    ``raw_text`` is ``""`` when raw.txt is absent, ``parsed_text``/``prompt_text`` are
    ``None`` when absent, ``metadata`` is the JSON object exactly as stored (or ``None``)
    and ``parent_gen_id`` is its ``parent_gen_id`` as stored (``None`` when absent).
    """

    model_config = ConfigDict(frozen=True)

    stage: str
    gen_id: str
    raw_text: str | None = None
    parsed_text: str | None = None
    prompt_text: str | None = None
    metadata: GenerationMetadata | None = None

    @property
    def parent_gen_id(self) -> str | None:
        """The parent's gen_id, or ``None`` for a draft or a generation without metadata."""
        if self.metadata is None or not self.metadata.parent_gen_id:
            return None
        return self.metadata.parent_gen_id

    @property
    def parent_stage(self) -> str | None:
        """The stage the parent lives in (``None`` for drafts)."""
        return PARENT_STAGE[self.stage]

    @property
    def is_committed(self) -> bool:
        """True when ``metadata.json`` was there: the generation is complete."""
        return self.metadata is not None

    def to_dict(self) -> dict[str, Any]:
        """The original pipeline's ``load_generation`` dict (a fresh one each call)."""
        stored = None if self.metadata is None else self.metadata.to_dict()
        return {
            "stage": self.stage,
            "gen_id": self.gen_id,
            "parent_gen_id": None if stored is None else stored.get("parent_gen_id"),
            "raw_text": self.raw_text or "",
            "parsed_text": self.parsed_text,
            "prompt_text": self.prompt_text,
            "metadata": stored,
        }

    # The mapping view. Pydantic's own ``__iter__`` yields (field, value) pairs; the
    # original's dict iterates over its keys, and code written against it must keep working.

    def __getitem__(self, key: str) -> Any:
        if key not in LEGACY_KEYS:
            raise KeyError(key)
        if key in ("metadata", "parent_gen_id"):  # only these copy the stored object
            return self.to_dict()[key]
        return self.raw_text or "" if key == "raw_text" else getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in LEGACY_KEYS

    def __len__(self) -> int:
        return len(LEGACY_KEYS)

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(LEGACY_KEYS)

    def get(self, key: str, default: Any = None) -> Any:
        """As ``dict.get``: the value when the key is one of the dict's, even ``None``."""
        return self[key] if key in LEGACY_KEYS else default

    def keys(self) -> KeysView[str]:
        """The dict's keys, so ``dict(gen)`` and ``**gen`` work."""
        return self.to_dict().keys()

    def values(self) -> ValuesView[Any]:
        return self.to_dict().values()

    def items(self) -> ItemsView[str, Any]:
        return self.to_dict().items()


Mapping.register(Generation)
