"""Selection (issue 14): ``--include``/``--exclude`` globs over gen_ids, the last matching
rule deciding, and ``--where KEY=VALUE`` over metadata, on ``ls``, ``check`` and ``sync``
(with the lineage closure: a selected evaluation brings its essay and draft).

The rules' meaning is tested pure (``gens_fs.selection``); each command through the CLI as
a real process; the requests ``--where`` costs against the counting S3 endpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_options

from gens_fs import DataRoot, MembershipRow, Selection, check, list_generations, sync
from gens_fs.errors import InvalidSelection
from gens_fs.selection import selection_of
from gens_fs.testing.invariants import snapshot
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from tests.process import gens_fs, one_error_line

META = {"task_id": "t", "template_id": "essay-v1", "model_id": "m1"}


def write_store(root: str, options: dict[str, Any] | None = None) -> DataRoot:
    """Two lineages d1 -> e1 -> v1, v12 (model m1) and d2 -> e2 -> v2 written by the original
    pipeline (``llm_model_id: m2``, no ``model_id``), an evaluation with a number and a
    boolean in its metadata, and cohort c1 listing v1 and e2."""
    data_root = DataRoot(root, storage_options=options)
    store = data_root.store()
    store.write("draft", "d1", metadata=META, raw="d1", prompt="p")
    store.write("essay", "e1", metadata={**META, "parent_gen_id": "d1"}, raw="e1", prompt="p")
    for gen_id, extra in (("v1", {"score": 7, "final": True}), ("v12", {"score": 3})):
        meta = {**META, "template_id": "judge", "parent_gen_id": "e1", **extra}
        store.write("evaluation", gen_id, metadata=meta, raw=gen_id)
    legacy = {"template_id": "essay-v1", "llm_model_id": "m2"}
    data_root.backend.write_many(  # the original pipeline's files: the store would refuse them
        {
            store.path(stage, gen_id, name): data
            for stage, gen_id, parent in (
                ("draft", "d2", None),
                ("essay", "e2", "d2"),
                ("evaluation", "v2", "e2"),
            )
            for name, data in (
                ("raw.txt", gen_id.encode()),
                ("metadata.json", json.dumps({**legacy, "parent_gen_id": parent}).encode()),
            )
        }
    )
    data_root.write_membership(
        "c1",
        [MembershipRow(stage="evaluation", gen_id="v1"), MembershipRow(stage="essay", gen_id="e2")],
    )
    return data_root


def keys(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['stage']}/{r['gen_id']}" for r in rows]


# -- the rules, pure -----------------------------------------------------------------------


def test_the_last_matching_rule_decides() -> None:
    def picked(*rules: tuple[str, str]) -> list[str]:
        chosen = Selection.ordered(rules)  # type: ignore[arg-type]
        assert chosen is not None
        return [g for g in ("e1", "e12", "e2", "v1") if chosen.picks_id(g)]

    assert picked(("include", "e*"), ("exclude", "e1*")) == ["e2"]
    assert picked(("exclude", "e1*"), ("include", "e*")) == ["e1", "e12", "e2"]
    assert picked(("include", "e*"), ("exclude", "e1*"), ("include", "e12")) == ["e12", "e2"]
    assert picked(("exclude", "e1")) == ["e12", "e2", "v1"]  # excludes only: the rest stays
    assert picked(("include", "v?")) == ["v1"]  # an include: what matches nothing is out
    assert picked(("include", "e[!1]")) == ["e2"]
    # separate lists (the library's include=/exclude=): an exclude wins over an include
    chosen = Selection.of(include=["e*"], exclude=["e1*"])
    assert chosen is not None and [g for g in ("e1", "e2") if chosen.picks_id(g)] == ["e2"]
    assert Selection.of() is None and selection_of() is None


def test_where_reads_top_level_keys_with_model_id_as_llm_model_id() -> None:
    chosen = Selection.of(where=["model_id=m2"])
    assert chosen is not None
    assert chosen.holds({"llm_model_id": "m2"}) and chosen.holds({"model_id": "m2"})
    assert not chosen.holds({"model_id": "m1", "llm_model_id": "m2"})  # model_id wins
    assert not chosen.holds({}) and not chosen.holds(None)
    typed = Selection.of(where={"score": "7", "final": "true", "note": "null"})
    assert typed is not None
    assert typed.holds({"score": 7, "final": True, "note": None})
    assert not typed.holds({"score": "07", "final": True, "note": None})
    assert Selection.of(where=["score="]).holds({"score": ""})  # type: ignore[union-attr]
    for bad in ({"where": ["score"]}, {"where": ["=3"]}, {"include": [""]}, {"exclude": ["a/b"]}):
        with pytest.raises(InvalidSelection):
            Selection.of(**bad)  # type: ignore[arg-type]


# -- ls and check --------------------------------------------------------------------------


def test_ls_include_exclude_order_matters_on_the_command_line(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    write_store(root)
    done = gens_fs("ls", root, "--include", "v*", "--exclude", "v1*", "--json")
    assert done.returncode == 0, done.stderr
    assert keys(json.loads(done.stdout)) == ["evaluation/v2"]
    done = gens_fs("ls", root, "--exclude", "v1*", "--include", "v*", "--json")
    assert keys(json.loads(done.stdout)) == ["evaluation/v1", "evaluation/v12", "evaluation/v2"]
    done = gens_fs("ls", root, "--include", "v*", "--exclude", "v1*", "--include", "v12", "--json")
    assert keys(json.loads(done.stdout)) == ["evaluation/v12", "evaluation/v2"]
    # with a stage and a cohort: the selection narrows what they give
    done = gens_fs("ls", root, "--cohort", "c1", "--exclude", "v*", "--json")
    assert keys(json.loads(done.stdout)) == ["essay/e2"]
    assert (
        list_generations(root, stages=["essay"], include=["e*"], exclude=["e1"])[0].gen_id == "e2"
    )


def test_ls_and_check_where(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    write_store(root)
    done = gens_fs("ls", root, "--where", "model_id=m2", "--json")
    assert keys(json.loads(done.stdout)) == ["draft/d2", "essay/e2", "evaluation/v2"]
    both = gens_fs("ls", root, "--where", "template_id=judge", "--where", "score=7", "--json")
    assert keys(json.loads(both.stdout)) == ["evaluation/v1"]
    human = gens_fs("ls", root, "--where", "final=true")
    assert human.returncode == 0 and human.stdout.splitlines()[-1] == "1 generation"

    done = gens_fs("check", root, "--where", "llm_model_id=m2", "--json")
    report = json.loads(done.stdout)
    assert report["summary"]["generations"] == 3
    assert {f["gen_id"] for f in report["findings"]} <= {"d2", "e2", "v2"}
    assert check(root, include=["v1"]).summary.generations == 1


def test_where_reads_each_candidates_metadata_once_batched(
    s3_middleware: S3Middleware, bucket: str, s3_options: dict[str, Any]
) -> None:
    root = f"s3://{bucket}/data"
    write_store(root, s3_options)
    through = cli_options(s3_storage_options(s3_middleware.endpoint_url))
    s3_middleware.reset_counts()
    done = gens_fs("ls", root, "--stage", "evaluation", "--where", "score=7", "--json", *through)
    assert done.returncode == 0, done.stderr
    assert keys(json.loads(done.stdout)) == ["evaluation/v1"]
    # the root's first level, one listing of the stage, one GET per metadata.json (3)
    assert s3_middleware.wait_idle() and s3_middleware.counts() == {"LIST": 2, "GET": 3}
    s3_middleware.reset_counts()
    done = gens_fs("ls", root, "--stage", "evaluation", "--include", "v1", "--json", *through)
    assert keys(json.loads(done.stdout)) == ["evaluation/v1"]
    assert s3_middleware.wait_idle() and s3_middleware.counts() == {"LIST": 2, "GET": 1}


def test_selection_mistakes_are_one_line(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    write_store(root)
    assert "expected KEY=VALUE" in one_error_line(gens_fs("ls", root, "--where", "model_id"))
    assert "needs a glob" in one_error_line(gens_fs("check", root, "--include", ""))
    line = one_error_line(gens_fs("sync", root, str(tmp_path / "b"), "--exclude", "essay/e1"))
    assert "use --stage" in line


# -- sync: the lineage closure -------------------------------------------------------------


def test_sync_selected_evaluation_brings_its_essay_and_draft(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src)
    done = gens_fs("sync", src, dst, "--include", "v1", "--json")
    assert done.returncode == 0, done.stderr
    copied = snapshot(dst)
    assert {path.rsplit("/", 1)[0] for path in copied} == {
        "gens/draft/d1", "gens/essay/e1", "gens/evaluation/v1",
    }  # fmt: skip
    assert all(copied[p] == snapshot(src)[p] for p in copied)  # byte for byte
    # --where on the original's llm_model_id, one stage: its ancestors come along
    other = str(tmp_path / "other")
    done = gens_fs("sync", src, other, "--stage", "evaluation", "--where", "model_id=m2")
    assert done.returncode == 0, done.stderr
    assert {p.rsplit("/", 1)[0] for p in snapshot(other)} == {
        "gens/draft/d2", "gens/essay/e2", "gens/evaluation/v2",
    }  # fmt: skip
    assert check(other).ok


def test_sync_selection_within_a_cohort_leaves_its_membership_out(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src)
    dry = gens_fs("sync", src, dst, "--cohort", "c1", "--exclude", "v*", "--dry-run", "--json")
    planned = [a["path"] for a in json.loads(dry.stdout)["actions"]]
    assert not any(p.startswith(("cohorts/", "gens/evaluation/")) for p in planned)
    assert {p.rsplit("/", 1)[0] for p in planned} == {"gens/draft/d2", "gens/essay/e2"}
    done = gens_fs("sync", src, dst, "--cohort", "c1", "--exclude", "v*")
    assert done.returncode == 0, done.stderr
    assert sorted(snapshot(dst)) == sorted(planned)
    # a resync of the same selection copies nothing; --delete stays inside it
    again = sync(src, dst, cohort="c1", exclude=["v*"], delete=True)
    assert again.ok and again.copied == 0 and again.deleted == 0


def test_sync_selection_with_delete_deletes_what_it_picks_that_the_source_lost(
    tmp_path: Path,
) -> None:
    """A selection applies to both sides: a generation the globs pick (or a ``where``
    picks, judged on the destination's metadata) that the source no longer has at all is
    deleted; one they do not pick stays."""
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_store(src)
    assert sync(src, dst).ok
    for gen_id in ("v1", "v12"):
        shutil.rmtree(f"{src}/gens/evaluation/{gen_id}")
    dry = gens_fs(
        "sync", src, dst, "--include", "v1", "--delete", "--max-delete", "2", "--dry-run", "--json"
    )
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)["actions"]
    assert {a["path"] for a in planned if a["action"] == "delete"} == {
        "gens/evaluation/v1/raw.txt", "gens/evaluation/v1/metadata.json",
    }  # fmt: skip
    kept = sync(src, dst, where={"score": "7"}, delete=True, max_delete=10)  # v1's, at dst
    assert kept.ok and kept.deleted == 2
    assert not any(p.startswith("gens/evaluation/v1/") for p in snapshot(dst))
    assert any(p.startswith("gens/evaluation/v12/") for p in snapshot(dst))  # not picked


def test_sync_selection_over_s3_reads_metadata_in_batches(
    s3_middleware: S3Middleware, bucket: str, s3_options: dict[str, Any], tmp_path: Path
) -> None:
    src = f"s3://{bucket}/data"
    write_store(src, s3_options)
    through = s3_storage_options(s3_middleware.endpoint_url)
    s3_middleware.reset_counts()
    report = sync(src, str(tmp_path / "dst"), src_options=through, where={"score": "3"})
    assert report.ok and report.copied == 8  # v12 (2 files), e1 and d1 (3 files each)
    assert s3_middleware.wait_idle()
    counts = s3_middleware.counts()
    # every generation's metadata.json once (7, one batch: --where), which the closure and
    # the copy reuse; then the copy reads the other 5 files (raw.txt, prompt.txt)
    gets = [r.path.split("/data/")[1] for r in s3_middleware.log if r.kind == "GET"]
    assert len(gets) == len(set(gets)) == 7 + 5 and "HEAD" not in counts
    assert sum(p.endswith("/metadata.json") for p in gets) == 7
