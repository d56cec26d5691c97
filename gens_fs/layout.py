"""Where things live in a gens store: stages, file names, gen_id rules and paths.

Pure: no I/O and no fsspec. Every path is a POSIX string relative to a root; only this
module builds them, so a gen_id or stage that could escape its directory is refused here,
before anything touches a filesystem.

A *data root* holds ``gens/`` and ``cohorts/`` side by side; a *gens root* is its ``gens/``.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import string
from collections.abc import Iterable
from typing import Final, Literal, NamedTuple

from gens_fs.errors import InvalidGenId, UnknownStage

STAGES: Final = ("draft", "essay", "evaluation")
STAGE_ORDER: Final = {stage: index for index, stage in enumerate(STAGES)}
PARENT_STAGE: Final[dict[str, str | None]] = {
    "draft": None,
    "essay": "draft",
    "evaluation": "essay",
}

RAW_FILE: Final = "raw.txt"
PARSED_FILE: Final = "parsed.txt"
PROMPT_FILE: Final = "prompt.txt"
METADATA_FILE: Final = "metadata.json"
# The text artifacts by the name ``Generation`` gives them, in the order they are written.
TEXT_FILES: Final[dict[str, str]] = {
    "raw_text": RAW_FILE,
    "parsed_text": PARSED_FILE,
    "prompt_text": PROMPT_FILE,
}
ARTIFACT_FILES: Final = (RAW_FILE, PARSED_FILE, PROMPT_FILE, METADATA_FILE)

GENS_DIR: Final = "gens"
COHORTS_DIR: Final = "cohorts"
MEMBERSHIP_FILE: Final = "membership.csv"
# The spec's optional raw side-writes for debugging: <data_root>/3_generation/<stage>_raw/.
SIDE_WRITE_DIR: Final = "3_generation"

MAX_GEN_ID_LENGTH: Final = 128
# Letters, digits, "_", "-", "."; not starting with "." (hidden files, ".", ".."). Anything
# else (slashes, backslashes, NUL, whitespace, glob characters) is refused.
_GEN_ID_RE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
# The characters of a gen_id in code point order (the order object stores list keys in): a
# listing of a large stage splits its key range at these.
GEN_ID_CHARS: Final = "".join(sorted("-._0123456789" + string.ascii_letters))


def validate_stage(stage: object) -> str:
    """Return ``stage`` if it is exactly one of ``STAGES``; else raise ``UnknownStage``."""
    if not isinstance(stage, str) or stage not in STAGES:
        raise UnknownStage(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
    return stage


def validate_gen_id(gen_id: object, *, kind: str = "gen_id") -> str:
    """Return ``gen_id`` if it is a safe directory name; else raise ``InvalidGenId``.

    ``kind`` names the thing in the message (cohort ids follow the same rule).
    """
    if not isinstance(gen_id, str):
        raise InvalidGenId(f"{kind} must be a string, not {type(gen_id).__name__}")
    if not is_valid_gen_id(gen_id):
        raise InvalidGenId(
            f"invalid {kind} {gen_id!r}: use 1 to {MAX_GEN_ID_LENGTH} letters, digits, '_', '-' "
            "or '.', not starting with '.' and without '..'"
        )
    return gen_id


def is_valid_gen_id(gen_id: str) -> bool:
    """True if ``gen_id`` passes :func:`validate_gen_id`."""
    return bool(_GEN_ID_RE.fullmatch(gen_id)) and ".." not in gen_id


def parent_stage(stage: str) -> str | None:
    """The stage a generation of ``stage`` descends from (``None`` for drafts)."""
    return PARENT_STAGE[validate_stage(stage)]


def generation_dir(stage: str, gen_id: str) -> str:
    """``<stage>/<gen_id>``, relative to a gens root, after validating both."""
    return f"{validate_stage(stage)}/{validate_gen_id(gen_id)}"


def artifact_path(stage: str, gen_id: str, filename: str) -> str:
    """``<stage>/<gen_id>/<filename>``, relative to a gens root."""
    return f"{generation_dir(stage, gen_id)}/{filename}"


def stage_folder(stage: str) -> str:
    """``gens/<stage>``, relative to a data root."""
    return f"{GENS_DIR}/{validate_stage(stage)}"


def cohort_folder(cohort_id: str) -> str:
    """``cohorts/<cohort_id>``, relative to a data root."""
    return f"{COHORTS_DIR}/{validate_gen_id(cohort_id, kind='cohort_id')}"


def membership_path(cohort_id: str) -> str:
    """``cohorts/<cohort_id>/membership.csv``, relative to a data root."""
    return f"{cohort_folder(cohort_id)}/{MEMBERSHIP_FILE}"


def raw_side_write_path(stage: str, gen_id: str) -> str:
    """``3_generation/<stage>_raw/<gen_id>.txt``, relative to a data root."""
    return f"{SIDE_WRITE_DIR}/{validate_stage(stage)}_raw/{validate_gen_id(gen_id)}.txt"


GenKey = tuple[str, str]
"""A generation: ``(stage, gen_id)``."""


def pipeline_order(key: GenKey) -> tuple[int, str]:
    """Sort key of a ``(stage, gen_id)``: stage in pipeline order, then gen_id."""
    return STAGE_ORDER[key[0]], key[1]


def generation_relpath(key: GenKey, filename: str | None = None) -> str:
    """``gens/<stage>/<gen_id>[/<filename>]``, relative to a data root."""
    folder = f"{GENS_DIR}/{generation_dir(*key)}"
    return folder if filename is None else f"{folder}/{filename}"


def metadata_relpath(key: GenKey) -> str:
    """``gens/<stage>/<gen_id>/metadata.json``, relative to a data root: the commit marker."""
    return generation_relpath(key, METADATA_FILE)


def generation_of(relpath: str) -> GenKey | None:
    """The generation a data-root relpath is a file of (``gens/<stage>/<gen_id>/<name>``), or
    ``None`` (cohort files, strays, hidden files)."""
    found = classify_gens_file(relpath)
    return (found.stage, found.gen_id) if isinstance(found, GensFile) else None


class GensFile(NamedTuple):
    """A file inside a generation directory, as found in a listing."""

    stage: str
    gen_id: str
    name: str


def parse_gens_path(relpath: str) -> GensFile | None:
    """Read ``<stage>/<gen_id>/<name>`` (relative to a gens root) back into its parts.

    Returns ``None`` for anything that is not a file directly inside a valid generation
    directory (temporary files, stray files, unknown stages), so listings can skip it.
    """
    parts = relpath.split("/")
    if len(parts) != 3:
        return None
    stage, gen_id, name = parts
    if stage not in STAGES or not is_valid_gen_id(gen_id) or not name or name.startswith("."):
        return None
    return GensFile(stage, gen_id, name)


def ancestors(relpath: str) -> list[str]:
    """The folders above a relative path, innermost first: ``a/b/c`` -> ``["a/b", "a"]``."""
    parts = relpath.split("/")[:-1]
    return ["/".join(parts[:end]) for end in range(len(parts), 0, -1)]


def stage_of(relpath: str) -> str | None:
    """The second part of ``gens/<x>/...`` (a stage, or what stands where one should be), or
    ``None`` for a data-root relpath outside ``gens/``."""
    parts = relpath.split("/")
    return parts[1] if len(parts) > 1 and parts[0] == GENS_DIR else None


class Stray(NamedTuple):
    """An entry that does not fit the layout. ``path`` (relative to the data root) names the
    file, or the first folder on its path that should not be there; ``reason`` says what it
    is."""

    path: str
    reason: str


# A local writer's temporary file: ".<name>.<32 hex digits>.tmp", beside the file it becomes.
_TEMP_NAME_RE: Final = re.compile(r"\.(?P<name>[^/]+)\.[0-9a-f]{32}\.tmp")


def temp_file_name(name: str, token: str) -> str:
    """The name of the temporary file a local write of the file ``name`` goes through
    (``token``: 32 hex digits, unique to the write): hidden, so every listing skips it."""
    return f".{name}.{token}.tmp"


def is_temp_file_name(name: str) -> bool:
    """True for a name :func:`temp_file_name` makes (what ``gc`` may remove)."""
    return _TEMP_NAME_RE.fullmatch(name) is not None


def _hidden(parts: Iterable[str]) -> bool:
    # Our writers' temporary files (".raw.txt.<hex>.tmp") and anything else hidden; an empty
    # part ("a//b", possible in an object store's key) is no path of the layout either.
    return any(not part or part.startswith(".") for part in parts)


def is_hidden(relpath: str) -> bool:
    """True when a part of ``relpath`` starts with ``.`` (or is empty): left out of
    everything, silently. (``_hidden`` of its parts, without splitting it: every listed
    path is asked.)"""
    return (
        not relpath
        or relpath[0] in "./"
        or relpath[-1] == "/"
        or "/." in relpath
        or "//" in relpath
    )


def gens_child_stray(name: str, *, is_dir: bool) -> Stray | None:
    """What an entry directly under ``gens/`` is, if it is not a stage folder (or hidden)."""
    if name.startswith("."):
        return None
    path = f"{GENS_DIR}/{name}"
    if name in STAGES:
        return None if is_dir else Stray(path, "a file where the stage folder should be")
    if is_dir:
        return Stray(path, f"a folder under gens/ that is not a stage ({', '.join(STAGES)})")
    return Stray(path, "a file directly under gens/ (generations live in gens/<stage>/<gen_id>/)")


def classify_gens_file(relpath: str) -> GensFile | Stray | None:
    """A file found under ``gens/`` (``relpath`` relative to the data root): a generation
    file, a :class:`Stray`, or ``None`` for hidden entries and paths outside ``gens/``."""
    parts = relpath.split("/")
    if len(parts) < 2 or parts[0] != GENS_DIR or _hidden(parts):
        return None
    stage = parts[1]
    if len(parts) == 2 or stage not in STAGES:
        return gens_child_stray(stage, is_dir=len(parts) > 2)
    if len(parts) == 3:
        return Stray(relpath, f"a file directly under gens/{stage}/ (a generation is a folder)")
    gen_id = parts[2]
    if not is_valid_gen_id(gen_id):
        return Stray("/".join(parts[:3]), "a folder whose name is not a valid gen_id")
    if len(parts) > 4:
        return Stray("/".join(parts[:4]), f"a folder inside generation {stage} {gen_id}")
    return GensFile(stage, gen_id, parts[3])


def generation_folder(relpath: str) -> GenKey | None:
    """``(stage, gen_id)`` of the generation folder a data-root relpath is in or names
    (``gens/<stage>/<gen_id>[/...]``), or ``None``."""
    parts = relpath.split("/")
    if len(parts) < 3 or parts[0] != GENS_DIR or parts[1] not in STAGES:
        return None
    return (parts[1], parts[2]) if is_valid_gen_id(parts[2]) else None


def membership_cohort(relpath: str) -> str | None:
    """The cohort id of ``cohorts/<cohort_id>/membership.csv`` (a data-root relpath), else
    ``None``."""
    parts = relpath.split("/")
    if len(parts) == 3 and parts[0] == COHORTS_DIR and parts[2] == MEMBERSHIP_FILE:
        return parts[1] if is_valid_gen_id(parts[1]) else None
    return None


def cohort_strays(relpaths: Iterable[str]) -> list[Stray]:
    """The strays among files found under ``cohorts/`` (data-root relpaths): files directly
    under it, cohort folders without ``membership.csv`` or with an invalid name. Other
    files beside a ``membership.csv`` (a manifest, notes) belong to their cohort."""
    strays: list[Stray] = []
    has_membership: dict[str, bool] = {}
    for relpath in relpaths:
        parts = relpath.split("/")
        if len(parts) < 2 or parts[0] != COHORTS_DIR or _hidden(parts):
            continue
        if len(parts) == 2:
            strays.append(Stray(relpath, "a file directly under cohorts/ (a cohort is a folder)"))
            continue
        found = len(parts) == 3 and parts[2] == MEMBERSHIP_FILE
        has_membership[parts[1]] = has_membership.get(parts[1], False) or found
    for name, found in has_membership.items():
        path = f"{COHORTS_DIR}/{name}"
        if not is_valid_gen_id(name):
            strays.append(Stray(path, "a folder whose name is not a valid cohort id"))
        elif not found:
            strays.append(Stray(path, f"a cohort folder without {MEMBERSHIP_FILE}"))
    return sorted(strays)


RootKind = Literal["data", "gens", "stage", "cohorts", "generation", "other"]
# How many folders above a misplaced root its data root is (``data/gens/essay`` -> 2).
DATA_ROOT_ABOVE: Final[dict[str, int]] = {"gens": 1, "cohorts": 1, "stage": 2, "generation": 3}


def root_kind(folders: Iterable[str], *, name: str = "", files: Iterable[str] = ()) -> RootKind:
    """What a root is, from the folders and files directly in it and its own ``name``: a
    data root (it holds ``gens/`` or ``cohorts/``), a gens root (it holds stage folders), a
    generation folder (it holds a generation's files: see :func:`holds_a_generation`), a
    stage folder (named after a stage, it holds folders named like gen_ids), the
    ``cohorts/`` folder (named so, it holds folders), or something else. Hidden entries do
    not count."""
    names = {f for f in folders if not f.startswith(".")}
    if GENS_DIR in names or COHORTS_DIR in names:
        return "data"
    if names & set(STAGES):
        return "gens"
    if holds_a_generation(files):
        return "generation"
    if any(is_valid_gen_id(n) for n in names):
        if name in STAGES:
            return "stage"
        if name == COHORTS_DIR:
            return "cohorts"
    return "other"


def holds_a_generation(files: Iterable[str]) -> bool:
    """True for a folder's files that are a generation's: its ``metadata.json`` and a text."""
    names = set(files)
    return METADATA_FILE in names and bool(names & set(TEXT_FILES.values()))


def inner_folder_kind(files: Iterable[str]) -> RootKind:
    """What a folder is whose (first) folder holds ``files``: a stage folder when those are a
    generation's files, ``cohorts/`` when they hold a ``membership.csv``. This tells when
    the root's name does not (a stage folder renamed), and confirms it when it does."""
    names = set(files)
    if names & set(ARTIFACT_FILES):
        return "stage"
    return "cohorts" if MEMBERSHIP_FILE in names else "other"


def roots_overlap(first: str, second: str) -> Literal["same", "inside", "contains"] | None:
    """How root ``first`` stands to root ``second`` on one filesystem, once both are
    normalised (``a/gens/..`` is ``a``): the same folder, inside it, containing it, or
    apart (``None``)."""
    a, b = posixpath.normpath(first), posixpath.normpath(second)
    if a == b:
        return "same"
    if relpath_under(b, a) is not None:
        return "inside"
    return "contains" if relpath_under(a, b) is not None else None


def relpath_under(root: str, path: str) -> str | None:
    """``path`` relative to the directory ``root``, or ``None`` when it is not under it."""
    base = join(root, "")
    return path[len(base) :] if path.startswith(base) and path != base else None


def parent_path(path: str) -> str | None:
    """The folder holding ``path`` (``a/b/gens`` -> ``a/b``); ``None`` at the top."""
    head, sep, _name = path.rstrip("/").rpartition("/")
    return head if sep and head else None


def base_name(path: str) -> str:
    """The last part of ``path`` (``a/b/essay/`` -> ``essay``)."""
    return path.rstrip("/").rpartition("/")[2]


def ancestor_path(path: str, levels: int) -> str | None:
    """The folder ``levels`` above ``path`` (``a/b/c``, 2 -> ``a``); ``None`` past the top."""
    found: str | None = path
    for _ in range(levels):
        found = None if found is None else parent_path(found)
    return found


def join(root: str, relpath: str) -> str:
    """Join a root and a relative POSIX path with exactly one slash."""
    return f"{root.rstrip('/')}/{relpath}" if root else relpath


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_gen_id(stage: str, task_id: str, *parts: object, length: int = 16) -> str:
    """A deterministic short base36 gen_id for jobs that mint ids.

    The same ``(stage, task_id, *parts)`` always gives the same id (a retried job writes to
    the same directory, and a create-only write then refuses the duplicate); pass an
    attempt number or a run id in ``parts`` to get a fresh one. 16 base36 characters carry
    about 82 bits of a SHA-256 digest.
    """
    if not 8 <= length <= 32:
        raise ValueError("length must be between 8 and 32")
    key = "\x1f".join([validate_stage(stage), str(task_id), *map(str, parts)])
    number = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big")
    digits: list[str] = []
    while len(digits) < length:
        number, rem = divmod(number, 36)
        digits.append(_BASE36[rem])
    return "".join(digits)
