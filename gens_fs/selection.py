"""Which generations a command works on: ``--include``/``--exclude`` globs over gen_ids and
``--where KEY=VALUE`` over metadata. Pure: no I/O.

**Globs** (:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[abc]``, ``[!abc]``, case
sensitive) are matched against the gen_id alone, whatever its stage. The rules are read in
the order given, and **the last rule that matches a gen_id decides**: ``--include 'e*'
--exclude 'e1*'`` keeps ``e2`` and drops ``e12``; ``--exclude 'e1*' --include 'e12'`` keeps
``e12`` too. A gen_id no rule matches is selected when no rule is an include (excludes
only remove), and left out when one is (includes name what is wanted). This is
gitignore's order; rclone's ``--filter`` rules are read the other way round (the first
match decides) and its ``--include``/``--exclude`` given together have no defined order.

**Where** conditions must all hold. Each compares one top-level key of ``metadata.json``:
a string value equals VALUE as given; any other value (number, true/false, null, list,
object) matches when its compact JSON spelling equals VALUE (``--where n=3``,
``--where cached=true``). ``model_id`` and ``llm_model_id`` are one key (the original
pipeline wrote ``llm_model_id``): either name reads ``model_id`` when the file has it,
else ``llm_model_id``. An absent key never matches; a generation without readable metadata
(incomplete, invalid) matches no condition.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from gens_fs.errors import InvalidSelection
from gens_fs.models import GenerationMetadata, read_metadata

RuleKind = Literal["include", "exclude"]
# The two spellings of the model's key: either one in --where reads whichever the file has.
MODEL_KEYS = ("model_id", "llm_model_id")


@dataclass(frozen=True)
class GlobRule:
    """One ``--include`` or ``--exclude``: its kind and its glob."""

    kind: RuleKind
    glob: str

    def matches(self, gen_id: str) -> bool:
        return fnmatchcase(gen_id, self.glob)


@dataclass(frozen=True)
class Selection:
    """Glob rules over gen_ids, in the order given, and ``where`` conditions (key, value),
    all of which must hold. See the module for the rules' meaning."""

    rules: tuple[GlobRule, ...] = ()
    where: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        where: Mapping[str, str] | Iterable[str] | None = None,
    ) -> Selection | None:
        """The selection of separate lists (the library's ``include=``, ``exclude=``,
        ``where=``): the includes first, then the excludes, so an exclude wins over an
        include ("these, except those"). ``where``: a mapping, or ``KEY=VALUE`` strings.
        ``None`` when nothing is asked for (everything is selected)."""
        rules: list[tuple[RuleKind, str]] = [("include", g) for g in include or ()]
        rules += [("exclude", g) for g in exclude or ()]
        return cls.ordered(rules, where)

    @classmethod
    def ordered(
        cls,
        rules: Iterable[tuple[RuleKind, str]],
        where: Mapping[str, str] | Iterable[str] | None = None,
    ) -> Selection | None:
        """The selection of ``rules`` in the order given (the command line's), or ``None``
        when there are no rules and no conditions."""
        built = tuple(GlobRule(kind, _checked_glob(kind, glob)) for kind, glob in rules)
        pairs = tuple(where.items()) if isinstance(where, Mapping) else _parse_where(where or ())
        if not built and not pairs:
            return None
        return cls(built, pairs)

    @property
    def needs_metadata(self) -> bool:
        """True when deciding needs each candidate's ``metadata.json`` (``--where``)."""
        return bool(self.where)

    def picks_id(self, gen_id: str) -> bool:
        """The glob rules' verdict on ``gen_id`` (the last matching rule decides)."""
        for rule in reversed(self.rules):
            if rule.matches(gen_id):
                return rule.kind == "include"
        return not any(rule.kind == "include" for rule in self.rules)

    def holds(self, metadata: Mapping[str, Any] | None) -> bool:
        """True when every ``where`` condition holds for ``metadata`` (the stored JSON
        object; ``None`` when there is none readable)."""
        if not self.where:
            return True
        if metadata is None:
            return False
        return all(_value_matches(_lookup(metadata, key), value) for key, value in self.where)

    def picks(self, gen_id: str, metadata: Mapping[str, Any] | None) -> bool:
        """Both verdicts: the glob rules on ``gen_id`` and the conditions on ``metadata``."""
        return self.picks_id(gen_id) and self.holds(metadata)


def selection_of(
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    where: Mapping[str, str] | Iterable[str] | None = None,
    selection: Selection | None = None,
) -> Selection | None:
    """What the library's keyword arguments ask for: ``selection`` (rules in an order of
    your own, as the command line gives them), or :meth:`Selection.of` the three lists."""
    if selection is not None:
        if include or exclude or where:
            raise InvalidSelection("pass either selection= or include=/exclude=/where=")
        return selection
    return Selection.of(include, exclude, where)


def judged_object(data: bytes | None, *, where: str) -> dict[str, Any] | None:
    """The JSON object of stored ``metadata.json`` bytes, as a ``where`` condition judges
    it; ``None`` when there are none or they do not parse."""
    meta = read_metadata(data, where=where)
    return meta.to_dict() if isinstance(meta, GenerationMetadata) else None


_ABSENT = object()


def _lookup(metadata: Mapping[str, Any], key: str) -> Any:
    if key in MODEL_KEYS:
        for name in MODEL_KEYS:
            if name in metadata:
                return metadata[name]
        return _ABSENT
    return metadata.get(key, _ABSENT)


def _value_matches(found: Any, wanted: str) -> bool:
    if found is _ABSENT:
        return False
    if isinstance(found, str):
        return found == wanted
    return json.dumps(found, separators=(",", ":"), ensure_ascii=False) == wanted


def _checked_glob(kind: RuleKind, glob: str) -> str:
    if not glob:
        raise InvalidSelection(f"--{kind} needs a glob (an empty one matches no gen_id)")
    if "/" in glob:
        raise InvalidSelection(
            f"--{kind} {glob!r}: globs match gen_ids, which hold no '/'; "
            "use --stage to choose stages"
        )
    return glob


def _parse_where(pairs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidSelection(f"--where {pair!r}: expected KEY=VALUE (a metadata key)")
        out.append((key.strip(), value))
    return tuple(out)
