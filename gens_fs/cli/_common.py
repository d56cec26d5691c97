"""What every command shares: the Typer app, storage options, output, and error mapping."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console

from gens_fs.backend import LocalBackend
from gens_fs.cohorts import DataRoot
from gens_fs.errors import GensError

app = typer.Typer(
    name="gens-fs",
    help=(
        "Keep LLM generation artifacts in a gen-id-first layout on any storage "
        "(local disk, S3, memory, any fsspec URL), and move them between storages safely.\n\n"
        "ROOT arguments are data roots: the folder that holds gens/ and cohorts/, as a path "
        "or URL (s3://bucket/prefix). S3 credentials and endpoint come from the standard AWS "
        "environment (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Keep ``gens-fs COMMAND`` a command group even while only one command exists."""


# Human output goes to stdout; errors to stderr. Rich drops colour and markup when the
# stream is not a terminal, so pipes get plain text.
console = Console()
err_console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON for machines.")]
OptionList = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help=(
            "A storage option for fsspec, repeatable. Dotted keys nest and values are JSON "
            "when they parse as JSON: -o client_kwargs.endpoint_url=http://127.0.0.1:9000 "
            "-o anon=true"
        ),
    ),
]


class UsageError(GensError):
    """A command-line mistake: printed as one line, exit code 2."""


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        node = options
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"--option {pair!r}: {part} is already set to a value")
            node = child
        node[leaf] = value
    return options


def open_root(url: str, options: list[str] | None, *, must_exist: bool = True) -> DataRoot:
    """The data root ``url`` with ``--option`` storage options, checked before any work.

    One cheap request: on S3 a HEAD of the bucket (``Backend.check_root``; a missing bucket
    or bad credentials become one line). With ``must_exist`` a local root must be an
    existing directory (a typo would otherwise look like an empty store).
    """
    root = DataRoot(url, storage_options=parse_options(options))
    root.backend.check_root()
    if must_exist and isinstance(root.backend, LocalBackend) and not os.path.isdir(root.root):
        raise UsageError(
            f"data root {url} does not exist: give the folder that holds gens/ and cohorts/"
        )
    return root


def emit(
    result: BaseModel | list[Any] | dict[str, Any], as_json: bool, human: Callable[[], None]
) -> None:
    """Print ``result`` as JSON, or call ``human`` to print it for people."""
    if not as_json:
        human()
        return
    if isinstance(result, BaseModel):
        text = result.model_dump_json(indent=2)
    else:
        text = json.dumps(
            result,
            indent=2,
            ensure_ascii=False,
            default=lambda o: o.model_dump(mode="json") if isinstance(o, BaseModel) else str(o),
        )
    sys.stdout.write(text + "\n")


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: for mistakes a user can fix."""
    err_console.print(f"gens-fs: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a ``GensError`` becomes one line and exit code 2."""
    try:
        app(args=argv, prog_name="gens-fs", standalone_mode=True)
    except GensError as exc:
        err_console.print(f"gens-fs: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("gens-fs: interrupted", markup=False)
        sys.exit(130)
