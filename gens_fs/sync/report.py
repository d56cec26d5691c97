"""``SyncReport``: what a sync did (or, with ``dry_run``, would do)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field


class SyncError(BaseModel):
    """One file (or generation directory) that could not be synced, and why."""

    path: str
    error: str


class PlannedAction(BaseModel):
    """One step of the plan, in execution order (listed in dry-run reports)."""

    action: Literal["copy", "delete"]
    path: str
    size: int | None = None


class IgnoredEntry(BaseModel):
    """An entry a sync left alone without reading it: a symbolic link not followed, a FIFO,
    socket or device, or (at the source) a stray entry outside the layout."""

    side: Literal["source", "destination"]
    path: str
    reason: str


class SyncReport(BaseModel):
    """The outcome of ``gens_fs.sync``.

    ``copied``/``bytes`` count files (and their bytes) written at the destination,
    ``skipped`` files already identical there, ``deleted`` files removed. ``errors`` lists,
    each with why and what to do: the generations the plan held back (``held`` names them,
    as ``stage/gen_id``: a parent missing at the destination and not in the sync, or in the
    source itself, or an unreadable ``metadata.json``), the membership CSVs held back
    because they list one (``held_memberships``), and the files that still failed after
    retries, with ``uncommitted`` the generations whose ``metadata.json`` was therefore not
    written (running the same sync again converges for those; a held orphan needs a fixed
    source or ``allow_orphans``). ``deletes_skipped``: the deletes did not run
    (``deletes_not_run`` of them), because something was held or failed. ``ignored`` lists
    the entries left alone (warnings: they do not make the report fail), ``unhashed`` the
    files ``checksum`` could not read to compare (after the retries), copied again instead
    (warnings too; a copy that then fails is an error). In a dry run the
    counts, held lists and skipped deletes are what a real run would do (short of failures
    at run time), ``actions`` lists the plan, ``refused`` says why a real run would refuse
    it (too many deletes), and nothing changed.
    """

    src: str
    dst: str
    dry_run: bool = False
    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes: int = 0
    errors: list[SyncError] = Field(default_factory=list)
    held: list[str] = Field(default_factory=list)
    held_memberships: list[str] = Field(default_factory=list)
    uncommitted: list[str] = Field(default_factory=list)
    deletes_skipped: bool = False
    deletes_not_run: int = 0
    verified: bool | None = None
    seconds: float = 0.0
    actions: list[PlannedAction] | None = None
    ignored: list[IgnoredEntry] = Field(default_factory=list)
    refused: str | None = None
    unhashed: list[SyncError] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when every file in scope was synced (and verified, if asked); for a dry run,
        when a real run would not be refused either."""
        return not self.errors and self.verified is not False and self.refused is None
