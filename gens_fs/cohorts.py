"""Cohort membership: ``<data_root>/cohorts/<cohort_id>/membership.csv``, the source of truth
for which generations a cohort holds.

The CSV has the header ``stage,gen_id``; extra columns are tolerated on read and dropped.
UTF-8 with or without a BOM, LF or CRLF. Every row is checked (stage, gen_id) and a bad one
raises ``InvalidMembership`` naming the file and line; duplicate rows collapse.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from gens_fs.backends import Capabilities, Engine, RetryPolicy, SyncBackend, open_backend
from gens_fs.errors import CohortNotFound, GensError, InvalidMembership
from gens_fs.layout import (
    COHORTS_DIR,
    GENS_DIR,
    MEMBERSHIP_FILE,
    is_valid_gen_id,
    join,
    membership_path,
    validate_gen_id,
    validate_stage,
)
from gens_fs.store import GensStore

REQUIRED_COLUMNS = ("stage", "gen_id")


class MembershipRow(BaseModel):
    """One generation a cohort holds."""

    model_config = ConfigDict(frozen=True)

    stage: str
    gen_id: str


def parse_membership(data: bytes, *, where: str) -> list[MembershipRow]:
    """Parse the bytes of a ``membership.csv``: pure, for the store and for the sync planner."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidMembership(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InvalidMembership(
            f"{where}:1: header must name {', '.join(REQUIRED_COLUMNS)} (missing: "
            f"{', '.join(missing)}; found: {', '.join(columns) or 'nothing'})"
        )
    reader.fieldnames = columns
    rows: dict[MembershipRow, None] = {}
    for row in reader:
        line = reader.line_num
        stage, gen_id = row.get("stage"), row.get("gen_id")
        if stage is None or gen_id is None:
            raise InvalidMembership(f"{where}:{line}: row has too few columns")
        try:
            validate_stage(stage.strip())
            validate_gen_id(gen_id.strip())
        except GensError as exc:
            raise InvalidMembership(f"{where}:{line}: {exc}") from None
        rows[MembershipRow(stage=stage.strip(), gen_id=gen_id.strip())] = None
    return list(rows)


def format_membership(rows: Iterable[MembershipRow]) -> bytes:
    """The CSV bytes for ``rows`` (header ``stage,gen_id``, LF, duplicates dropped)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUIRED_COLUMNS)
    for row in dict.fromkeys(rows):
        writer.writerow((validate_stage(row.stage), validate_gen_id(row.gen_id)))
    return out.getvalue().encode("utf-8")


class DataRoot:
    """A data root: ``gens/`` and ``cohorts/`` side by side on one filesystem.
    ``engine`` and ``retry``: as for :class:`~gens_fs.store.GensStore`."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        fs: Any = None,
        engine: Engine = "fsspec",
        retry: RetryPolicy | None = None,
    ) -> None:
        backend = open_backend(
            root, storage_options=storage_options, fs=fs, engine=engine, retry=retry
        )
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
        base = join(self.root, COHORTS_DIR) + "/"
        ids = set()
        for path in self.backend.listing(base.rstrip("/")):
            parts = path[len(base) :].split("/")
            if len(parts) == 2 and parts[1] == MEMBERSHIP_FILE and is_valid_gen_id(parts[0]):
                ids.add(parts[0])
        return sorted(ids)


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
