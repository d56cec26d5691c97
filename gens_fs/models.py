"""Pydantic models: a generation's metadata and a loaded generation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gens_fs.errors import InvalidMetadata
from gens_fs.layout import PARENT_STAGE


class GenerationMetadata(BaseModel):
    """The minimal metadata every ``metadata.json`` carries, plus any provenance keys.

    Keys the model does not name are kept as they are through a load/write round trip.
    Stores written by the earlier pipeline call the model ``llm_model_id``; it reads as
    ``model_id`` (and is written back as ``model_id``).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    task_id: str
    template_id: str
    model_id: str = Field(validation_alias=AliasChoices("model_id", "llm_model_id"))
    parent_gen_id: str = ""
    function: str | None = None
    usage: dict[str, Any] | None = None

    @field_validator("parent_gen_id", mode="before")
    @classmethod
    def _none_is_no_parent(cls, value: object) -> object:
        return "" if value is None else value

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_model_key(cls, data: object) -> object:
        # When both spellings are present ``model_id`` wins; the legacy key must not linger
        # as an extra, or a round trip would write two names for one fact.
        if isinstance(data, dict) and "model_id" in data and "llm_model_id" in data:
            data = {k: v for k, v in data.items() if k != "llm_model_id"}
        return data

    def to_json(self) -> str:
        """UTF-8 friendly, indented JSON; optional fields that are unset are left out."""
        data = self.model_dump(mode="json")
        for optional in ("function", "usage"):
            if data.get(optional) is None and optional not in (self.model_fields_set or ()):
                data.pop(optional, None)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def parse_metadata(value: GenerationMetadata | dict[str, Any], *, where: str) -> GenerationMetadata:
    """Coerce ``value`` to ``GenerationMetadata`` or raise ``InvalidMetadata`` naming ``where``."""
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


_MAPPING_KEYS = ("stage", "gen_id", "raw_text", "parsed_text", "prompt_text", "metadata")


class Generation(BaseModel):
    """One generation as read from a store.

    Attribute access is the typed API. The spec's mapping access (``gen["parsed_text"]``,
    ``gen["metadata"]`` as a plain dict, ``gen.get(...)``) keeps earlier code running.
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
        """The spec's dict form; ``metadata`` is a plain dict (or ``None``)."""
        return {key: self[key] for key in _MAPPING_KEYS}

    def __getitem__(self, key: str) -> Any:
        if key not in _MAPPING_KEYS:
            raise KeyError(key)
        if key == "metadata":
            return None if self.metadata is None else self.metadata.model_dump(mode="json")
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style access with a default, as on the spec's dict."""
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    def keys(self) -> Iterator[str]:
        """The mapping keys, so ``dict(gen)`` and ``**gen`` work."""
        return iter(_MAPPING_KEYS)
