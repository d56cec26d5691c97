"""What every command shares: the Typer app, storage options, output, and error mapping.

Output rules: text that comes from a store (gen_ids from a membership file, model ids,
paths, texts, error messages quoting them) is data. It reaches people only through
:func:`printable` (control characters shown as escapes, so an LLM's ANSI/OSC sequences never
drive the terminal) and rich ``Text`` objects (never parsed as markup: ``llama[/8b]`` is a
model id, not a closing tag). JSON output keeps every value exact.
"""

from __future__ import annotations

import functools
import gc
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.text import Text
from typer.core import TyperArgument, TyperCommand
from typer.models import CommandFunctionType

from gens_fs.backends import Engine
from gens_fs.cli.logs import SHOWN, cli_log, logging_to
from gens_fs.cli.logs import current as verbosity
from gens_fs.data_root import DataRoot, require_data_root
from gens_fs.errors import GensError
from gens_fs.selection import Selection


class Command(TyperCommand):
    """Help that names arguments as people write them: ``ROOT`` in the usage line and in the
    arguments list (typer's own are ``{ROOT}`` and ``ROOT <str>``). Typer may bring its own
    copy of click, so the context and formatter are typed loosely."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Also keep, in ``ctx.meta``, the order in which ``--include`` and ``--exclude``
        were given (click keeps each option's values, not how they interleave), from a
        first pass of click's own parser over the same arguments."""
        names = {param.name for param in self.params}
        if {"include", "exclude"} <= names:
            _values, _rest, order = self.make_parser(ctx).parse_args(args=list(args))
            ctx.meta[RULE_ORDER] = [p.name for p in order if p.name in ("include", "exclude")]
        return super().parse_args(ctx, args)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [
            (_argument_name(p), p.help or "") for p in params if isinstance(p, TyperArgument)
        ]
        options = [
            record
            for p in params
            if p.param_type_name == "option" and (record := p.get_help_record(ctx)) is not None
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: TyperArgument) -> str:
    return param.metavar or (param.name or "arg").upper()


class _App(typer.Typer):
    """The Typer app whose commands use :class:`Command` help and say "interrupted"."""

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        register = super().command(name, cls=cls or Command, **kwargs)

        def decorator(func: CommandFunctionType) -> CommandFunctionType:
            register(_with_logs(_interruptible(func)))
            return func

        return decorator


def _interruptible(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func``, with Ctrl-C as one line on stderr and exit code 130. (Typer itself turns a
    ``KeyboardInterrupt`` into a silent exit 130.) A command with more to say catches it
    first and calls :func:`interrupted` with its own message."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            interrupted()

    return run


VerboseOption = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        show_default=False,
        help=(
            "More on stderr: -v the library's log (retries, plans), -vv its debug log and "
            "the storage clients' (each call)."
        ),
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help=(
            "Print only errors: no warnings, no progress, nothing of a sync's or gc's report "
            "but its errors (what ls, show, check and stats list, and --json, still are)."
        ),
    ),
]
LogFileOption = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        metavar="PATH",
        dir_okay=False,
        help=(
            "Append a timestamped log to PATH: errors, warnings, summaries, progress and the "
            "library's log (INFO; DEBUG with -vv), whatever -q says."
        ),
    ),
]
_LOG_PARAMETERS: Final = tuple(
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
    for name, default, kind in (
        ("verbose", 0, VerboseOption),
        ("quiet", False, QuietOption),
        ("log_file", None, LogFileOption),
    )
)


def _with_logs(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with ``-v``/``-vv``, ``-q`` and ``--log-file`` added to its options (one
    definition for every command), run inside the logging they ask for; its start, its
    exit code and an error that ends it are logged."""
    signature = inspect.signature(func, eval_str=True)
    name = func.__name__.removesuffix("_command")

    @functools.wraps(func)
    def run(
        *args: Any, verbose: int = 0, quiet: bool = False, log_file: Path | None = None, **kw: Any
    ) -> Any:
        with logging_to(verbose, quiet, log_file):
            cli_log.info("gens-fs %s: started", name)
            try:
                result = func(*args, **kw)
            except typer.Exit as exc:
                cli_log.info("gens-fs %s: exit %d", name, exc.exit_code)
                raise
            except (GensError, OSError) as exc:
                cli_log.error("gens-fs: error: %s", exc, extra=SHOWN)
                cli_log.info("gens-fs %s: exit 2", name)
                raise
            cli_log.info("gens-fs %s: exit 0", name)
            return result

    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *_LOG_PARAMETERS]
    )
    run.__annotations__ = {
        **{p.name: p.annotation for p in signature.parameters.values()},
        **{p.name: p.annotation for p in _LOG_PARAMETERS},
    }
    return run


app = _App(
    name="gens-fs",
    help=(
        "Keep LLM generation artifacts in a gen-id-first layout on any storage "
        "(local disk, S3, Azure Blob, memory, any fsspec URL), and move them between storages "
        "safely.\n\n"
        "ROOT arguments are data roots: the folder that holds gens/ and cohorts/, as a path "
        "or URL (s3://bucket/prefix). S3 credentials and endpoint come from the standard AWS "
        "environment (AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        try:
            number = version("gens_fs")
        except PackageNotFoundError:  # run from a checkout that was never installed
            from gens_fs import __version__ as number
        say(f"gens-fs {number}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Keep ``gens-fs COMMAND`` a command group; ``--version`` is handled by its callback."""


# Piped or redirected output is not hard-wrapped: rich's default there is 80 columns, which
# breaks long lines (paths, messages) in two. Tables still render, as wide as their content.
PIPE_WIDTH: Final = 10_000


def _console(*, stderr: bool = False) -> Console:
    """A console for people: no markup, emoji codes or highlighting anywhere (store text is
    data); colour only on a terminal (rich decides); no hard wrap when piped."""
    stream = sys.stderr if stderr else sys.stdout
    piped = stream is None or not stream.isatty()
    return Console(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        width=PIPE_WIDTH if piped else None,
    )


# Human output goes to stdout; errors to stderr.
console = _console()
err_console = _console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON for machines.")]
OptionList = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help=(
            "A storage option for fsspec, repeatable. Dotted keys nest and values are JSON "
            "when they parse as JSON: -o anon=true, -o client_kwargs.endpoint_url=URL"
        ),
    ),
]


class EngineChoice(str, Enum):
    """``--engine``: which client serves object stores (see ``gens_fs.backends.Engine``)."""

    fsspec = "fsspec"
    obstore = "obstore"

    @property
    def engine(self) -> Engine:
        return self.value


EngineOption = Annotated[
    EngineChoice,
    typer.Option(
        "--engine",
        metavar="ENGINE",
        help=(
            "The client for s3://, gs:// and az:// roots: fsspec (the default) or obstore "
            "(pip install 'gens_fs[obstore]'). Local paths are the same under both."
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


RULE_ORDER: Final = "gens_fs.rule_order"
"""``ctx.meta`` key: ``include``/``exclude``, in the order given on the command line."""
IncludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        metavar="GLOB",
        help=(
            "Only gen_ids matching GLOB (*, ?, [abc]; repeatable). With --exclude, the LAST "
            "rule on the command line that matches a gen_id decides (--include 'e*' "
            "--exclude 'e1*': e2 in, e12 out); a gen_id no rule matches is out when there "
            "is any --include, in otherwise."
        ),
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        metavar="GLOB",
        help="Leave out gen_ids matching GLOB (repeatable; the last matching rule decides).",
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        metavar="KEY=VALUE",
        help=(
            "Only generations whose metadata.json has KEY equal to VALUE (a top-level key; "
            "repeatable: all must hold; model_id also reads llm_model_id; non-strings by "
            "their JSON: n=3, flag=true). Reads each candidate's metadata.json."
        ),
    ),
]


def selection_from(
    ctx: Any, include: list[str] | None, exclude: list[str] | None, where: list[str] | None
) -> Selection | None:
    """The ``--include``/``--exclude``/``--where`` of this command line, the globs in the
    order they were given (see :meth:`Command.parse_args`)."""
    includes, excludes = iter(include or ()), iter(exclude or ())
    order = ctx.meta.get(RULE_ORDER, [])
    rules = [(kind, next(includes if kind == "include" else excludes)) for kind in order]
    return Selection.ordered(rules, where)


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


def open_root(
    url: str, options: list[str] | None, engine: EngineChoice = EngineChoice.fsspec
) -> DataRoot:
    """The data root ``url`` with ``--option`` storage options, checked before any work.

    One cheap request (``require_data_root``: on S3 one ``ListObjectsV2`` of the root's first
    level): a missing bucket, bad credentials, or a root that holds neither ``gens/`` nor
    ``cohorts/`` (a typo, a gens root) become one line, instead of an empty store.
    """
    root = DataRoot(url, storage_options=parse_options(options), engine=engine.engine)
    require_data_root(root.backend)
    return root


def warn_ignored(entries: Iterable[tuple[str, str]], *, where: str = "") -> None:
    """One line on stderr per ``(path, reason)`` a listing left out (a symbolic link...)."""
    for path, reason in entries:
        say(f"gens-fs: warning: ignored {where}{path} ({reason})", err=True, log=logging.WARNING)


def emit(
    result: BaseModel | list[Any] | dict[str, Any], as_json: bool, human: Callable[[], None]
) -> None:
    """Print ``result`` as JSON, or call ``human`` to print it for people.

    JSON keeps every value exact. Encoders escape C0 controls (ESC included) but write DEL
    and C1 controls as they are; those are escaped too (``\\u009b``: the same string to a
    JSON reader), so even JSON on a terminal carries no control sequence."""
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
    sys.stdout.write(json_safe(text) + "\n")


def json_safe(text: str) -> str:
    """JSON text with DEL and C1 controls escaped too (the same string to a JSON reader),
    so that no control sequence reaches a terminal."""
    return _UNESCAPED_IN_JSON.sub(_json_escape, text)


# Outside strings JSON has only ASCII punctuation, digits, letters and spaces, so these
# can only be inside strings, where an escape is the same character.
_UNESCAPED_IN_JSON: Final = re.compile("[\x7f-\x9f]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


# C0 and C1 control characters and DEL: ESC starts every ANSI/OSC sequence, BEL ends OSC
# ones, CR rewrites the line, C1 CSI (U+009B) works as ESC [ on some terminals.
_CONTROL_IN_LINE: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
# In a multi-line text, newlines, tabs and the CR of a CRLF stay as they are.
_CONTROL_IN_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")
_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` safe to show on a terminal: every control character written as an escape
    (``\\x1b``, ``\\r``, ``\\n``), so none is acted on; ``multiline`` keeps newlines, tabs
    and CRLF line ends. Everything else, non-ASCII included, is kept as is."""
    pattern = _CONTROL_IN_TEXT if multiline else _CONTROL_IN_LINE
    return pattern.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_ESCAPES.get(char, f"\\x{ord(char):02x}")


def cell(value: object) -> Text:
    """A table cell from store data: one line, printable, never markup."""
    return Text(printable(str(value)))


def say(message: str, *, err: bool = False, log: int | None = None) -> None:
    """Print one line for people (stdout, or stderr with ``err``): printable, never markup,
    never hard-wrapped. With ``log`` (a level) the line is a message, not output: it is
    also logged (a log file gets it), and ``-q`` does not print it below ``ERROR``."""
    if log is not None:
        cli_log.log(log, "%s", message, extra=SHOWN)
        if verbosity.quiet and log < logging.ERROR:
            return
    (err_console if err else console).print(Text(printable(message)), soft_wrap=True)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``plural(1, "file")`` -> ``"1 file"``; ``plural(1234, "file")`` -> ``"1,234 files"``."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


_SIZE_UNITS: Final = ("kB", "MB", "GB", "TB", "PB")


def human_size(size: int) -> str:
    """A byte count for people, in SI units: ``"980 B"``, ``"1.2 MB"``. JSON keeps bytes."""
    if size < 1000:
        return f"{size} B"
    value, unit = size / 1000, 0
    while value >= 999.95 and unit < len(_SIZE_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    return f"{value:.1f} {_SIZE_UNITS[unit]}"


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: for mistakes a user can fix."""
    say(f"gens-fs: error: {message}", err=True, log=logging.ERROR)
    raise typer.Exit(code)


INTERRUPTED: Final = 130
"""The exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)."""


def interrupted(message: str = "interrupted") -> NoReturn:
    """Ctrl-C: one line on stderr (``gens-fs: <message>``), exit code 130."""
    say(f"gens-fs: {message}", err=True, log=logging.ERROR)
    raise typer.Exit(INTERRUPTED)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app. A mistake on the command line (unknown option, missing
    argument, bad value), a ``GensError`` (a mistake to fix) or an ``OSError`` (a file the
    system will not give us) becomes one line on stderr and exit code 2."""
    # The library logs warnings that its reports also carry (a failed file, skipped
    # deletes), and the commands print those reports. Without a handler Python's
    # last-resort one would print each a second time, raw, on stderr.
    logging.getLogger("gens_fs").addHandler(logging.NullHandler())
    try:
        code = app(args=argv, prog_name="gens-fs", standalone_mode=False)
    except (GensError, OSError) as exc:
        say(f"gens-fs: error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        line = _usage_error_line(exc)
        if line is None:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments at all: the help
            exc.show()  # type: ignore[attr-defined]
        else:
            say(f"gens-fs: error: {line}", err=True)
        sys.exit(2)
    code = code if isinstance(code, int) else 0
    if code == INTERRUPTED:
        # The work was stopped cleanly and the one line is printed: leave now, without the
        # interpreter's shutdown, where the IO thread's client sessions would still be
        # closing and print "Task exception was never retrieved" tracebacks.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def entry_point() -> None:
    """The ``gens-fs`` process (the script, and ``python -m gens_fs``): :func:`main`, with
    the garbage collector kept off what lives until the process ends. Python's collector
    walks every object it tracks: the modules' own (about 100,000 after the imports) at
    each full collection of the run, and everything still alive, several times over, as
    the interpreter shuts down, to free what the process's end frees anyway: measured on
    a no-op sync of 7,201 files, 0.12 s of CPU, an eighth of the command's. Frozen
    (``gc.freeze``) after the imports and again at the end, they are never walked; every
    exit handler still runs (logs flushed, clients closed). Not in :func:`main` itself,
    which tests call in their own long-lived process."""
    gc.freeze()
    try:
        main()
    finally:
        gc.freeze()


def _usage_error_line(exc: Exception) -> str | None:
    """What click found wrong with the command line, with where to look, or ``None`` for
    any other exception. Duck-typed: typer may bring its own copy of click. (In standalone
    mode click prints a usage block and a blank line before the error.)"""
    format_message = getattr(exc, "format_message", None)
    if not callable(format_message) or not isinstance(getattr(exc, "exit_code", None), int):
        return None
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    return f"{format_message()}{where}"
