"""What every command logs, and where: ``-v``/``-vv``, ``-q`` and ``--log-file PATH``.

Two kinds of lines reach people. *Output* (a listing, a table, JSON) is what a command is
asked for: always printed. *Messages* (errors, warnings, a sync's or gc's summary,
progress lines) are also log records of the ``gens_fs.cli`` logger, so that a log file
holds them with the library's own records. ``-q`` prints no message below an error;
``-v`` adds the library's INFO records on stderr (a retried request, the plan of a sync),
``-vv`` its DEBUG records and the storage clients' (s3fs, fsspec, adlfs: every call they
make). ``--log-file`` appends every record at INFO (DEBUG with ``-vv``), whatever ``-q``
says, with a timestamp: a cron or cloud job's log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gens_fs.errors import GensError

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The storage clients whose DEBUG records -vv adds (each logs every call it makes).
CLIENT_LOGGERS: Final = ("s3fs", "fsspec", "adlfs")
cli_log = logging.getLogger("gens_fs.cli")
# A record the console already showed (a message said by ``say``): stderr skips it.
SHOWN: Final = {"shown": True}


class LogOptionError(GensError):
    """``--log-file`` names a file that cannot be opened for appending, or ``-q`` and
    ``-v`` are both given."""


@dataclass
class Verbosity:
    """The current command's ``-v`` count and ``-q``."""

    verbose: int = 0
    quiet: bool = False


current = Verbosity()


class _NotShown(logging.Filter):
    """Stderr's filter: records the console printed already are not printed again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "shown", False)


@contextmanager
def logging_to(verbose: int, quiet: bool, log_file: Path | None) -> Iterator[None]:
    """Set up the command's logging for the block, then take it down (a command run
    in-process, by tests or a notebook, leaves no handler behind)."""
    if verbose and quiet:
        raise LogOptionError("-q and -v ask for opposite things: pass one of them")
    current.verbose, current.quiet = verbose, quiet
    handlers: list[logging.Handler] = []
    formatter = logging.Formatter(LOG_FORMAT)
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    if verbose:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.addFilter(_NotShown())
        handlers.append(stderr)
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
        except OSError as exc:
            raise LogOptionError(f"--log-file {log_file}: cannot append to it ({exc})") from None
    loggers = [logging.getLogger("gens_fs")]
    loggers += [logging.getLogger(name) for name in CLIENT_LOGGERS] if verbose >= 2 else []
    saved = [(logger, logger.level) for logger in loggers]
    for handler in handlers:
        handler.setLevel(level)
        handler.setFormatter(formatter)
    for logger in loggers:
        logger.setLevel(level if handlers else logger.level)
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, before in saved:
            logger.setLevel(before)
            for handler in handlers:
                logger.removeHandler(handler)
        for handler in handlers:
            handler.close()
        current.verbose, current.quiet = 0, False
