"""``DataRoot``: one data root, ``gens/`` and ``cohorts/`` side by side on one storage, and
the cohort functions that take a data root.

What lives where under it is :mod:`gens_fs.layout`'s; how a ``membership.csv`` reads and
writes is :mod:`gens_fs.cohorts`'; the generations are :class:`~gens_fs.store.GensStore`'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from gens_fs.backends import Capabilities, Engine, SyncBackend, open_backend
from gens_fs.cohorts import MembershipRow, format_membership, parse_membership
from gens_fs.errors import CohortNotFound, InvalidMembership
from gens_fs.layout import (
    COHORTS_DIR,
    GENS_DIR,
    join,
    membership_cohort,
    membership_path,
    relpath_under,
)
from gens_fs.store import GensStore


class DataRoot:
    """A data root: ``gens/`` and ``cohorts/`` side by side on one filesystem.
    ``engine``: as for :class:`~gens_fs.store.GensStore`."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        fs: Any = None,
        engine: Engine = "fsspec",
    ) -> None:
        backend = open_backend(root, storage_options=storage_options, fs=fs, engine=engine)
        self.backend = SyncBackend(backend)

    @property
    def capabilities(self) -> Capabilities:
        """What the storage guarantees (exclusive create, hash in listings, ...)."""
        return self.backend.capabilities

    @property
    def root(self) -> str:
        return self.backend.root

    @property
    def gens_root(self) -> str:
        return join(self.root, GENS_DIR)

    @property
    def url(self) -> str:
        """The data root as a user would type it (a plain path on local disk)."""
        return self.backend.url(self.root)

    def store(self, *, side_writes: bool = False) -> GensStore:
        """A ``GensStore`` on this data root's ``gens/`` (same filesystem); with
        ``side_writes`` it also writes raw texts under ``3_generation/`` here."""
        return GensStore.on(
            self.backend.at(self.gens_root), side_write_root=self.root if side_writes else None
        )

    def membership_file(self, cohort_id: str) -> str:
        return join(self.root, membership_path(cohort_id))

    def read_membership(self, cohort_id: str) -> list[MembershipRow]:
        path = self.membership_file(cohort_id)
        data = self.backend.read_many([path])[path]
        if data is None:
            raise CohortNotFound(
                f"no cohort {cohort_id!r}: {path} does not exist "
                f"(known cohorts: {', '.join(self.cohort_ids()) or 'none'})"
            )
        return parse_membership(data, where=path)

    def read_memberships(
        self, cohort_ids: Iterable[str] | None = None
    ) -> dict[str, list[MembershipRow] | InvalidMembership]:
        """Every cohort's rows, in one listing and one batch of GETs (one per cohort);
        ``cohort_ids`` when the caller listed them already (no listing then).

        A file that does not parse comes back as its ``InvalidMembership`` error, so a
        caller looking at all cohorts can report it and go on.
        """
        ids = self.cohort_ids() if cohort_ids is None else cohort_ids
        paths = {c: self.membership_file(c) for c in ids}
        data = self.backend.read_many(list(paths.values()))
        out: dict[str, list[MembershipRow] | InvalidMembership] = {}
        for cohort_id, path in paths.items():
            raw = data[path]
            if raw is None:  # removed since the listing
                continue
            try:
                out[cohort_id] = parse_membership(raw, where=path)
            except InvalidMembership as exc:
                out[cohort_id] = exc
        return out

    def write_membership(self, cohort_id: str, rows: Iterable[MembershipRow]) -> None:
        path = self.membership_file(cohort_id)
        self.backend.write_many({path: format_membership(rows)})

    def cohort_ids(self) -> list[str]:
        """The cohorts that have a ``membership.csv``, sorted: one listing of ``cohorts/``."""
        found = self.backend.listing(join(self.root, COHORTS_DIR))
        relpaths = (relpath_under(self.root, path) or "" for path in found)
        return sorted({c for r in relpaths if (c := membership_cohort(r)) is not None})


def open_data_root(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> DataRoot:
    """``data_root`` itself if it is a ``DataRoot`` already, else a new one on it."""
    if isinstance(data_root, DataRoot):
        return data_root
    return DataRoot(data_root, storage_options=storage_options)


def _rows(
    rows: Iterable[MembershipRow | Mapping[str, str] | tuple[str, str]],
) -> list[MembershipRow]:
    out = []
    for row in rows:
        if isinstance(row, MembershipRow):
            out.append(row)
        elif isinstance(row, tuple):
            out.append(MembershipRow(stage=row[0], gen_id=row[1]))
        else:
            out.append(MembershipRow(stage=row["stage"], gen_id=row["gen_id"]))
    return out


def read_membership(
    data_root: str | os.PathLike[str],
    cohort_id: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[MembershipRow]:
    """The rows of a cohort's ``membership.csv`` (``CohortNotFound`` if it has none)."""
    return DataRoot(data_root, storage_options=storage_options).read_membership(cohort_id)


def write_membership(
    data_root: str | os.PathLike[str],
    cohort_id: str,
    rows: Iterable[MembershipRow | Mapping[str, str] | tuple[str, str]],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write a cohort's ``membership.csv`` (atomically on local disk; one PUT on S3)."""
    DataRoot(data_root, storage_options=storage_options).write_membership(cohort_id, _rows(rows))


def cohort_ids(
    data_root: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """The cohorts that have a ``membership.csv``, sorted: one listing."""
    return DataRoot(data_root, storage_options=storage_options).cohort_ids()
