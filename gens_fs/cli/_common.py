"""What every command shares: the Typer app, storage options, output, and error mapping."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console

from gens_fs.cohorts import DataRoot
from gens_fs.errors import GensError
from gens_fs.inventory import require_data_root

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


FollowSymlinks = Annotated[
    bool,
    typer.Option(
        "--follow-symlinks",
        help=(
            "Follow symbolic links whose target stays inside the data root (others, and "
            "FIFOs, sockets and devices, are always left out and reported)."
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


def open_root(url: str, options: list[str] | None) -> DataRoot:
    """The data root ``url`` with ``--option`` storage options, checked before any work.

    One cheap request (``require_data_root``: on S3 one ``ListObjectsV2`` of the root's first
    level): a missing bucket, bad credentials, or a root that holds neither ``gens/`` nor
    ``cohorts/`` (a typo, a gens root) become one line, instead of an empty store.
    """
    root = DataRoot(url, storage_options=parse_options(options))
    require_data_root(root.backend)
    return root


def warn_ignored(entries: Iterable[tuple[str, str]], *, where: str = "") -> None:
    """One line on stderr per ``(path, reason)`` a listing left out (a symbolic link...)."""
    for path, reason in entries:
        err_console.print(
            f"gens-fs: warning: ignored {where}{path} ({reason})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


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
