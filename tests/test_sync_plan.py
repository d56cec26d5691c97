"""The sync planner and comparison rules, with no storage at all."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gens_fs.backends import FileInfo
from gens_fs.backends.file_table import FileTable
from gens_fs.layout import is_hidden
from gens_fs.listing import Files
from gens_fs.sync import plan
from gens_fs.sync.compare import hashes_needed, unchanged
from gens_fs.sync.plan import Diff, SyncPlan, delete_refusal
from gens_fs.sync.scope import SyncScope, close_over_parents

PARENT = {"essay": "draft", "evaluation": "essay"}


def make_plan(src: Files, dst: Files, scope: SyncScope, **options: Any) -> SyncPlan:
    """The planner on two listings: their :class:`Diff` first, as ``plan_sync`` does."""
    return plan.make_plan(Diff.of(src, dst, scope), **options)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def entry(data: bytes, *, etag: bool = False) -> FileInfo:
    return FileInfo(len(data), md5(data).upper() if etag else md5(data))


def generation(
    stage: str, gen_id: str, parent: str = "", *, extra: bool = False
) -> dict[str, FileInfo]:
    base = f"gens/{stage}/{gen_id}"
    files = {
        f"{base}/raw.txt": entry(f"raw {gen_id}".encode()),
        f"{base}/parsed.txt": entry(f"parsed {gen_id}".encode()),
        f"{base}/metadata.json": entry(f'{{"parent_gen_id": "{parent}"}}'.encode()),
    }
    if extra:
        files[f"{base}/raw_metadata.json"] = entry(b"{}")
    return files


def lineage(i: int) -> dict[str, FileInfo]:
    return {
        **generation("draft", f"d{i}"),
        **generation("essay", f"e{i}", f"d{i}", extra=True),
        **generation("evaluation", f"v{i}", f"e{i}"),
    }


def parents_of(n: int) -> dict[tuple[str, str], str | None]:
    out: dict[tuple[str, str], str | None] = {}
    for i in range(n):
        out["essay", f"e{i}"] = f"d{i}"
        out["evaluation", f"v{i}"] = f"e{i}"
    return out


def store(n: int) -> dict[str, FileInfo]:
    out: dict[str, FileInfo] = {"cohorts/c1/membership.csv": entry(b"stage,gen_id\n")}
    for i in range(n):
        out.update(lineage(i))
    return out


def commit_stages(plan: SyncPlan) -> list[list[str]]:
    return [[c.relpath.split("/")[1] for c in phase] for phase in plan.commits]


# -- comparison ----------------------------------------------------------------------------


def test_unchanged_needs_equal_size_and_hash() -> None:
    a, b = entry(b"aaaa"), entry(b"bbbb")
    assert unchanged(a, entry(b"aaaa"))
    assert not unchanged(a, b)  # same size, other bytes: caught
    assert not unchanged(a, entry(b"aaaaa"))
    assert unchanged(entry(b"aaaa"), entry(b"aaaa", etag=True))  # local MD5 vs S3 ETag
    assert not unchanged(entry(b"aaaa"), entry(b"bbbb", etag=True))


def test_multipart_etags_compare_by_size_only() -> None:
    multipart = FileInfo(4, "0123abcd-2")
    assert unchanged(entry(b"aaaa"), multipart)
    assert unchanged(FileInfo(4, "x-2"), FileInfo(4, "x-2"))
    assert not unchanged(FileInfo(4, "x-2"), FileInfo(5, "x-2"))


def test_hashes_needed_only_where_sizes_match() -> None:
    src = {"a": FileInfo(1), "b": FileInfo(2), "c": FileInfo(3), "d": FileInfo(4, "x-2")}
    dst = {"a": FileInfo(1, "e1"), "b": FileInfo(5, "e2"), "d": FileInfo(4)}
    need_src, need_dst = hashes_needed(src, dst, src_reads=True, dst_reads=False, checksum=False)
    assert (need_src, need_dst) == (["a"], [])
    need_src, need_dst = hashes_needed(src, dst, src_reads=True, dst_reads=False, checksum=True)
    assert (need_src, need_dst) == (["a", "d"], ["d"])
    # local to local: both sides hashed, mtimes never consulted
    assert hashes_needed(
        {"a": FileInfo(1)}, {"a": FileInfo(1)}, src_reads=True, dst_reads=True,
        checksum=False,
    ) == (["a"], ["a"])  # fmt: skip


# -- plan: order, skip, scope --------------------------------------------------------------


def test_initial_plan_orders_files_then_commits_by_lineage_then_cohorts() -> None:
    src = store(2)
    plan = make_plan(src, {}, SyncScope.build(), parents=parents_of(2))
    assert all(not c.relpath.endswith("/metadata.json") for c in plan.files)
    assert commit_stages(plan) == [["draft"] * 2, ["essay"] * 2, ["evaluation"] * 2]
    assert [c.relpath for c in plan.cohort_files] == ["cohorts/c1/membership.csv"]
    assert sorted(c.relpath for c in plan.copies) == sorted(src)
    # a new essay waits for its draft's commit in this plan
    essay = plan.commits[1][0]
    assert essay.after == ("draft", "d0")
    assert plan.skipped == 0 and not plan.held and not plan.deletes


def test_edits_to_committed_generations_commit_in_one_phase_and_new_children_after() -> None:
    dst = store(3)
    src = dict(dst)
    for key in ("draft/d0", "essay/e1", "evaluation/v2"):  # edited metadata, every stage
        src[f"gens/{key}/metadata.json"] = entry(f"edited {key}".encode())
    src.update(lineage(3))  # and a new lineage: its essay waits for its draft, and so on
    plan = make_plan(src, dst, SyncScope.build(), parents=parents_of(4))
    assert commit_stages(plan) == [
        ["draft", "draft", "essay", "evaluation"],
        ["essay"],
        ["evaluation"],
    ]
    assert [c.after for c in plan.commits[0]] == [None] * 4
    assert [c.after for c in plan.commits[1]] == [("draft", "d3")]
    assert [c.after for c in plan.commits[2]] == [("essay", "e3")]


def test_unchanged_files_are_skipped_and_a_same_size_edit_is_copied() -> None:
    src = store(2)
    dst = dict(src)
    assert not make_plan(src, dst, SyncScope.build(), parents={}).copies
    edited = dict(src)
    edited["gens/essay/e1/raw.txt"] = entry(b"raw E1")  # same size as b"raw e1"
    assert edited["gens/essay/e1/raw.txt"].size == src["gens/essay/e1/raw.txt"].size
    plan = make_plan(edited, dst, SyncScope.build(), parents={})
    assert [c.relpath for c in plan.copies] == ["gens/essay/e1/raw.txt"]
    assert plan.skipped == len(src) - 1


def test_no_op_needs_no_metadata_reads() -> None:
    src = store(3)
    scope = SyncScope.build()
    assert Diff.of(src, dict(src), scope).parents_to_read() == []
    assert Diff.of(src, {}, scope).parents_to_read() == sorted(
        r for r in src if r.endswith("/metadata.json") and "/draft/" not in r
    )


def test_stage_scope_leaves_cohorts_and_other_stages_out() -> None:
    scope = SyncScope.build(["essay"])
    assert scope.roots() == ("gens/essay",)
    assert scope.context_roots() == ("gens/draft",)
    plan = make_plan(store(1), {}, scope, parents=parents_of(1))
    assert plan.copies == ()  # no draft at the destination: essays are held, not orphaned
    assert [h.relpath for h in plan.held] == ["gens/essay/e0"]
    with_drafts = {r: e for r, e in store(1).items() if "/draft/" in r}
    plan = make_plan(store(1), with_drafts, scope, parents=parents_of(1))
    assert {c.relpath.split("/")[1] for c in plan.copies} == {"essay"}
    # its parent is committed at the destination: it waits for no other commit
    assert commit_stages(plan) == [["essay"]]
    assert plan.commits[0][0].after is None and not plan.held


def test_cohort_scope_is_the_closure_and_its_membership() -> None:
    closure = close_over_parents(
        [("evaluation", "v1")], lambda keys: {k: parents_of(3).get(k) for k in keys}
    )
    assert closure == {("evaluation", "v1"), ("essay", "e1"), ("draft", "d1")}
    scope = SyncScope.build(cohort="c1", generations=closure)
    assert scope.roots() == ("cohorts/c1", "gens/draft", "gens/essay", "gens/evaluation")
    plan = make_plan(store(3), {}, scope, parents=parents_of(3))
    gens = {c.relpath.split("/")[2] for c in plan.copies if c.relpath.startswith("gens/")}
    assert gens == {"v1", "e1", "d1"}
    assert [c.relpath for c in plan.cohort_files] == ["cohorts/c1/membership.csv"]


def test_broken_lineage_is_held_with_its_descendants() -> None:
    src = {**generation("essay", "e0", "gone"), **generation("evaluation", "v0", "e0")}
    plan = make_plan(src, {}, SyncScope.build(), parents=parents_of(1) | {("essay", "e0"): "gone"})
    assert [h.relpath for h in plan.held] == ["gens/essay/e0", "gens/evaluation/v0"]
    assert plan.copies == ()


# -- deletes ---------------------------------------------------------------------------------


def test_deletes_children_first_metadata_first_and_only_in_scope() -> None:
    src = store(1)
    dst = {**store(2), "cohorts/old/membership.csv": entry(b"x")}
    plan = make_plan(src, dst, SyncScope.build(), parents=parents_of(1), delete=True)
    names = [[p.split("/")[-2] + "/" + p.split("/")[-1] for p in ph] for ph in plan.deletes]
    assert names[:3] == [["v1/metadata.json"], ["e1/metadata.json"], ["d1/metadata.json"]]
    assert sorted(names[3]) == sorted(
        ["old/membership.csv", "d1/parsed.txt", "d1/raw.txt", "e1/parsed.txt", "e1/raw.txt",
         "e1/raw_metadata.json", "v1/parsed.txt", "v1/raw.txt"]
    )  # fmt: skip
    drafts_only = make_plan(src, dst, SyncScope.build(["draft"]), parents={}, delete=True)
    assert {p.split("/")[1] for p in drafts_only.delete_paths} == {"draft"}
    assert not make_plan(src, dst, SyncScope.build(), parents={}).deletes  # delete=False


def test_max_delete_refuses_before_anything() -> None:
    plan = make_plan({}, store(1), SyncScope.build(), parents={}, delete=True)
    assert delete_refusal(plan, len(plan.delete_paths)) is None  # an explicit max allows all
    refusal = delete_refusal(plan, len(plan.delete_paths) - 1)
    assert refusal is not None and "nothing was changed" in refusal


# -- properties ------------------------------------------------------------------------------

keys = st.lists(st.integers(0, 5), unique=True, max_size=6)


@settings(max_examples=60, deadline=None)
@given(src_ids=keys, dst_ids=keys, edited=keys, delete=st.booleans())
def test_plan_invariants(
    src_ids: list[int], dst_ids: list[int], edited: list[int], delete: bool
) -> None:
    """Whatever the two sides hold: every commit comes after its generation's files and
    after its parent's commit, the plan makes dst equal src in scope, deletes only touch
    files src lacks."""
    src: dict[str, FileInfo] = {}
    for i in src_ids:
        src.update(lineage(i))
    dst: dict[str, FileInfo] = {}
    for i in dst_ids:
        dst.update(lineage(i))
    for i in edited:
        if f"gens/draft/d{i}/raw.txt" in src:
            src[f"gens/draft/d{i}/raw.txt"] = entry(f"RAW d{i}".encode())
    plan = make_plan(src, dst, SyncScope.build(), parents=parents_of(6), delete=delete)
    position = {c.relpath: n for n, phase in enumerate(plan.copy_phases) for c in phase}
    for phase_no, phase in enumerate(plan.commits, start=1):
        for commit in phase:
            stage, gen_id = commit.generation or ("", "")
            for relpath, n in position.items():
                if relpath.startswith(f"gens/{stage}/{gen_id}/") and relpath != commit.relpath:
                    assert n < phase_no
            if commit.after is not None:
                assert position[f"gens/{commit.after[0]}/{commit.after[1]}/metadata.json"] < (
                    phase_no
                )
    result = {r: e for r, e in dst.items() if r not in plan.delete_paths}
    result.update({c.relpath: src[c.relpath] for c in plan.copies})
    if delete:
        assert result == src
    else:
        assert all(result[r] == e for r, e in src.items())
    assert not set(plan.delete_paths) & set(src)


scopes = st.one_of(
    st.builds(
        lambda stages: SyncScope.build(stages),
        st.lists(st.sampled_from(["draft", "essay", "evaluation"]), unique=True, max_size=3),
    ),
    st.builds(
        lambda ids: SyncScope.build(
            cohort="c1",
            generations=close_over_parents(
                [("evaluation", f"v{i}") for i in ids],
                lambda ks: {k: parents_of(6).get(k) for k in ks},
            ),
        ),
        keys,
    ),
)


@settings(max_examples=80, deadline=None)
@given(src_ids=keys, dst_ids=keys, scope=scopes)
def test_plan_never_leaves_its_scope(
    src_ids: list[int], dst_ids: list[int], scope: SyncScope
) -> None:
    """Copies and deletes stay inside the scope; a cohort's closure holds every ancestor."""
    src = store(0)
    for i in src_ids:
        src.update(lineage(i))
    dst = {"cohorts/c1/membership.csv": entry(b"old")}
    for i in dst_ids:
        dst.update(lineage(i))
    dst["gens/draft/stray/raw.txt"] = entry(b"stray")
    plan = make_plan(src, dst, scope, parents=parents_of(6), delete=True)
    touched = [c.relpath for c in plan.copies] + list(plan.delete_paths)
    assert all(scope.contains(r) for r in touched)
    if scope.generations is not None:
        for stage, gen_id in scope.generations:
            parent = parents_of(6).get((stage, gen_id))
            if parent is not None:
                assert (PARENT[stage], parent) in scope.generations


# Paths of every shape a listing may hold: generation files, strays, hidden entries,
# cohort files, folders inside generations, ids that are not gen_ids.
_PARTS = st.sampled_from(["gens", "cohorts", "draft", "essay", "evaluation", "d1", "d1.x", "c1"])
# ("-x.txt" sorts before a hidden name, "" before every other name of its folder)
_NAMES = st.sampled_from(["raw.txt", "membership.csv", ".raw.txt.tmp", "", "-x.txt", "x/y", ".h"])
_STAGES = st.sampled_from(["draft", "essay", "evaluation", "d1"])
RELPATHS = st.lists(
    st.builds(lambda parts, name: "/".join([*parts, name]), st.lists(_PARTS, max_size=4), _NAMES)
    | st.builds("gens/{}/{}/{}".format, _STAGES, st.sampled_from(["d1", "d1.x", "e"]), _NAMES),
    max_size=30,
)
SCOPES = st.sampled_from(
    [
        SyncScope.build(),
        SyncScope.build(["essay"]),
        SyncScope.build(cohort="c1", generations=[("draft", "d1"), ("essay", "d1.x")]),
        SyncScope.build(generations=[("draft", "d1")]),
    ]
)


@given(RELPATHS, SCOPES)
@example(["gens/draft/d1/", "gens/draft/d1/raw.txt"], SyncScope.build())
@example(["gens/draft/d1/-x.txt", "gens/draft/d1/.h", "gens/draft/d1/raw.txt"], SyncScope.build())
def test_the_scope_filter_is_contains_on_every_path(relpaths: list[str], scope: SyncScope) -> None:
    """``filter`` judges a generation's folder once for its files (they come together in
    path order): the same files as ``contains`` asked for each."""
    files = {relpath: FileInfo(1) for relpath in relpaths}
    assert dict(scope.filter(files)) == {r: i for r, i in files.items() if scope.contains(r)}


@given(st.text(st.sampled_from("ab./"), max_size=8))
def test_is_hidden_is_a_part_starting_with_a_dot_or_empty(relpath: str) -> None:
    parts = relpath.split("/")
    assert is_hidden(relpath) == any(not part or part.startswith(".") for part in parts)


@given(st.lists(st.sampled_from(["0" * 32, "F" * 32, "1" * 32 + "-2", None]), max_size=4))
def test_hashes_needed_when_every_file_has_an_md5(hashes: list[str | None]) -> None:
    """The pass is skipped only when every row of both tables has an MD5: a multipart ETag,
    an MD5 in capitals (not kept as one) or no hash still has the pass decide."""
    src = FileTable.of({f"gens/draft/d{n}/raw.txt": FileInfo(1, h) for n, h in enumerate(hashes)})
    dst = FileTable.of({f"gens/draft/d{n}/raw.txt": FileInfo(1, "0" * 32) for n in range(4)})
    expected = [r for r, info in src.items() if info.hash is None or "-" in info.hash]
    assert hashes_needed(src, dst, src_reads=True, dst_reads=False, checksum=False)[0] == expected
