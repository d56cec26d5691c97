"""``gens-fs ls | show | check | stats`` on local disk and S3 (moto server), over a data root
seeded with one case of each finding: JSON parsed and checked, exit codes, and mistakes that
print one line and exit 2 without a traceback (run as a real process, ``python -m gens_fs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gens_fs.cli import app
from tests.process import gens_fs
from tests.seed import EXPECTED, seed

pytestmark = pytest.mark.parametrize("backend_name", ["local", "s3"])
REPO = Path(__file__).resolve().parents[1]


def option_args(options: dict[str, Any], prefix: str = "") -> list[str]:
    """Storage options as ``-o key=value`` arguments (dotted keys for nested ones)."""
    args: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            args += option_args(value, f"{prefix}{key}.")
        else:
            args += ["-o", f"{prefix}{key}={json.dumps(value)}"]
    return args


@pytest.fixture
def root(data_root_url: str, storage_options: dict[str, Any]) -> str:
    seed(data_root_url, storage_options)
    return data_root_url


@pytest.fixture
def run(storage_options: dict[str, Any]) -> Iterator[Any]:
    """``run("ls", ROOT, ...)``: the app in-process, storage options passed as ``-o``."""
    runner = CliRunner()

    def invoke(command: str, root: str, *args: str) -> Any:
        return runner.invoke(app, [command, root, *args, *option_args(storage_options)])

    yield invoke


def as_json(result: Any) -> Any:
    assert "Traceback" not in result.output
    return json.loads(result.stdout)


def test_ls(root: str, run: Any) -> None:
    result = run("ls", root, "--json")
    assert result.exit_code == 0
    rows = {(r["stage"], r["gen_id"]): r for r in as_json(result)}
    assert len(rows) == 10
    e1 = rows["essay", "e1"]
    assert (e1["parent_gen_id"], e1["template_id"], e1["model_id"]) == ("d1", "tpl-a", "model-x")
    assert e1["sizes"].pop("metadata.json") > 0
    assert e1["sizes"] == {"raw.txt": 8, "parsed.txt": 11, "prompt.txt": 10}
    assert rows["draft", "d-partial"]["committed"] is False
    assert rows["draft", "d-badmeta"]["metadata_error"].endswith(
        "not valid UTF-8 JSON (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1))"
    )
    only_c2 = as_json(run("ls", root, "--cohort", "c2", "--json"))
    assert [(r["stage"], r["gen_id"]) for r in only_c2] == [("draft", "d1")]
    essays = as_json(run("ls", root, "--stage", "essay", "--json"))
    assert {r["gen_id"] for r in essays} == {"e1", "e-noprompt", "e-orphan"}
    human = run("ls", root, "-s", "evaluation")
    assert human.exit_code == 0 and "v-noparent" in human.stdout and "2 generations" in human.stdout


def test_check_exit_codes_and_json(root: str, run: Any) -> None:
    result = run("check", root, "--json")
    assert result.exit_code == 1
    report = as_json(result)
    assert report["ok"] is False
    assert {(f["kind"], f["stage"], f["gen_id"]) for f in report["findings"]} == EXPECTED
    assert report["summary"]["errors"] == 5
    clean = run("check", root, "--cohort", "c2", "--json")
    assert clean.exit_code == 0 and as_json(clean)["ok"] is True
    human = run("check", root)
    assert human.exit_code == 1
    assert "PROBLEMS FOUND" in human.stdout
    assert all(kind in human.stdout for kind, _, _ in EXPECTED)
    warnings_only = run("check", root, "--stage", "draft", "-s", "essay", "--cohort", "c2")
    assert warnings_only.exit_code == 0 and warnings_only.stdout.startswith("OK: checked 1")


def test_stats(root: str, run: Any) -> None:
    result = run("stats", root, "--json")
    assert result.exit_code == 0
    stages = as_json(result)["stages"]
    assert stages["draft"]["generations"] == 5
    assert stages["draft"]["incomplete"] == 1
    assert stages["draft"]["by_model"] == {"model-x": 2, "model-y": 1}
    assert stages["evaluation"]["by_template"] == {"tpl-a": 1, "tpl-b": 1}
    assert stages["essay"]["bytes"] > 0
    assert "by model and template" in run("stats", root).stdout


def test_show(root: str, run: Any) -> None:
    one = as_json(run("show", root, "essay", "e1", "--json"))
    assert (one["parsed_text"], one["metadata"]["parent_gen_id"]) == ("parsed text", "d1")
    chain = as_json(run("show", root, "evaluation", "v1", "--lineage", "--json"))
    assert [(g["stage"], g["gen_id"]) for g in chain] == [
        ("draft", "d1"),
        ("essay", "e1"),
        ("evaluation", "v1"),
    ]
    parsed = run("show", root, "essay", "e1", "--field", "parsed")
    assert (parsed.exit_code, parsed.stdout) == (0, "parsed text")  # the exact bytes
    meta = run("show", root, "evaluation", "v1", "-f", "metadata")
    assert json.loads(meta.stdout)["template_id"] == "tpl-b"
    prompts = run("show", root, "evaluation", "v1", "--lineage", "-f", "prompt", "--json")
    assert [p["prompt"] for p in as_json(prompts)] == ["the prompt", "the prompt", None]
    assert prompts.exit_code == 1
    assert prompts.stderr == "gens-fs: error: evaluation v1 has no prompt.txt\n"
    no_prompt = run("show", root, "evaluation", "v1", "--field", "prompt")
    assert no_prompt.exit_code == 1 and no_prompt.stdout == ""
    assert no_prompt.stderr == "gens-fs: error: evaluation v1 has no prompt.txt\n"
    human = run("show", root, "essay", "e1", "--lineage")
    assert human.exit_code == 0 and "draft d1" in human.stdout and "essay e1" in human.stdout


# -- as a real process ----------------------------------------------------------------------


def test_lineage_with_a_missing_parent_shows_what_exists_then_the_gap(
    root: str, aws_env: dict[str, str]
) -> None:
    gap = (
        "gens-fs: error: parent draft d-gone of essay e-orphan is missing (no "
        f"{root}/gens/draft/d-gone/metadata.json): restore or regenerate the draft\n"
    )
    human = gens_fs("show", root, "essay", "e-orphan", "--lineage", env=aws_env)
    assert (human.returncode, human.stderr) == (1, gap)
    assert human.stdout.startswith("essay e-orphan\n") and "parent_gen_id │ d-gone" in human.stdout
    machine = gens_fs("show", root, "essay", "e-orphan", "--lineage", "--json", env=aws_env)
    assert (machine.returncode, machine.stderr) == (1, gap)
    assert [(g["stage"], g["gen_id"]) for g in json.loads(machine.stdout)] == [
        ("essay", "e-orphan")
    ]
    field = gens_fs("show", root, "essay", "e-orphan", "--lineage", "-f", "raw", env=aws_env)
    assert (field.returncode, field.stdout, field.stderr) == (1, "== essay e-orphan ==\nr\n", gap)
    alone = gens_fs("show", root, "essay", "e-orphan", env=aws_env)
    assert alone.returncode == 0 and alone.stderr == ""


def test_ls_of_a_cohort_shows_members_without_a_folder(root: str, aws_env: dict[str, str]) -> None:
    listed = gens_fs("ls", root, "--cohort", "c1", "--json", env=aws_env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["gen_id"]: r for r in json.loads(listed.stdout)}
    assert len(rows) == 10
    assert {k: rows["e-gone"][k] for k in ("stage", "state", "committed", "sizes")} == {
        "stage": "essay", "state": "missing", "committed": False, "sizes": {},
    }  # fmt: skip
    assert {r["state"] for g, r in rows.items() if g != "e-gone"} == {
        "ok", "incomplete", "invalid_metadata",
    }  # fmt: skip
    human = gens_fs("ls", root, "-c", "c1", "-s", "essay", env=aws_env).stdout
    gone = next(line for line in human.splitlines() if "e-gone" in line)
    assert "missing" in gone and "-/-/-" in gone
    assert human.splitlines()[-1] == (
        "4 generations (1 missing: in cohort c1's membership but with no folder)"
    )


def test_stats_of_chosen_stages(root: str, aws_env: dict[str, str]) -> None:
    done = gens_fs("stats", root, "--stage", "evaluation", "-s", "draft", "--json", env=aws_env)
    assert done.returncode == 0, done.stderr
    stages = json.loads(done.stdout)["stages"]
    assert list(stages) == ["draft", "evaluation"]  # pipeline order
    assert stages["evaluation"]["by_model"] == {"model-x": 2}
    human = gens_fs("stats", root, "-s", "essay", env=aws_env).stdout
    assert "│ essay" in human and "│ draft" not in human and "│ evaluation" not in human


# -- mistakes, as a real process: one line on stderr, exit 2, no traceback ------------------


def test_process_check_json_and_exit_code(root: str, aws_env: dict[str, str]) -> None:
    done = gens_fs("check", root, "--json", env=aws_env)
    assert done.returncode == 1, done.stderr
    assert {(f["kind"], f["stage"], f["gen_id"]) for f in json.loads(done.stdout)["findings"]} == (
        EXPECTED
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ls", "{root}", "--stage", "drafts"], "unknown stage 'drafts': expected one of draft"),
        (["check", "{root}", "--cohort", "nope"], "no cohort 'nope'"),
        (["show", "{root}", "essay", "e9"], "no essay generation e9 under {root}/gens/essay/e9"),
        (["stats", "{root}", "--stage", "essays"], "unknown stage 'essays'"),
        (["show", "{root}", "essay", "e1", "--field", "body"], "--field 'body': expected one"),
        (["stats", "{missing}"], "{missing_message}"),
        (["ls", "nosuch://x/data"], "unknown protocol 'nosuch' in 'nosuch://x/data'"),
    ],
)
def test_process_mistakes_are_one_line(
    root: str,
    aws_env: dict[str, str],
    backend_name: str,
    tmp_path: Path,
    args: list[str],
    expected: str,
) -> None:
    missing, missing_message = (
        ("s3://no-such-bucket/data", "bucket 'no-such-bucket' does not exist")
        if backend_name == "s3"
        else (str(tmp_path / "typo"), "does not exist: give the folder that holds gens/")
    )
    fill = {"root": root, "missing": missing, "missing_message": missing_message}
    done = gens_fs(*(a.format(**fill) for a in args), env=aws_env)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("gens-fs: error: ")
    assert expected.format(**fill) in lines[0]
