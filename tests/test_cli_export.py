"""``gens-fs export``: each format read back equals ``to_arrow``'s table (local disk and S3),
``--output -`` as JSON lines on stdout, ``--json``, and the file only when it is whole
(a failure or Ctrl-C leaves neither it nor a temporary file)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gens_fs import GensStore, to_arrow
from gens_fs.cli import app
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from tests.conftest import cli_options
from tests.legacy import COHORT
from tests.process import gens_fs, one_error_line, start, wait_until_held
from tests.test_tables import write_mixed

ARGS = ["--stage", "evaluation", "--lineage", "--text", "parsed,raw,prompt"]


@pytest.fixture
def root(data_root_url: str, storage_options: dict[str, Any]) -> str:
    write_mixed(data_root_url, storage_options)
    return data_root_url


def export(root: str, options: dict[str, Any], *args: str) -> Any:
    """``gens-fs export ROOT ARGS`` in-process, S3 options as ``-o`` flags."""
    flags = cli_options(options) if options else []
    return CliRunner().invoke(app, ["export", root, *args, *flags])


def expected(root: str, options: dict[str, Any], **kwargs: Any) -> pa.Table:
    return to_arrow(
        root,
        stage="evaluation",
        lineage=True,
        texts=("parsed", "raw", "prompt"),
        storage_options=options,
        **kwargs,
    )


def read_back(path: Path, schema: pa.Schema) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix == ".csv":
        options = pa_csv.ConvertOptions(
            column_types=schema,  # every column a string; an empty field is null, "" is ""
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        )
        return pa_csv.read_csv(path, convert_options=options)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.mark.parametrize("backend_name", ["local", "s3"])
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_each_format_round_trips(
    root: str, storage_options: dict[str, Any], tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"evaluations{suffix}"
    result = export(root, storage_options, *ARGS, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("exported 3 evaluation generations (16 columns) to ")
    table = expected(root, storage_options)
    assert read_back(out, table.schema).equals(table)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary


@pytest.mark.parametrize("backend_name", ["local"])
def test_json_summary_cohort_and_no_texts(
    root: str, storage_options: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "c.parquet"
    args = ["-s", "evaluation", "-c", COHORT, "--text", "", "--output", str(out), "--json"]
    result = export(root, {}, *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 2 and summary["bytes"] == out.stat().st_size > 0
    assert summary["columns"] == [
        "gen_id", "stage", "parent_gen_id", "task_id", "template_id", "model_id", "metadata"
    ]  # fmt: skip
    assert (summary["format"], summary["stage"], summary["cohort"]) == (
        "parquet",
        "evaluation",
        COHORT,
    )
    table = to_arrow(root, stage="evaluation", cohort=COHORT, texts=())
    assert pq.read_table(out).equals(table)


@pytest.mark.parametrize("backend_name", ["s3"])
def test_output_dash_writes_json_lines_to_stdout(
    root: str, storage_options: dict[str, Any], aws_env: dict[str, str], tmp_path: Path
) -> None:
    done = gens_fs("export", root, *ARGS, "--output", "-", env=aws_env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows == expected(root, storage_options).to_pylist()


@pytest.mark.parametrize("backend_name", ["local"])
def test_a_failed_export_leaves_no_file(root: str, tmp_path: Path) -> None:
    store = GensStore(f"{root}/gens")
    Path(store.path("evaluation", "v-orphan", "parsed.txt")).write_bytes(b"\xff")
    out = tmp_path / "out" / "evaluations.parquet"
    out.parent.mkdir()
    line = one_error_line(gens_fs("export", root, *ARGS, "--output", str(out)))
    assert "v-orphan/parsed.txt is not UTF-8 text" in line
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("backend_name", ["local"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "evaluation", "--output", "x.txt"], "the extension says the format"),
        (["-s", "evaluation", "--output", "-", "--json"], "give --output a file, not -"),
        (["-s", "evaluation", "--output", "no/such/x.csv"], "no folder 'no/such'"),
        (["-s", "evaluations", "--output", "x.csv"], "unknown stage 'evaluations'"),
        (["-s", "essay", "--text", "parsed,meta", "--output", "x.csv"], "--text 'meta'"),
        (["--output", "x.csv"], "Missing option '--stage'"),
    ],
)
def test_mistakes_are_one_line(root: str, args: list[str], message: str) -> None:
    assert message in one_error_line(gens_fs("export", root, *args))


def test_ctrl_c_leaves_no_file(s3_middleware: S3Middleware, bucket: str, tmp_path: Path) -> None:
    options = s3_storage_options(s3_middleware.endpoint_url)
    root = f"s3://{bucket}/data"
    write_mixed(root, options)
    out = tmp_path / "evaluations.csv"
    args = ["export", root, *ARGS, "--output", str(out), *cli_options(options)]
    # The listings pass, and two GETs of the first batch; the next GET is held.
    with s3_middleware.hold(["GET"], after=2) as hold:
        proc = start(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert wait_until_held(hold, proc), proc.communicate()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert err.decode() == (
        f"gens-fs: interrupted after 0 of 3 generations; {out} was not written\n"
    )
    assert list(tmp_path.iterdir()) == []
