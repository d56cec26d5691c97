"""Cohort membership: ``<data_root>/cohorts/<cohort_id>/membership.csv``, the source of truth
for which generations a cohort holds.

The CSV has the header ``stage,gen_id``; extra columns are tolerated on read and dropped.
UTF-8 with or without a BOM, LF or CRLF. Every row is checked (stage, gen_id) and a bad one
raises ``InvalidMembership`` naming the file and line; duplicate rows collapse.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from gens_fs.errors import GensError, InvalidMembership
from gens_fs.layout import validate_gen_id, validate_stage

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
