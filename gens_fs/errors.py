"""The exception hierarchy of gens_fs.

Every error is a :class:`GensError`; the ones that mean what a builtin means also subclass
that builtin (``GenerationNotFound`` is a ``FileNotFoundError``), so existing ``except``
clauses keep working. Messages name the stage, gen_id and path, and say what to do next.
"""

from __future__ import annotations


class GensError(Exception):
    """Base class of every error gens_fs raises on purpose."""


class UnknownStage(GensError, ValueError):
    """A stage name that is not one of ``STAGES``."""


class InvalidGenId(GensError, ValueError):
    """A gen_id that is empty, too long, or could escape its directory or act as a pattern."""


class InvalidMetadata(GensError, ValueError):
    """``metadata.json`` (or metadata passed to ``write``) that is not valid."""


class UndecodableText(GensError, ValueError):
    """An artifact file whose bytes are not UTF-8."""


class UnknownArtifact(GensError, ValueError):
    """A file name that is not one of a generation's artifact files."""


class GenerationNotFound(GensError, FileNotFoundError):
    """The generation directory holds none of its files."""


class GenerationExists(GensError, FileExistsError):
    """A create-only write found the generation already committed."""


class ParentNotFound(GensError):
    """An essay or evaluation whose parent generation is not committed in the store."""


class StorageError(GensError):
    """The storage itself could not be used: bad URL, missing bucket, no credentials."""


class InvalidMembership(GensError, ValueError):
    """A cohort ``membership.csv`` that cannot be read as ``stage,gen_id`` rows."""


class CohortNotFound(GensError, FileNotFoundError):
    """No ``membership.csv`` for the cohort asked for."""


class NotADataRoot(StorageError):
    """A root given as a data root that does not look like one: it holds neither ``gens/``
    nor ``cohorts/`` (a typo, a gens root, an empty prefix)."""


class SpecialFile(GensError, OSError):
    """A FIFO, socket, device or folder where a regular file was to be read: never opened
    (reading ``/dev/zero`` never ends, and a FIFO blocks until someone writes to it)."""


class InvalidSelection(GensError, ValueError):
    """An ``--include``/``--exclude`` glob or a ``--where`` condition that cannot be used."""


class InvalidDuration(GensError, ValueError):
    """A duration (``gc --older-than``) that is not a number and a unit."""


class MissingExtra(GensError, ImportError):
    """An optional part of gens_fs whose dependencies are not installed; the message says
    which extra to install (``pip install 'gens_fs[tables]'``)."""


class AccessDenied(StorageError, PermissionError):
    """The storage refused the credentials in use an ``operation`` (``listing``,
    ``reading``, ``writing``, ``deleting``, ``copying``) on ``url``. Never retried: every
    request of its kind would meet the same answer, so a command stops at the first."""

    def __init__(self, operation: str, url: str, detail: str = "") -> None:
        self.operation = operation
        self.url = url
        self.detail = detail
        said = f" ({detail})" if detail else ""
        super().__init__(
            f"access denied {operation} {url}{said}: check the credentials in use and what "
            "they may do there"
        )

    def __reduce__(self) -> tuple[type[AccessDenied], tuple[str, str, str]]:
        return (type(self), (self.operation, self.url, self.detail))
