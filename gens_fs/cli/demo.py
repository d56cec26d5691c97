"""``gens-fs demo``: a sample store written, listed and read back through an S3 endpoint
the demo starts itself (moto on 127.0.0.1), so a new user sees the library work end to end
with nothing to configure."""

from __future__ import annotations

import tempfile
from typing import Annotated, Any

import typer
from rich.table import Table

from gens_fs.check import check
from gens_fs.cli._common import app, cell, console, fail, human_size, plural, say
from gens_fs.data_root import write_membership
from gens_fs.store import GensStore
from gens_fs.sync import sync

SAMPLE_DRAFTS = 3


def _write_sample(store: GensStore) -> None:
    """Three drafts, an essay for each, an evaluation for each essay: parents first."""
    for i in range(SAMPLE_DRAFTS):
        draft, essay, evaluation = f"draft-{i}", f"essay-{i}", f"eval-{i}"
        common = {"task_id": f"task-{i}", "model_id": "demo-model"}
        store.write(
            "draft",
            draft,
            metadata={**common, "template_id": "brainstorm"},
            prompt=f"List ideas about topic {i}.",
            raw=f"Ideas {i}: ...",
            parsed=f"Ideas {i}",
        )
        store.write(
            "essay",
            essay,
            metadata={**common, "template_id": "essay", "parent_gen_id": draft},
            prompt=f"Write an essay from draft {i}.",
            raw=f"Essay {i} ...",
            parsed=f"Essay {i}",
        )
        store.write(
            "evaluation",
            evaluation,
            metadata={**common, "template_id": "score", "parent_gen_id": essay},
            raw=f"Reasoning... SCORE: {5 + i}",
            parsed=str(5 + i),
        )


@app.command()
def demo(
    bucket: Annotated[
        str, typer.Option(metavar="NAME", help="Bucket name on the demo S3 server.")
    ] = "demo",
) -> None:
    """Start a throwaway S3 server on 127.0.0.1, write a sample store into it, read it back.

    Needs the test extra (moto): pip install 'gens_fs[test]'.
    """
    try:
        import moto  # noqa: F401

        from gens_fs.testing.s3 import MotoServer, create_bucket, s3_storage_options
    except ImportError:
        fail("the demo needs moto: pip install 'gens_fs[test]'")
    with MotoServer() as server:
        create_bucket(server.endpoint_url, bucket)
        options = s3_storage_options(server.endpoint_url)
        root = f"s3://{bucket}/data/gens"
        say(f"S3 server on {server.endpoint_url}; writing a sample store to {root}")
        store = GensStore(root, storage_options=options)
        _write_sample(store)

        say(f"generations in {root}")
        console.print(_table(store))
        gen = store.load("evaluation", "eval-2")
        say(
            f'store.load("evaluation", "eval-2")["parsed_text"] == {gen["parsed_text"]!r}; '
            f"its essay is {gen.parent_gen_id}"
        )
        write_membership(
            f"s3://{bucket}/data",
            "demo-cohort",
            [("evaluation", "eval-0"), ("evaluation", "eval-1")],
            storage_options=options,
        )
        with tempfile.TemporaryDirectory() as tmp:
            _sync_and_check(f"s3://{bucket}/data", f"{tmp}/data", options)
        say(
            "The server and the local copy are gone with the demo. Next, on a store of your "
            "own: gens-fs --help; gens-fs ls/show/check/stats ROOT; gens-fs sync SRC DST"
        )


def _table(store: GensStore) -> Table:
    """Every generation of the sample store, read back."""
    table = Table()
    for column in ("stage", "gen_id", "parent", "template", "parsed_text"):
        table.add_column(column)
    for stage in ("draft", "essay", "evaluation"):
        for gen in store.load_many(stage, store.gen_ids(stage)).values():
            assert gen.metadata is not None
            table.add_row(
                stage,
                cell(gen.gen_id),
                cell(gen.parent_gen_id or "-"),
                cell(gen.metadata.template_id),
                cell(gen.parsed_text or ""),
            )
    return table


def _sync_and_check(src: str, local: str, options: dict[str, Any]) -> None:
    """The demo cohort synced to local disk twice (the second copies nothing), then checked."""
    report = sync(src, local, cohort="demo-cohort", src_options=options)
    say(
        f"sync --cohort demo-cohort to {local}: copied {plural(report.copied, 'file')} "
        f"({human_size(report.bytes)}), {plural(len(report.errors), 'error')}"
    )
    again = sync(src, local, cohort="demo-cohort", src_options=options)
    say(f"the same sync again: copied {again.copied}, skipped {again.skipped}")
    found = check(local)
    kinds = ", ".join(sorted(found.summary.by_kind)) or "nothing to remark"
    say(
        f"check of the copy: {plural(found.summary.errors, 'error')}, "
        f"{plural(found.summary.warnings, 'warning')}; findings by kind: {kinds}"
    )
