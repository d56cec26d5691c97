"""Cohort membership files on local, memory and S3, and the CSV edge cases."""

from __future__ import annotations

from typing import Any

import pytest

from gens_fs import (
    CohortNotFound,
    InvalidMembership,
    MembershipRow,
    cohort_ids,
    read_membership,
    write_membership,
)
from gens_fs.cohorts import parse_membership


def test_round_trip_and_listing(data_root_url: str, storage_options: dict[str, Any]) -> None:
    rows = [("draft", "d1"), ("essay", "e1"), ("draft", "d1")]
    write_membership(data_root_url, "c1", rows, storage_options=storage_options)
    write_membership(data_root_url, "c2", [], storage_options=storage_options)
    got = read_membership(data_root_url, "c1", storage_options=storage_options)
    assert got == [
        MembershipRow(stage="draft", gen_id="d1"),
        MembershipRow(stage="essay", gen_id="e1"),
    ]
    assert cohort_ids(data_root_url, storage_options=storage_options) == ["c1", "c2"]


def test_missing_cohort(data_root_url: str, storage_options: dict[str, Any]) -> None:
    write_membership(data_root_url, "c1", [], storage_options=storage_options)
    with pytest.raises(CohortNotFound, match="known cohorts: c1"):
        read_membership(data_root_url, "nope", storage_options=storage_options)


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfstage,gen_id\r\ndraft,d1\r\nessay,e1\r\n",
        b"gen_id,stage,extra\nd1,draft,x\ne1,essay,y\n",
        b"stage,gen_id\ndraft,d1\nessay,e1\ndraft,d1\n",
        b"stage,gen_id\n draft , d1 \nessay,e1",
    ],
)
def test_csv_variants(data: bytes) -> None:
    assert parse_membership(data, where="m.csv") == [
        MembershipRow(stage="draft", gen_id="d1"),
        MembershipRow(stage="essay", gen_id="e1"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"stage\ndraft\n", "m.csv:1: header must name"),
        (b"stage,gen_id\ndraft,d1\ndrafts,d2\n", "m.csv:3: unknown stage"),
        (b"stage,gen_id\ndraft,../x\n", "m.csv:2: invalid gen_id"),
        (b"stage,gen_id\ndraft\n", "m.csv:2: row has too few columns"),
        (b"stage,gen_id\ndraft,\xff\n", "m.csv: not UTF-8"),
        (b"", "header must name"),
    ],
)
def test_bad_rows_name_file_and_line(data: bytes, message: str) -> None:
    with pytest.raises(InvalidMembership) as info:
        parse_membership(data, where="m.csv")
    assert message in str(info.value)
