"""What one sync may copy or delete: ``SyncScope``, and the ancestors a cohort brings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from gens_fs.backends.file_table import FileTable
from gens_fs.layout import (
    COHORTS_DIR,
    PARENT_STAGE,
    STAGES,
    GenKey,
    cohort_folder,
    generation_folder,
    generation_of,
    generation_relpath,
    is_hidden,
    membership_path,
    stage_folder,
    validate_stage,
)
from gens_fs.listing import Files


@dataclass(frozen=True)
class SyncScope:
    """Which files a sync may copy or delete, relative to the data root.

    ``stages``: the generation stages in scope. ``cohorts``: whether ``cohorts/`` is.
    ``cohort`` + ``generations``: only that cohort's ``membership.csv`` and exactly these
    generations (the cohort's rows and all their ancestors).
    """

    stages: tuple[str, ...] = STAGES
    cohorts: bool = True
    cohort: str | None = None
    generations: frozenset[GenKey] | None = None

    @classmethod
    def build(
        cls,
        stages: Iterable[str] | None = None,
        *,
        cohort: str | None = None,
        generations: Iterable[GenKey] | None = None,
    ) -> SyncScope:
        """Everything by default; ``stages`` alone limits ``gens/`` to those stages and leaves
        ``cohorts/`` out (their rows would name generations not synced). ``generations``
        alone (a selection and its ancestors) is exactly those, and no ``cohorts/`` either;
        with ``cohort``, its ``membership.csv`` too."""
        chosen = tuple(s for s in STAGES if s in {validate_stage(s) for s in stages or ()})
        if cohort is not None:
            membership_path(cohort)  # validates the id
            return cls(STAGES, False, cohort, frozenset(generations or ()))
        if generations is not None:
            return cls(STAGES, False, None, frozenset(generations))
        return cls(chosen or STAGES, not chosen, None, None)

    def contains(self, relpath: str) -> bool:
        """True when ``relpath`` is inside the scope."""
        key = generation_of(relpath)
        if key is not None:
            return self._holds(key)
        if self.cohort is not None:
            return relpath == membership_path(self.cohort)
        return self.cohorts and relpath.startswith(COHORTS_DIR + "/") and not is_hidden(relpath)

    def may_hold(self, relpath: str) -> bool:
        """False for an entry inside a generation folder outside the scope: what a
        listing left out there (a link, a stray folder) is none of this sync's business."""
        key = generation_folder(relpath)
        return key is None or self._holds(key)

    def _holds(self, key: GenKey) -> bool:
        return key in self.generations if self.generations is not None else key[0] in self.stages

    def filter(self, files: Files) -> FileTable:
        """The files in scope (``files`` itself, compact, when all of them are)."""
        return FileTable.of(files).only(self._contains_in_order())

    def _contains_in_order(self) -> Callable[[str], bool]:
        """:meth:`contains`, for paths in listing order: a generation's files come one
        after the other, so its folder is judged once, at its first file."""
        folder, inside = "", False  # the folder judged last, with its "/"; in scope?

        def contains(relpath: str) -> bool:
            nonlocal folder, inside
            if folder and relpath.startswith(folder):
                name = relpath[len(folder) :]
                if name and name[0] != "." and "/" not in name:  # a file of that folder
                    return inside
            key = generation_of(relpath)
            if key is None:
                return self.contains(relpath)
            folder, inside = generation_relpath(key) + "/", self._holds(key)
            return inside

        return contains

    def _stages_listed(self) -> tuple[str, ...]:
        if self.generations is not None:
            return tuple(s for s in STAGES if any(k[0] == s for k in self.generations))
        return self.stages

    def roots(self) -> tuple[str, ...]:
        """The directories to list on each side (one recursive listing each). One per stage,
        not ``gens/`` whole: on S3 their page chains run side by side, for about the same
        number of pages."""
        gens = tuple(stage_folder(s) for s in self._stages_listed())
        if self.cohort is not None:
            return (cohort_folder(self.cohort), *gens)
        return (*gens, COHORTS_DIR) if self.cohorts else gens

    def context_roots(self) -> tuple[str, ...]:
        """Extra directories to list on the destination only: the ancestor stages outside
        the scope, to know which parents are committed there."""
        stages = set(self._stages_listed())
        needed: set[str] = set()
        for stage in stages:
            parent = PARENT_STAGE[stage]
            while parent is not None:
                needed.add(parent)
                parent = PARENT_STAGE[parent]
        return tuple(stage_folder(s) for s in STAGES if s in needed - stages)


def close_over_parents(
    start: Iterable[GenKey], read_parents: Callable[[list[GenKey]], Mapping[GenKey, str | None]]
) -> frozenset[GenKey]:
    """``start`` plus all its ancestors. ``read_parents`` maps generations (one batch per
    lineage level, children first) to their ``parent_gen_id`` (``None`` when unknown)."""
    found = set(start)
    frontier = [k for k in found if PARENT_STAGE[k[0]] is not None]
    while frontier:
        parents = read_parents(sorted(frontier))
        frontier = []
        for (stage, _gen_id), parent_id in sorted(parents.items()):
            parent_stage = PARENT_STAGE[stage]
            if parent_stage is None or not parent_id:
                continue
            parent = (parent_stage, parent_id)
            if parent not in found:
                found.add(parent)
                if PARENT_STAGE[parent_stage] is not None:
                    frontier.append(parent)
    return frozenset(found)
