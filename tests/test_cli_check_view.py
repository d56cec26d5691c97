"""``gens-fs check``'s view for people on a store with many findings (run as a real process):
every error listed, at most 50 warnings of a kind, info remarks counted per kind; ``--all``
lists everything and ``--json`` always has everything."""

from __future__ import annotations

import json

import pytest

from gens_fs import DataRoot
from tests.process import gens_fs

META = b'{"template_id": "tpl", "model_id": "m"}'  # no task_id: an info remark each


@pytest.fixture(scope="module")
def noisy_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """52 incomplete drafts (errors); 53 committed drafts without prompt.txt (a warning
    each) nor task_id (an info remark each)."""
    root = DataRoot(tmp_path_factory.mktemp("noisy") / "data")
    store = root.store()
    files: dict[str, bytes] = {}
    for i in range(52):
        for name in ("raw.txt", "parsed.txt", "prompt.txt"):
            files[store.path("draft", f"x{i:02}", name)] = b"text"
    for i in range(53):
        files[store.path("draft", f"w{i:02}", "raw.txt")] = b"raw"
        files[store.path("draft", f"w{i:02}", "parsed.txt")] = b"parsed"
        files[store.path("draft", f"w{i:02}", "metadata.json")] = META
    root.backend.write_many(files)
    return root.url


def rows(output: str, severity: str, kind: str) -> int:
    return sum(line.startswith(f"│ {severity:<8} │ {kind} ") for line in output.splitlines())


def test_check_lists_errors_caps_warnings_and_counts_info(noisy_root: str) -> None:
    done = gens_fs("check", noisy_root)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert rows(out, "error", "incomplete") == 52  # every error
    assert rows(out, "warning", "missing_prompt") == 50  # the first 50 of the kind
    assert "gens/draft/w49/prompt.txt" in out and "gens/draft/w50/prompt.txt" not in out
    assert rows(out, "info", "missing_task_id") == 0
    assert out.splitlines()[-3:] == [
        "... and 3 more missing_prompt warnings (--all to list them)",
        "53 info remarks: missing_task_id 53 (--all to list them)",
        f"PROBLEMS FOUND: checked 105 generations and 0 cohorts in {noisy_root} (draft, essay, "
        "evaluation): 52 errors, 53 warnings, 53 info",
    ]


def test_check_all_lists_everything_and_json_always_has_everything(noisy_root: str) -> None:
    every = gens_fs("check", noisy_root, "--all").stdout
    assert rows(every, "error", "incomplete") == 52
    assert rows(every, "warning", "missing_prompt") == 53
    assert rows(every, "info", "missing_task_id") == 53
    assert "--all to list" not in every
    machine = gens_fs("check", noisy_root, "--json")
    assert machine.returncode == 1
    assert json.loads(machine.stdout)["summary"]["by_kind"] == {
        "incomplete": 52,
        "missing_prompt": 53,
        "missing_task_id": 53,
    }
    assert len(json.loads(machine.stdout)["findings"]) == 158


def test_json_is_the_same_with_or_without_all(noisy_root: str) -> None:
    assert gens_fs("check", noisy_root, "--json", "--all").stdout == (
        gens_fs("check", noisy_root, "--json").stdout
    )
