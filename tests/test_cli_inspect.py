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
    prompts = as_json(run("show", root, "evaluation", "v1", "--lineage", "-f", "prompt", "--json"))
    assert [p["prompt"] for p in prompts] == ["the prompt", "the prompt", None]
    no_prompt = run("show", root, "evaluation", "v1", "--field", "prompt")
    assert no_prompt.exit_code == 1 and "has no prompt.txt" in no_prompt.stderr
    human = run("show", root, "essay", "e1", "--lineage")
    assert human.exit_code == 0 and "draft d1" in human.stdout and "essay e1" in human.stdout


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
        (["show", "{root}", "essay", "e9"], "no essay generation e9"),
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
