"""``gc``: remove what killed writers left in a data root.

A local write goes through a hidden temporary file (``.raw.txt.<32 hex>.tmp``) that is
renamed into place when whole; a writer killed in between (SIGKILL, the OOM killer, a
machine crash) leaves it, often in a generation folder that holds nothing else. Every
listing skips such files, so nothing else ever removes them. Object stores have none: each
file is one PUT that lands whole or not at all.

Two halves, as elsewhere: :func:`plan_removals` is pure (what the backend found, a clock
reading and the threshold in; what to remove out), :func:`gc` does the I/O (one walk of
``gens/``, ``cohorts/`` and the raw side-writes' folder, then the removals).

What it removes, once older than the threshold (by modification time, which a write in
progress keeps fresh): temporary files named as our writers name them, and generation
folders (``gens/<stage>/<gen_id>/``) that held only those or nothing at all. Never
anything else: a committed generation's folder holds its ``metadata.json``, so neither its
files nor the folder itself qualify, and a folder is removed only while it is empty.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, computed_field

from gens_fs.backends import Leftovers
from gens_fs.data_root import DataRoot, open_data_root
from gens_fs.errors import InvalidDuration
from gens_fs.layout import (
    COHORTS_DIR,
    GENS_DIR,
    SIDE_WRITE_DIR,
    classify_gens_file,
    generation_folder,
    join,
    parent_path,
    relpath_under,
)

DEFAULT_OLDER_THAN: Final = 3600.0
"""Seconds: a temporary file younger than this may be a write in progress, and is kept."""
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


class Removal(BaseModel):
    """One thing ``gc`` removed (or, in a dry run, would remove), relative to the data
    root: a temporary file or an empty generation folder, with its size and age."""

    path: str
    kind: Literal["temp_file", "empty_folder"]
    size: int
    age_s: float


class GcError(BaseModel):
    """A leftover that could not be removed, and why."""

    path: str
    error: str


class GcReport(BaseModel):
    """What ``gc`` did: ``removed`` (each removal), ``kept`` (temporary files younger than
    ``older_than_s``: writes that may be in progress), ``errors``; ``ok`` when none."""

    data_root: str
    older_than_s: float
    dry_run: bool
    removed: list[Removal] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)
    errors: list[GcError] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.errors


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1h30m"`` (or ``"0"``) in seconds.
    ``InvalidDuration`` for anything else."""
    spelled = text.strip().lower()
    if spelled == "0":
        return 0.0
    parts = _DURATION_RE.findall(spelled)
    if not parts or "".join(n + u for n, u in parts) != spelled:
        raise InvalidDuration(
            f"--older-than {text!r}: expected a number and a unit, s, m, h or d "
            "(90s, 30m, 1h, 2d, 1h30m), or 0"
        )
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def plan_removals(
    found: Leftovers, root: str, *, now: float, older_than: float
) -> tuple[list[Removal], list[str]]:
    """What to remove of ``found`` (paths under the data root ``root``): the temporary
    files last modified ``older_than`` seconds or more before ``now``, and the generation
    folders that hold nothing else or nothing at all (an empty one only once as old).
    Returns the removals (files first) and the relpaths of the temporary files kept. Pure."""
    removals: list[Removal] = []
    kept: list[str] = []
    removed_in: dict[str, int] = {}
    for temp in sorted(found.temp_files):
        relpath = relpath_under(root, temp.path)
        if relpath is None or classify_gens_file(relpath) is not None:
            continue  # outside the root, or one of a generation's own files: never
        age = now - temp.mtime
        if age < older_than:
            kept.append(relpath)
            continue
        removals.append(Removal(path=relpath, kind="temp_file", size=temp.size, age_s=age))
        holder = parent_path(temp.path) or ""
        removed_in[holder] = removed_in.get(holder, 0) + 1
    for folder in sorted(found.folders):
        relpath = relpath_under(root, folder.path)
        if relpath is None or not _is_generation_folder(relpath):
            continue
        emptied = folder.entries > 0 and removed_in.get(folder.path, 0) == folder.entries
        age = now - folder.mtime
        if emptied or (folder.entries == 0 and age >= older_than):
            removals.append(Removal(path=relpath, kind="empty_folder", size=0, age_s=age))
    return removals, kept


def _is_generation_folder(relpath: str) -> bool:
    """``gens/<stage>/<gen_id>`` itself, not a folder inside one."""
    return relpath.count("/") == 2 and generation_folder(relpath) is not None


def gc(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    older_than: float = DEFAULT_OLDER_THAN,
    dry_run: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> GcReport:
    """Remove the temporary files killed writers left in ``data_root`` once
    ``older_than`` seconds old, and the generation folders that held nothing else (see
    the module). ``dry_run`` removes nothing and reports what would go.

    Cost: one walk of ``gens/``, ``cohorts/`` and ``3_generation/`` (local disk; on an
    object store no request: its writers leave nothing), one unlink or rmdir per removal.
    """
    root = open_data_root(data_root, storage_options=storage_options)
    backend = root.backend
    folders = [join(backend.root, name) for name in (GENS_DIR, COHORTS_DIR, SIDE_WRITE_DIR)]
    found = backend.leftovers(folders)
    removals, kept = plan_removals(found, backend.root, now=time.time(), older_than=older_than)
    report = GcReport(data_root=root.url, older_than_s=older_than, dry_run=dry_run, kept=kept)
    if dry_run:
        report.removed = removals
        return report
    by_path = {join(backend.root, r.path): r for r in removals}
    files = [p for p, r in by_path.items() if r.kind == "temp_file"]
    empty = [p for p, r in by_path.items() if r.kind == "empty_folder"]
    for done in backend.remove_leftovers(files, empty):
        removal = by_path[done.path]
        if done.error is None:
            report.removed.append(removal)
        else:
            report.errors.append(GcError(path=removal.path, error=done.error))
    return report
