"""``check``: the pure rules over hand-built snapshots, then the I/O over a seeded data root
on local, memory and S3 (with the request count on S3)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import pytest

from gens_fs import (
    STAGES,
    CheckReport,
    CohortNotFound,
    GenerationMetadata,
    InvalidMembership,
    InvalidMetadata,
    MembershipRow,
    check,
    list_generations,
    stats,
)
from gens_fs.backends import FileInfo, Ignored
from gens_fs.check import RULES, FindingKind, find_problems, rules_markdown
from gens_fs.inventory import MembershipResult, MetadataResult, StoreSnapshot
from gens_fs.listing import Listing
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from tests.seed import COHORT_ROWS, EXPECTED, seed

README = Path(__file__).resolve().parents[1] / "README.md"

# -- the pure part -------------------------------------------------------------------------

COMPLETE = {"raw.txt": 5, "parsed.txt": 3, "prompt.txt": 4, "metadata.json": 80}


def md(parent: str = "") -> GenerationMetadata:
    return GenerationMetadata(task_id="t", template_id="tpl", model_id="m", parent_gen_id=parent)


def snapshot(
    files: Mapping[str, Mapping[str, Mapping[str, int]]],
    metadata: Mapping[tuple[str, str], MetadataResult] | None = None,
    memberships: Mapping[str, MembershipResult] | None = None,
    *,
    cohort: str | None = None,
) -> StoreSnapshot:
    """A snapshot whose scope is every generation listed; metadata defaults to valid."""
    scope = tuple((s, g) for s in ("draft", "essay", "evaluation") for g in files.get(s, {}))
    meta: dict[tuple[str, str], MetadataResult] = {
        k: md() for k in scope if "metadata.json" in files[k[0]][k[1]]
    }
    meta.update(metadata or {})
    listing = Listing(
        {
            f"gens/{stage}/{gen_id}/{name}": FileInfo(size)
            for stage, gens in files.items()
            for gen_id, names in gens.items()
            for name, size in names.items()
        }
    )
    return StoreSnapshot(
        data_root="s3://b/data",
        stages=("draft", "essay", "evaluation"),
        listing=listing,
        scope=scope,
        metadata=meta,
        memberships=memberships or {},
        cohort=cohort,
    )


def kinds(report: CheckReport) -> set[tuple[str, str | None, str | None]]:
    return {(f.kind, f.stage, f.gen_id) for f in report.findings}


def rows(*pairs: tuple[str, str]) -> list[MembershipRow]:
    return [MembershipRow(stage=s, gen_id=g) for s, g in pairs]


def test_a_healthy_lineage_has_no_findings() -> None:
    report = find_problems(
        snapshot(
            {"draft": {"d": COMPLETE}, "essay": {"e": COMPLETE}, "evaluation": {"v": COMPLETE}},
            {("essay", "e"): md("d"), ("evaluation", "v"): md("e")},
            {"c": rows(("draft", "d"), ("essay", "e"), ("evaluation", "v"))},
        )
    )
    assert report.findings == []
    assert report.ok
    assert report.summary.generations == 3


def test_missing_generation_names_the_cohort() -> None:
    report = find_problems(snapshot({"draft": {}}, memberships={"c": rows(("draft", "d9"))}))
    (finding,) = report.findings
    assert (finding.kind, finding.severity, finding.cohort) == ("missing_generation", "error", "c")
    assert finding.path == "s3://b/data/gens/draft/d9"
    assert "membership lists the right gen_id" in finding.message
    assert not report.ok


def test_incomplete_only_text_rules_apply() -> None:
    report = find_problems(snapshot({"draft": {"d": {"raw.txt": 3, "parsed.txt": 1}}}))
    assert kinds(report) == {("incomplete", "draft", "d"), ("missing_prompt", "draft", "d")}
    incomplete = next(f for f in report.findings if f.kind == "incomplete")
    assert "has parsed.txt, raw.txt but no metadata.json" in incomplete.message


def test_incomplete_advice_puts_an_interrupted_sync_or_job_first() -> None:
    report = find_problems(snapshot({"essay": {"e": {"raw.txt": 3}}}))
    incomplete = next(f for f in report.findings if f.kind == "incomplete")
    advice = incomplete.message.split("written last): ", 1)[1]
    assert advice == (
        "if a sync or a job writing it was interrupted, run it again; otherwise rewrite the "
        "generation or delete its folder"
    )


def test_ignored_entries_say_what_they_are_once() -> None:
    ignored = (
        Ignored("gens/draft/d/raw.txt", "symbolic link, not followed"),
        Ignored("gens/draft/d/parsed.txt", "named pipe (FIFO), never opened"),
    )
    report = find_problems(replace(snapshot({"draft": {"d": COMPLETE}}), ignored=ignored))
    messages = sorted(f.message for f in report.findings if f.kind == "ignored")
    assert [m.split(": ")[:2] for m in messages] == [
        ["gens/draft/d/parsed.txt", "named pipe (FIFO), never opened"],
        ["gens/draft/d/raw.txt", "symbolic link, not followed"],
    ]
    for message in messages:  # the advice does not say again what the reason said
        advice = message.split(": ", 2)[2]
        assert "not followed" not in advice and "never" not in advice, advice


def test_readme_check_table_is_generated_from_the_rules() -> None:
    """The README's table is ``rules_markdown()`` exactly. After changing a rule, paste in
    what ``python -c 'from gens_fs.check import rules_markdown as t; print(t(), end="")'``
    prints."""
    section = README.read_text().split("### What `check` reports\n\n", 1)[1]
    assert section.split("\n\n", 1)[0] + "\n" == rules_markdown()
    incomplete = next(line for line in section.splitlines() if line.startswith("| `incomplete`"))
    assert "interrupted" in incomplete and "run it again" in incomplete


def test_every_kind_has_its_rule_in_the_types_order() -> None:
    assert tuple(RULES) == get_args(FindingKind)
    for rule in RULES.values():  # one table row each: no pipe or newline may break it
        assert rule.meaning and rule.advice
        assert not {"|", "\n"} & set(rule.meaning + rule.advice), rule.kind


def test_metadata_gone_since_listing_reads_as_incomplete() -> None:
    report = find_problems(snapshot({"draft": {"d": COMPLETE}}, {("draft", "d"): None}))
    assert kinds(report) == {("incomplete", "draft", "d")}


@pytest.mark.parametrize(
    ("stage", "meta", "kind", "text"),
    [
        ("draft", InvalidMetadata("x/metadata.json: not valid UTF-8 JSON"), "invalid_metadata",
         "not valid UTF-8 JSON"),
        ("draft", md("d0"), "invalid_metadata", "a draft has no parent"),
        ("essay", md("../up"), "invalid_metadata", "is not a valid gen_id"),
        ("essay", md(""), "missing_parent_id", "has no parent_gen_id naming its draft"),
        ("essay", md("gone"), "missing_parent", "parent draft gone is not on disk"),
        ("evaluation", md("half"), "missing_parent", "parent essay half is incomplete"),
    ],
)  # fmt: skip
def test_metadata_rules(stage: str, meta: MetadataResult, kind: str, text: str) -> None:
    files = {"draft": {}, "essay": {"half": {"raw.txt": 1}}, "evaluation": {}}
    files[stage] = {**files[stage], "g": COMPLETE}
    report = find_problems(snapshot(files, {(stage, "g"): meta}))
    found = [f for f in report.findings if f.gen_id == "g"]
    assert [(f.kind, f.severity) for f in found] == [(kind, "error")]
    assert text in found[0].message
    assert found[0].path == f"s3://b/data/gens/{stage}/g/metadata.json"


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({"raw.txt": 9, "parsed.txt": 0}, "parsed.txt is empty while raw.txt has 9 bytes"),
        ({"raw.txt": 9}, "parsed.txt is missing while raw.txt has 9 bytes"),
        ({"raw.txt": 0, "parsed.txt": 0}, None),
        ({"parsed.txt": 0}, None),
    ],
)
def test_empty_parsed_from_sizes(sizes: dict[str, int], expected: str | None) -> None:
    files = {"evaluation": {"v": {**sizes, "metadata.json": 9}}, "essay": {"e": COMPLETE}}
    report = find_problems(snapshot(files, {("evaluation", "v"): md("e")}))
    found = [f for f in report.findings if f.kind == "empty_parsed"]
    if expected is None:
        assert found == []
    else:
        assert found[0].severity == "warning"
        assert expected in found[0].message
        assert "the generator or parser may have failed" in found[0].message


def test_missing_prompt_only_for_drafts_and_essays() -> None:
    bare = {"raw.txt": 1, "parsed.txt": 1, "metadata.json": 9}
    report = find_problems(
        snapshot(
            {"draft": {"d": bare}, "essay": {"e": {**bare, "prompt.txt": 0}}, "evaluation": {
                "v": bare}},
            {("essay", "e"): md("d"), ("evaluation", "v"): md("e")},
        )
    )  # fmt: skip
    assert kinds(report) == {("missing_prompt", "draft", "d"), ("missing_prompt", "essay", "e")}
    assert report.ok  # warnings only


ORIGINAL = {"template_id": "tpl", "llm_model_id": "m", "mode": "llm"}  # no task_id
COPIED = {"template_id": "copy-tpl", "llm_model_id": None, "mode": "copy"}


@pytest.mark.parametrize(
    ("stage", "stored", "expected"),
    [
        ("draft", ORIGINAL, {("missing_task_id", "info")}),
        ("essay", {**ORIGINAL, "task_id": "t", "parent_gen_id": "d"}, set()),
        ("essay", {**COPIED, "parent_gen_id": "d"}, {("missing_task_id", "info")}),
        ("essay", {**COPIED, "task_id": "t", "parent_gen_id": "d"}, set()),
        ("essay", {**ORIGINAL, "task_id": "t", "llm_model_id": None, "parent_gen_id": "d"},
         {("missing_model_id", "warning")}),
        ("draft", {"task_id": "t", "template_id": "tpl", "model_id": ""},
         {("missing_model_id", "warning")}),
        ("draft", {"task_id": "", "llm_model_id": "m"},
         {("invalid_metadata", "error"), ("missing_task_id", "info")}),
    ],
)  # fmt: skip
def test_spec_fields_of_stored_metadata(
    stage: str, stored: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    """A missing task_id or model_id is a warning (the original pipeline's files load as
    they are); template_id stays required; a copy-mode generation has no model, no prompt."""
    no_prompt = {"parsed.txt": 5, "metadata.json": 90}
    files = {"draft": {"d": COMPLETE}, "essay": {}}
    files[stage] = {**files[stage], "g": no_prompt if stored.get("mode") == "copy" else COMPLETE}
    meta = GenerationMetadata.model_validate(stored)
    report = find_problems(snapshot(files, {(stage, "g"): meta}))
    found = [f for f in report.findings if f.gen_id == "g"]
    assert {(f.kind, f.severity) for f in found} == expected
    assert all(f.path.endswith("/gens/" + stage + "/g/metadata.json") for f in found)
    advice = {f.kind: f.message for f in found}
    if "missing_task_id" in advice:
        assert "loads and syncs as it is" in advice["missing_task_id"]
    if "missing_model_id" in advice:
        assert "only copy-mode generations" in advice["missing_model_id"]
    if "invalid_metadata" in advice:
        assert "no template_id" in advice["invalid_metadata"]


def test_missing_prompt_still_reported_for_an_llm_generation_without_one() -> None:
    files = {"draft": {"d": {"raw.txt": 1, "parsed.txt": 1, "metadata.json": 9}}}
    meta = GenerationMetadata.model_validate({**ORIGINAL, "task_id": "t"})
    report = find_problems(snapshot(files, {("draft", "d"): meta}))
    assert kinds(report) == {("missing_prompt", "draft", "d")}


def test_not_in_any_cohort_needs_known_memberships() -> None:
    files = {"draft": {"d": COMPLETE, "stray": COMPLETE, "half": {"raw.txt": 0}}}
    listed: dict[str, MembershipResult] = {"c": rows(("draft", "d"), ("draft", "half"))}
    report = find_problems(snapshot(files, memberships=listed))
    info = [f for f in report.findings if f.kind == "not_in_any_cohort"]
    assert [(f.gen_id, f.severity) for f in info] == [("stray", "info")]
    # No cohorts at all: the store does not use them; say nothing.
    assert "not_in_any_cohort" not in {f.kind for f in find_problems(snapshot(files)).findings}
    # One membership unreadable: its rows are unknown, so staying silent beats guessing.
    broken: dict[str, MembershipResult] = {
        **listed,
        "bad": InvalidMembership("cohorts/bad/membership.csv:2: unknown stage"),
    }
    report = find_problems(snapshot(files, memberships=broken))
    assert {f.kind for f in report.findings} == {
        "invalid_membership", "incomplete", "missing_prompt",
    }  # fmt: skip
    bad = next(f for f in report.findings if f.kind == "invalid_membership")
    assert (bad.cohort, bad.path) == ("bad", "s3://b/data/cohorts/bad/membership.csv")
    # Scoped to a cohort: the others are out of view, so nothing is "in no cohort".
    scoped = find_problems(snapshot(files, memberships=listed, cohort="c"))
    assert "not_in_any_cohort" not in {f.kind for f in scoped.findings}


def test_report_order_summary_and_json() -> None:
    files = {"draft": {"a": {"raw.txt": 2, "metadata.json": 9}, "b": {"raw.txt": 1}}}
    report = find_problems(snapshot(files, memberships={"c": rows(("draft", "z"))}))
    assert [(f.severity, f.kind, f.gen_id) for f in report.findings] == [
        ("error", "incomplete", "b"),
        ("error", "missing_generation", "z"),
        ("warning", "empty_parsed", "a"),
        ("warning", "empty_parsed", "b"),
        ("warning", "missing_prompt", "a"),
        ("warning", "missing_prompt", "b"),
        ("info", "not_in_any_cohort", "a"),
    ]
    assert report.summary.errors == 2 and report.summary.warnings == 4
    assert report.summary.by_kind == {
        "empty_parsed": 2, "incomplete": 1, "missing_generation": 1, "missing_prompt": 2,
        "not_in_any_cohort": 1,
    }  # fmt: skip
    data = json.loads(report.model_dump_json())
    assert data["ok"] is False
    assert set(data["findings"][0]) == {
        "kind", "severity", "stage", "gen_id", "path", "message", "cohort",
    }  # fmt: skip


# -- the I/O part, on every backend --------------------------------------------------------


def test_check_seeded_root(data_root_url: str, storage_options: dict[str, Any]) -> None:
    seed(data_root_url, storage_options)
    report = check(data_root_url, storage_options=storage_options)
    assert kinds(report) == EXPECTED
    assert not report.ok
    assert report.summary.cohorts == 2
    assert report.summary.generations == 10
    assert report.summary.errors == 5 and report.summary.warnings == 2
    assert report.summary.infos == 1

    def bare(url: str) -> str:
        return url.split("://")[-1].lstrip("/")

    for finding in report.findings:
        assert bare(finding.path).startswith(bare(data_root_url))


def test_check_scoped(data_root_url: str, storage_options: dict[str, Any]) -> None:
    seed(data_root_url, storage_options)
    clean = check(data_root_url, cohort="c2", storage_options=storage_options)
    assert clean.ok and clean.findings == [] and clean.summary.generations == 1
    c1 = check(data_root_url, cohort="c1", storage_options=storage_options)
    assert kinds(c1) == EXPECTED - {("not_in_any_cohort", "draft", "d-stray")}
    assert c1.summary.generations == len(COHORT_ROWS) - 1  # e-gone is not on disk
    drafts = check(data_root_url, stages=["draft"], storage_options=storage_options)
    assert kinds(drafts) == {k for k in EXPECTED if k[1] == "draft"}
    with pytest.raises(CohortNotFound, match="known cohorts: c1, c2"):
        check(data_root_url, cohort="nope", storage_options=storage_options)


def test_check_reports_broken_membership_but_raises_when_asked_for_it(
    data_root_url: str, storage_options: dict[str, Any]
) -> None:
    root = seed(data_root_url, storage_options)
    root.backend.write_many({root.membership_file("bad"): b"stage,gen_id\nsketch,d1\n"})
    report = check(root)
    assert ("invalid_membership", None, None) in kinds(report)
    assert "not_in_any_cohort" not in {f.kind for f in report.findings}
    with pytest.raises(InvalidMembership, match=r"membership\.csv:2: unknown stage"):
        check(root, cohort="bad")


def test_list_and_stats(data_root_url: str, storage_options: dict[str, Any]) -> None:
    seed(data_root_url, storage_options)
    rows_ = list_generations(data_root_url, stages=["essay"], storage_options=storage_options)
    assert [r.gen_id for r in rows_] == ["e-noprompt", "e-orphan", "e1"]
    assert rows_[2].parent_gen_id == "d1" and rows_[2].sizes["parsed.txt"] == len("parsed text")
    c2 = list_generations(data_root_url, cohort="c2", storage_options=storage_options)
    assert [(r.stage, r.gen_id, r.state) for r in c2] == [("draft", "d1", "ok")]
    c1 = list_generations(data_root_url, cohort="c1", storage_options=storage_options)
    assert [(r.stage, r.gen_id) for r in c1] == sorted(
        COHORT_ROWS, key=lambda k: (STAGES.index(k[0]), k[1])
    )  # every member, e-gone (no folder) too
    states = {r.gen_id: r.state for r in c1}
    assert (states["e-gone"], states["d-partial"], states["d-badmeta"]) == (
        "missing", "incomplete", "invalid_metadata"
    )  # fmt: skip
    gone = next(r for r in c1 if r.gen_id == "e-gone")
    assert (gone.committed, gone.sizes, gone.model_id) == (False, {}, None)
    result = stats(data_root_url, storage_options=storage_options).stages
    assert result["draft"].generations == 5 and result["draft"].incomplete == 1
    assert result["draft"].invalid_metadata == 1
    assert result["draft"].by_model == {"model-x": 2, "model-y": 1}
    assert result["evaluation"].by_template == {"tpl-a": 1, "tpl-b": 1}
    assert result["essay"].bytes > 0
    essays = stats(data_root_url, stages=["essay"], storage_options=storage_options)
    assert list(essays.stages) == ["essay"] and essays.stages["essay"] == result["essay"]


def test_check_request_count_on_s3(s3_middleware: S3Middleware, bucket: str) -> None:
    """Listings per stage, of cohorts/ and of gens/ (first level), one GET per membership
    and per metadata.json."""
    options = s3_storage_options(s3_middleware.endpoint_url)
    root = seed(f"s3://{bucket}/{uuid.uuid4().hex[:12]}/data", options)
    s3_middleware.reset_counts()
    check(root)
    # 3 stage listings + 1 cohorts listing + gens/ first level (strays); 2 membership GETs
    # + 9 committed metadata GETs.
    assert s3_middleware.counts() == {"LIST": 5, "GET": 11}
