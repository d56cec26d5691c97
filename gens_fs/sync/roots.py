"""The two roots of a sync, opened and checked before anything is listed or written."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from gens_fs.backends import Engine, RateLimit, RetryPolicy, SyncBackend, open_backend
from gens_fs.backends.limits import with_limit
from gens_fs.data_root import DataRoot, refuse_misplaced_root
from gens_fs.errors import NotADataRoot, StorageError
from gens_fs.layout import ancestors, join, roots_overlap
from gens_fs.sync.plan import SyncPlan


class OverlappingRoots(StorageError):
    """The source and destination are one folder, or one is inside the other, on one
    storage: a sync would copy a store into itself, or delete what it reads."""


def open_root(
    root: str | os.PathLike[str] | DataRoot,
    options: Mapping[str, Any] | None,
    engine: Engine,
    retry: RetryPolicy | None,
    limit: RateLimit | None = None,
) -> SyncBackend:
    """A root's backend: a ``DataRoot``'s own, or a new one with ``options`` and ``engine``;
    with ``retry``, retrying by that policy; with ``limit``, charging its requests there."""
    if isinstance(root, DataRoot):
        backend = root.backend if retry is None else root.backend.retried(retry)
        return backend if limit is None else SyncBackend(with_limit(backend.backend, limit))
    return SyncBackend(
        open_backend(root, storage_options=options, engine=engine, retry=retry, limit=limit)
    )


def display(backend: SyncBackend) -> str:
    """The root as a user would type it."""
    return backend.url(backend.root)


def check_roots(source: SyncBackend, target: SyncBackend) -> bool:
    """Fail fast, before any listing of the stores: the same root twice, or one inside the
    other; a source that is a file; a destination that looks like a part of a data root (a
    gens root, a stage folder, ``cohorts/``, a generation folder). The destination's check
    is one first-level listing: on a remote one it also catches a missing bucket or an
    endpoint that does not answer, bounded in time (the source gets the same from
    ``require_data_root``). True when that listing found the destination empty (or
    absent): then there is nothing under it to list."""
    _refuse_overlap(source, target)
    if source.blocked_folder([source.root]) is not None:
        raise NotADataRoot(
            f"source data root {display(source)} is a file, not a folder: give the folder "
            "that holds gens/ and cohorts/"
        )
    if target.blocked_folder([target.root]) is not None:
        return False  # check_destination_writable says what is in the way
    found = refuse_misplaced_root(target, what="destination data root")
    # An empty first level is the whole answer (no page was left unread), so it is safe
    # to trust; a partial one (a first level over a page long) is not.
    return not (found.folders or found.files)


def _refuse_overlap(source: SyncBackend, target: SyncBackend) -> None:
    """``OverlappingRoots`` for two roots on one storage that are the same folder once
    normalised (``data/gens/..`` is ``data``; on local disk through symbolic links too) or
    one inside the other."""
    if source.backend.service != target.backend.service:
        return
    src, dst = display(source), display(target)
    resolved = [side.backend.resolved(side.root) for side in (source, target)]
    where = roots_overlap(*resolved)
    if where == "same":
        both = src if src == dst else f"{src} and {dst}"
        raise OverlappingRoots(f"source and destination are the same data root: {both}")
    if where == "inside":
        raise OverlappingRoots(
            f"source data root {src} is inside the destination data root {dst}: a sync could "
            "write over or delete what it reads; choose a source and a destination apart"
        )
    if where == "contains":
        raise OverlappingRoots(
            f"destination data root {dst} is inside the source data root {src}: a sync would "
            "copy the source into itself; choose a destination outside it"
        )


def check_destination_writable(target: SyncBackend, plan: SyncPlan) -> None:
    """Refuse, before anything is written, a destination where a file stands in the place of
    a folder the plan writes into (the destination root, or a folder above it, included):
    every copy below it would fail, one error line per file."""
    folders = {join(target.root, folder) for c in plan.copies for folder in ancestors(c.relpath)}
    blocked = target.blocked_folder({target.root, *folders})
    if blocked is not None:
        raise StorageError(
            f"cannot sync into {display(target)}: {target.url(blocked)} is a file where a "
            "folder must be; move it away or choose another destination (nothing was written)"
        )
