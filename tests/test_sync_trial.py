"""Sync semantics a new-user trial found (issue 8 follow-up): a generation whose parent is
missing in the source itself (an *orphan*) is held with a reason that says what to do, or
copied as it is with ``--allow-orphans``; the plan decides everything (held memberships,
withheld deletes), so a dry run shows what the real run does; a destination that is a part
of a data root, or roots one inside the other, are refused; a stage folder, ``cohorts/``,
a generation folder or a file given as the source is recognised.

The CLI findings run ``python -m gens_fs`` as a real process; the planner is tested pure.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_options

from gens_fs import GensStore, SyncReport, check, sync, write_membership
from gens_fs.backends import FileInfo
from gens_fs.data_root import DataRoot
from gens_fs.errors import NotADataRoot
from gens_fs.layout import inner_folder_kind, root_kind, roots_overlap
from gens_fs.listing import Files
from gens_fs.sync import OverlappingRoots, plan
from gens_fs.sync.plan import (
    Diff,
    SyncPlan,
    delete_refusal,
    hold_memberships,
    memberships_to_read,
    parents_to_probe,
)
from gens_fs.sync.scope import SyncScope
from gens_fs.testing.invariants import mirror_problems, snapshot
from tests.process import gens_fs, one_error_line

META = {"task_id": "t", "template_id": "tpl", "model_id": "m"}
ORPHAN_REASON = (
    "not synced: its parent draft d_gone is not committed in the source either (no "
    "metadata.json there): fix the source (gens-fs check SRC) or pass --allow-orphans to copy "
    "it as it is"
)


def write_trial_store(root: str, options: dict[str, Any] | None = None) -> None:
    """Two whole lineages, and what the original pipeline left behind: essay ``e_orphan``
    naming a draft ``d_gone`` that is not there, and evaluation ``v_orphan`` of it. Cohort
    ``c1`` lists the orphan, ``c2`` does not."""
    data_root = DataRoot(root, storage_options=options)
    store = data_root.store()
    for i in range(2):
        store.write("draft", f"d{i}", metadata=META, raw=f"draft {i}", prompt="p")
        store.write("essay", f"e{i}", metadata={**META, "parent_gen_id": f"d{i}"}, raw="e")
        store.write("evaluation", f"v{i}", metadata={**META, "parent_gen_id": f"e{i}"}, raw="7")
    orphans = {("essay", "e_orphan"): "d_gone", ("evaluation", "v_orphan"): "e_orphan"}
    data_root.backend.write_many(  # behind the store's back: it refuses a missing parent
        {
            store.path(stage, gen_id, name): data
            for (stage, gen_id), parent in orphans.items()
            for name, data in (
                ("raw.txt", b"orphan text"),
                ("metadata.json", json.dumps({**META, "parent_gen_id": parent}).encode()),
            )
        }
    )
    rows = [("draft", "d0"), ("essay", "e0"), ("essay", "e_orphan")]
    write_membership(root, "c1", rows, storage_options=options)
    write_membership(root, "c2", [("draft", "d1")], storage_options=options)


def memberships_name_only_what_is_there(dst: dict[str, bytes], src: dict[str, bytes]) -> None:
    """Every row of a destination membership names a generation committed there, unless
    the source lacks it too (a cohort is copied as it is, not repaired)."""
    for relpath, data in dst.items():
        if not relpath.endswith("/membership.csv"):
            continue
        for line in data.decode().splitlines()[1:]:
            stage, gen_id = line.split(",")
            commit = f"gens/{stage}/{gen_id}/metadata.json"
            assert commit in dst or commit not in src, (relpath, line)


# -- the planner, pure ---------------------------------------------------------------------


def entry(data: bytes) -> FileInfo:
    return FileInfo(len(data), hashlib.md5(data).hexdigest())


def make_plan(src: Files, dst: Files, scope: SyncScope, **options: Any) -> SyncPlan:
    """The planner on two listings: their :class:`Diff` first, as ``plan_sync`` does."""
    return plan.make_plan(Diff.of(src, dst, scope), **options)


def listing(*gens: tuple[str, str], csv: dict[str, str] | None = None) -> dict[str, FileInfo]:
    out = {}
    for stage, gen_id in gens:
        for name in ("raw.txt", "metadata.json"):
            out[f"gens/{stage}/{gen_id}/{name}"] = entry(f"{stage} {gen_id} {name}".encode())
    for cohort, text in (csv or {}).items():
        out[f"cohorts/{cohort}/membership.csv"] = entry(text.encode())
    return out


PARENTS = {
    ("essay", "e0"): "d0",
    ("evaluation", "v0"): "e0",
    ("essay", "e_orphan"): "d_gone",
    ("evaluation", "v_orphan"): "e_orphan",
}
TRIAL = [("draft", "d0"), ("essay", "e0"), ("evaluation", "v0")]
ORPHANS = [("essay", "e_orphan"), ("evaluation", "v_orphan")]


def test_an_orphan_at_the_source_is_held_and_says_what_to_do() -> None:
    src = listing(*TRIAL, *ORPHANS)
    plan = make_plan(src, {}, SyncScope.build(), parents=PARENTS)
    assert [(h.relpath, h.reason) for h in plan.held] == [
        ("gens/essay/e_orphan", ORPHAN_REASON.removeprefix("not synced: ")),
        ("gens/evaluation/v_orphan", "its parent essay e_orphan is held back too"),
    ]
    assert {c.generation for c in plan.copies} == set(TRIAL)


def test_allow_orphans_copies_them_as_they_are_after_nothing() -> None:
    src = listing(*TRIAL, *ORPHANS)
    plan = make_plan(src, {}, SyncScope.build(), parents=PARENTS, allow_orphans=True)
    assert plan.held == ()
    after = {c.generation: c.after for phase in plan.commits for c in phase}
    assert after[("essay", "e_orphan")] is None  # no parent to wait for
    assert after[("evaluation", "v_orphan")] == ("essay", "e_orphan")  # lineage order holds
    assert {c.generation for c in plan.copies} == set(TRIAL + ORPHANS)


@pytest.mark.parametrize(
    ("parent", "reason"),
    [
        ("", "its metadata.json names no parent_gen_id: fix the source"),
        ("../d0", "its parent_gen_id '../d0' is not a valid gen_id: fix the source"),
    ],
)
def test_a_missing_or_invalid_parent_id_is_an_orphan_too(parent: str, reason: str) -> None:
    src = listing(("essay", "e_x"))
    plan = make_plan(src, {}, SyncScope.build(), parents={("essay", "e_x"): parent})
    assert plan.held[0].reason.startswith(reason)
    allowed = make_plan(
        src, {}, SyncScope.build(), parents={("essay", "e_x"): parent}, allow_orphans=True
    )
    assert allowed.held == () and len(allowed.copies) == 2


def test_an_unreadable_metadata_is_held_even_with_allow_orphans() -> None:
    src = listing(("essay", "e_x"))
    plan = make_plan(
        src, {}, SyncScope.build(), parents={("essay", "e_x"): None}, allow_orphans=True
    )
    assert [h.reason for h in plan.held] == [
        "its metadata.json could not be read (run again to retry)"
    ]


def test_a_parent_out_of_scope_is_told_from_one_missing_in_the_source() -> None:
    """With ``--stage essay`` the source's drafts are not listed: the parents at neither
    side are probed, and the probe decides the reason."""
    src = listing(("essay", "e0"), ("essay", "e_orphan"), ("essay", "e1"))
    dst = listing(("draft", "d1"))  # d1 is at the destination: no probe for it
    scope = SyncScope.build(["essay"])
    parents = {("essay", "e0"): "d0", ("essay", "e_orphan"): "d_gone", ("essay", "e1"): "d1"}
    assert parents_to_probe(parents, dst, scope) == [("draft", "d0"), ("draft", "d_gone")]
    probed = {("draft", "d0"): True, ("draft", "d_gone"): False}
    plan = make_plan(src, dst, scope, parents=parents, probed=probed)
    reasons = {h.gen_id: h.reason for h in plan.held}
    assert reasons["e0"].endswith("is neither committed at the destination nor in this sync "
                                  "(sync that stage or cohort too)")  # fmt: skip
    assert reasons["e_orphan"] == ORPHAN_REASON.removeprefix("not synced: ")
    assert "e1" not in reasons
    assert parents_to_probe(parents, dst, SyncScope.build()) == []  # every stage listed


def test_the_plan_holds_the_memberships_listing_a_held_generation() -> None:
    csv = {"c1": "c1 rows", "c2": "c2 rows"}
    src = listing(*TRIAL, *ORPHANS, csv=csv)
    plan = make_plan(src, {}, SyncScope.build(), parents=PARENTS)
    assert memberships_to_read(plan) == ["cohorts/c1/membership.csv", "cohorts/c2/membership.csv"]
    rows = {
        "cohorts/c1/membership.csv": [("draft", "d0"), ("essay", "e_orphan")],
        "cohorts/c2/membership.csv": [("draft", "d0"), ("draft", "d_elsewhere")],
    }
    settled = hold_memberships(plan, rows)
    assert [(f.relpath, f.reason) for f in settled.held_files] == [
        (
            "cohorts/c1/membership.csv",
            "it lists generations held back (essay/e_orphan); it follows them once they are synced",
        )
    ]
    (c2,) = settled.cohort_files
    # what the executor checks at run time, instead of parsing the CSV again
    assert c2.relpath == "cohorts/c2/membership.csv" and c2.needs == {("draft", "d0")}


def test_memberships_are_read_only_when_a_generation_is_copied_or_held() -> None:
    src = listing(*TRIAL, csv={"c1": "new rows"})
    dst = {r: e for r, e in src.items() if not r.startswith("cohorts/")}
    assert memberships_to_read(make_plan(src, dst, SyncScope.build(), parents={})) == []
    assert memberships_to_read(make_plan(src, src, SyncScope.build(), parents={})) == []
    assert memberships_to_read(make_plan(src, {}, SyncScope.build(), parents=PARENTS)) == [
        "cohorts/c1/membership.csv"
    ]


def test_an_unreadable_membership_is_held_and_an_unparsable_one_copied() -> None:
    src = listing(*TRIAL, csv={"c1": "x", "c2": "y"})
    plan = make_plan(src, {}, SyncScope.build(), parents=PARENTS)
    settled = hold_memberships(
        plan, {"cohorts/c2/membership.csv": None}, {"cohorts/c1/membership.csv": "TimeoutError: "}
    )
    assert [f.relpath for f in settled.held_files] == ["cohorts/c1/membership.csv"]
    assert "could not be read" in settled.held_files[0].reason
    assert [c.relpath for c in settled.cohort_files] == ["cohorts/c2/membership.csv"]
    assert settled.cohort_files[0].needs == frozenset()


def test_deletes_are_withheld_while_anything_is_held() -> None:
    src = listing(*TRIAL, *ORPHANS)
    dst = listing(*TRIAL, ("draft", "d_old"))
    plan = make_plan(src, dst, SyncScope.build(), parents=PARENTS, delete=True)
    assert plan.deletes == ()
    assert sorted(plan.withheld_deletes) == [
        "gens/draft/d_old/metadata.json",
        "gens/draft/d_old/raw.txt",
    ]
    assert delete_refusal(plan, max_delete=0) is None  # nothing will be deleted
    allowed = make_plan(src, dst, SyncScope.build(), parents=PARENTS, delete=True,
                        allow_orphans=True)  # fmt: skip
    assert allowed.withheld_deletes == () and len(allowed.delete_paths) == 2
    # a held membership alone withholds them too: the old one may list what they remove
    clean = make_plan(listing(*TRIAL, csv={"c1": "x"}), dst, SyncScope.build(), parents=PARENTS,
                      delete=True)  # fmt: skip
    held_csv = hold_memberships(clean, {}, {"cohorts/c1/membership.csv": "TimeoutError: "})
    assert held_csv.deletes == () and len(held_csv.withheld_deletes) == 2


# -- the library on every backend: the dry run is the real run --------------------------------


def outcome(report: SyncReport) -> dict[str, Any]:
    """What a dry run must predict of the real run."""
    return {
        "copied": report.copied,
        "bytes": report.bytes,
        "deleted": report.deleted,
        "held": report.held,
        "held_memberships": report.held_memberships,
        "deletes_skipped": report.deletes_skipped,
        "deletes_not_run": report.deletes_not_run,
        "errors": [(e.path, e.error) for e in report.errors],
        "ok": report.ok,
    }


@pytest.mark.parametrize("allow_orphans", [False, True])
def test_dry_run_predicts_the_real_run(
    data_root_url: str, storage_options: dict[str, Any], tmp_path: Path, allow_orphans: bool
) -> None:
    src, dst = data_root_url, str(tmp_path / "backup")
    write_trial_store(src, storage_options)
    GensStore(f"{dst}/gens").write("draft", "d_old", metadata=META, raw="old")  # to delete
    kwargs: dict[str, Any] = {
        "src_options": storage_options,
        "allow_orphans": allow_orphans,
        "max_delete": 2,
    }
    before = snapshot(dst)
    dry = sync(src, dst, delete=True, dry_run=True, **kwargs)
    assert snapshot(dst) == before
    real = sync(src, dst, delete=True, **kwargs)
    assert outcome(dry) == outcome(real)
    written = {r for r, data in snapshot(dst).items() if before.get(r) != data}
    assert written == {a.path for a in dry.actions or [] if a.action == "copy"}
    gone = set(before) - set(snapshot(dst))
    assert gone == {a.path for a in dry.actions or [] if a.action == "delete"}
    if allow_orphans:
        assert real.ok and real.held == [] and real.deleted == 2
    else:
        assert real.held == ["essay/e_orphan", "evaluation/v_orphan"]
        assert real.held_memberships == ["cohorts/c1/membership.csv"]
        assert (real.deleted, real.deletes_skipped, real.deletes_not_run) == (0, True, 2)


def test_allow_orphans_is_a_faithful_mirror_of_a_broken_source(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "data"), str(tmp_path / "backup")
    write_trial_store(src)
    held = sync(src, dst)
    assert not held.ok and held.copied > 0  # the rest is synced
    assert mirror_problems(snapshot(src), snapshot(dst)) == []
    memberships_name_only_what_is_there(snapshot(dst), snapshot(src))
    again = sync(src, dst)  # held again, the same way: a rerun does not converge by itself
    assert (again.copied, again.held, again.errors) == (0, held.held, held.errors)

    report = sync(src, dst, allow_orphans=True)
    assert report.ok and snapshot(dst) == snapshot(src)
    # the one exception to the guarantee, exactly: the source's own orphan
    assert mirror_problems(snapshot(src), snapshot(dst)) == [
        "gens/essay/e_orphan: committed but its parent draft d_gone is not"
    ]
    src_errors = {(f.kind, f.gen_id) for f in check(src).findings if f.severity == "error"}
    dst_errors = {(f.kind, f.gen_id) for f in check(dst).findings if f.severity == "error"}
    assert dst_errors == src_errors == {("missing_parent", "e_orphan")}


def test_a_failed_generation_still_holds_its_membership_at_run_time(tmp_path: Path) -> None:
    """The runtime half: the plan says which generations each CSV needs; one whose file
    fails holds the CSV, and only the CSVs that list it."""
    src, dst = str(tmp_path / "data"), str(tmp_path / "backup")
    write_trial_store(src)
    blocked = Path(dst) / "gens" / "essay" / "e0" / "raw.txt"
    blocked.mkdir(parents=True)  # a folder where the file goes: its write fails, for real
    report = sync(src, dst, allow_orphans=True)
    errors = {e.path: e.error for e in report.errors}
    assert errors.keys() == {"gens/essay/e0/raw.txt", "cohorts/c1/membership.csv"}
    assert errors["cohorts/c1/membership.csv"] == (
        "not synced: it lists generations left uncommitted (essay/e0); run again to converge"
    )
    assert report.uncommitted == ["essay/e0", "evaluation/v0"]
    assert report.held_memberships == []  # not the plan's doing: the plan could not know
    assert "cohorts/c2/membership.csv" in snapshot(dst)
    blocked.rmdir()
    assert sync(src, dst, allow_orphans=True).ok and snapshot(dst) == snapshot(src)


# -- the CLI -----------------------------------------------------------------------------------


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_cli_orphan_is_held_with_what_to_do_then_allowed(tmp_path: Path) -> None:
    data, backup, datacopy = (str(tmp_path / n) for n in ("data", "backup", "datacopy"))
    write_trial_store(data)
    write_trial_store(datacopy)

    for _run in range(2):  # the same on every run: nothing claims a rerun would converge
        done = gens_fs("sync", data, backup)
        assert done.returncode == 1, done.stderr
        out = lines(done.stdout)
        assert out[1:] == [
            "held back 2 generations (each error says why and what to do): essay/e_orphan, "
            "evaluation/v_orphan",
            "held back 1 cohort membership listing them: cohorts/c1/membership.csv",
        ]
        assert lines(done.stderr) == [
            f"gens-fs: error: gens/essay/e_orphan: {ORPHAN_REASON}",
            "gens-fs: error: gens/evaluation/v_orphan: not synced: its parent essay e_orphan is "
            "held back too",
            "gens-fs: error: cohorts/c1/membership.csv: not synced: it lists generations held "
            "back (essay/e_orphan); it follows them once they are synced",
        ]
        assert "run again" not in done.stdout + done.stderr
    assert "cohorts/c2/membership.csv" in snapshot(backup)  # the rest was synced

    allowed = gens_fs("sync", data, backup, "--allow-orphans")
    assert allowed.returncode == 0, allowed.stderr
    assert snapshot(backup) == snapshot(data)
    # the trial's swapped arguments: the backup is whole, so nothing would be deleted
    swapped = gens_fs("sync", backup, datacopy, "--delete", "--dry-run")
    assert swapped.returncode == 0, swapped.stderr
    assert ", would delete 0 files in " in swapped.stdout and "would delete gens" not in (
        swapped.stdout
    )


def test_cli_dry_run_shows_held_memberships_and_skipped_deletes(tmp_path: Path) -> None:
    data, backup = str(tmp_path / "data"), str(tmp_path / "backup")
    write_trial_store(data)
    GensStore(f"{backup}/gens").write("draft", "d_old", metadata=META, raw="old")

    dry = gens_fs("sync", data, backup, "--delete", "--dry-run")
    real = gens_fs("sync", data, backup, "--delete")
    assert dry.returncode == real.returncode == 1
    dry_out, real_out = lines(dry.stdout), lines(real.stdout)
    assert any(line.startswith("would copy cohorts/c2/membership.csv (") for line in dry_out)
    planned = [line for line in dry_out if line.startswith("would ")]
    assert not any("/c1/" in line or "/d_old/" in line for line in planned)
    assert ", would delete 0 files in " in dry_out[-4] and ", deleted 0 files in " in real_out[-4]
    assert dry_out[-3:-1] == real_out[-3:-1]  # the held lines
    assert dry_out[-1] == (
        "deletes would be skipped (2 files): 2 generations held back; deletes run once nothing "
        "is held"
    )
    assert real_out[-1] == (
        "deletes skipped (2 files): 2 generations held back; deletes run once nothing is held"
    )
    assert dry.stderr == real.stderr
    assert "gens/draft/d_old/raw.txt" in snapshot(backup)

    as_json = [
        json.loads(gens_fs("sync", data, str(tmp_path / "fresh"), *flags, "--json").stdout)
        for flags in (["--dry-run"], [])
    ]
    for report in as_json:
        report.pop("seconds"), report.pop("actions"), report.pop("dry_run")
    assert as_json[0] == as_json[1]


def test_cli_sync_has_short_stage_and_cohort_options(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    write_trial_store(data)
    short = gens_fs("sync", data, str(tmp_path / "a"), "-s", "draft", "-c", "c2", "--json")
    long = gens_fs("sync", data, str(tmp_path / "b"), "--stage", "draft", "--cohort", "c2",
                   "--json")  # fmt: skip
    assert short.returncode == long.returncode == 0, short.stderr
    assert json.loads(short.stdout)["copied"] == json.loads(long.stdout)["copied"] == 4
    assert set(snapshot(str(tmp_path / "a"))) == {
        "cohorts/c2/membership.csv", "gens/draft/d1/metadata.json", "gens/draft/d1/prompt.txt",
        "gens/draft/d1/raw.txt",
    }  # fmt: skip


# -- destinations and roots ----------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, str]:
    """A data root ``data`` and a backup of it ``bk`` (cwd-relative names in the tests)."""
    data, bk = str(tmp_path / "data"), str(tmp_path / "bk")
    write_trial_store(data)
    assert gens_fs("sync", data, bk, "--allow-orphans").returncode == 0
    return {"data": data, "bk": bk}


@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [
        ("{data}", "{bk}/gens", "destination data root {bk}/gens looks like a gens root (it "
         "holds draft/, essay/, evaluation/); did you mean {bk}?"),
        ("{data}", "{bk}/gens/essay", "destination data root {bk}/gens/essay looks like the "
         "essay stage folder of a gens root (it holds generation folders: e0/, e1/, "
         "e_orphan/); did you mean {bk}?"),
        ("{data}", "{bk}/cohorts", "destination data root {bk}/cohorts looks like the cohorts/ "
         "folder of a data root (it holds c1/, c2/); did you mean {bk}?"),
        ("{data}", "{bk}/gens/draft/d0", "destination data root {bk}/gens/draft/d0 looks like a "
         "generation folder (it holds metadata.json, prompt.txt, raw.txt); did you mean {bk}?"),
        ("{data}", "{data}/gens", "destination data root {data}/gens is inside the source data "
         "root {data}: a sync would copy the source into itself; choose a destination outside "
         "it"),
        ("{data}", "{data}/new", "destination data root {data}/new is inside the source data "
         "root {data}: a sync would copy the source into itself; choose a destination outside "
         "it"),
        ("{data}/gens/..", "{data}", "source and destination are the same data root: "
         "{data}/gens/.. and {data}"),
        ("{data}", "{data}/gens/essay/../..", "source and destination are the same data root: "
         "{data} and {data}/gens/essay/../.."),
        ("{bk}/cohorts/c9", "{bk}", "source data root {bk}/cohorts/c9 is inside the destination "
         "data root {bk}: a sync could write over or delete what it reads; choose a source and "
         "a destination apart"),
    ],
)  # fmt: skip
def test_cli_refuses_a_destination_that_is_a_part_of_a_data_root_or_overlaps(
    roots: dict[str, str], src: str, dst: str, expected: str
) -> None:
    if "c9" in src:  # a data root kept inside the backup's cohorts/
        GensStore(roots["bk"] + "/cohorts/c9/gens").write("draft", "d9", metadata=META)
    before = {name: snapshot(path) for name, path in roots.items()}
    done = gens_fs("sync", src.format(**roots), dst.format(**roots), "--delete")
    assert one_error_line(done) == "gens-fs: error: " + expected.format(**roots)
    assert {name: snapshot(path) for name, path in roots.items()} == before
    assert not os.path.exists(roots["data"] + "/new")


def test_a_destination_empty_absent_or_holding_other_things_is_fine(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    write_trial_store(data)
    (tmp_path / "empty").mkdir()
    (tmp_path / "other" / "photos").mkdir(parents=True)
    (tmp_path / "other" / "metadata.json").write_text("{}")  # not a generation's files
    (tmp_path / "essay" / "drafts").mkdir(parents=True)  # named like a stage, and is not one
    (tmp_path / "essay" / "drafts" / "notes.txt").write_text("mine")
    for dst in ("empty", "absent", "other", "essay"):
        report = sync(data, str(tmp_path / dst), allow_orphans=True)
        assert report.ok and snapshot(str(tmp_path / dst)).keys() >= snapshot(data).keys()


def test_s3_destination_checks(tmp_path: Path, s3_options: dict[str, Any], bucket: str) -> None:
    base = f"s3://{bucket}/{uuid.uuid4().hex[:8]}"
    data = str(tmp_path / "data")
    write_trial_store(data)
    flags = cli_options(s3_options)
    assert gens_fs("sync", data, f"{base}/bk", "--allow-orphans", *flags).returncode == 0
    line = one_error_line(gens_fs("sync", data, f"{base}/bk/gens/essay", *flags))
    assert line.endswith(f"looks like the essay stage folder of a gens root (it holds generation "
                         f"folders: e0/, e1/, e_orphan/); did you mean {base}/bk?")  # fmt: skip
    line = one_error_line(gens_fs("sync", f"{base}/bk", f"{base}/bk/inner", *flags))
    assert line.startswith(f"gens-fs: error: destination data root {base}/bk/inner is inside")
    assert snapshot(f"{base}/bk/inner", s3_options) == {}
    with pytest.raises(OverlappingRoots, match="same data root"):
        sync(f"{base}/bk/gens/..", f"{base}/bk", src_options=s3_options, dst_options=s3_options)


# -- what a source is ----------------------------------------------------------------------


def test_cli_recognises_what_the_source_is(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    write_trial_store(data)
    dst = str(tmp_path / "backup")
    (tmp_path / "blocker").write_text("a file")
    (tmp_path / "essays-copy" / "e0").mkdir(parents=True)  # a stage folder renamed
    (tmp_path / "essays-copy" / "e0" / "metadata.json").write_text("{}")
    (tmp_path / "stuff" / "photos").mkdir(parents=True)
    cases = {
        "data/gens/essay": "looks like the essay stage folder of a gens root (it holds "
        f"generation folders: e0/, e1/, e_orphan/); did you mean {data}?",
        "data/cohorts": "looks like the cohorts/ folder of a data root (it holds c1/, c2/); did "
        f"you mean {data}?",
        "data/gens/essay/e0": "looks like a generation folder (it holds metadata.json, raw.txt); "
        f"did you mean {data}?",
        "essays-copy": "looks like a stage folder of a gens root (it holds generation folders: "
        f"e0/); did you mean {tmp_path.parent}?",
        "blocker": "is a file, not a folder: give the folder that holds gens/ and cohorts/",
        "stuff": "holds neither gens/ nor cohorts/ (it holds photos/): give the folder that "
        "holds gens/ and cohorts/",
    }
    for name, expected in cases.items():
        src = str(tmp_path / name)
        for extra in ([], ["--allow-empty-source"]):  # only a truly empty source is allowed
            line = one_error_line(gens_fs("sync", src, dst, "--delete", *extra))
            assert line == f"gens-fs: error: source data root {src} {expected}"
    assert not os.path.exists(dst)


def test_allow_empty_source_admits_only_a_root_that_holds_nothing(tmp_path: Path) -> None:
    dst = str(tmp_path / "backup")
    GensStore(f"{dst}/gens").write("draft", "d0", metadata=META, raw="r")
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)  # hidden entries do not count
    report = sync(empty, dst, allow_empty_source=True, delete=True, max_delete=2)
    assert report.ok and report.deleted == 2 and snapshot(dst) == {}
    (empty / "notes.txt").write_text("x")
    with pytest.raises(NotADataRoot, match=r"holds neither gens/ nor cohorts/ \(it holds notes"):
        sync(empty, dst, allow_empty_source=True)


def test_root_kind_and_overlap_are_pure() -> None:
    assert root_kind(["gens", "x"], name="essay") == "data"
    assert root_kind(["draft"]) == "gens"
    assert root_kind(["e1", "e2"], name="essay") == "stage"
    assert root_kind(["e1"], name="backup") == "other"  # the name does not tell: a probe does
    assert root_kind([".tmp"], name="essay") == "other"
    assert root_kind(["c1"], name="cohorts") == "cohorts"
    assert root_kind([], name="d1", files=["metadata.json", "raw.txt"]) == "generation"
    assert root_kind([], name="d1", files=["notes.txt"]) == "other"
    assert root_kind([], name="d1", files=["metadata.json"]) == "other"  # and no text
    assert root_kind([], name="d1", files=["metadata.json", "parsed.txt"]) == "generation"
    assert inner_folder_kind(["raw.txt", "metadata.json"]) == "stage"
    assert inner_folder_kind(["raw.txt"]) == "stage"  # an incomplete generation is one too
    assert inner_folder_kind(["membership.csv"]) == "cohorts"
    assert inner_folder_kind(["x"]) == "other"
    assert roots_overlap("/a/b", "/a/b/") == "same"
    assert roots_overlap("/a/b/c/..", "/a/b") == "same"
    assert roots_overlap("/a/b/c", "/a/b") == "inside"
    assert roots_overlap("/a/b", "/a/b/c") == "contains"
    assert roots_overlap("/a/b", "/a/bc") is None
    assert roots_overlap("bucket/x", "bucket/x/gens") == "contains"
