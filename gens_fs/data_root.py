"""``DataRoot``: one data root, ``gens/`` and ``cohorts/`` side by side on one storage, and
the cohort functions that take a data root, and what tells a data root from a typo
(:func:`require_data_root`: one cheap request).

What lives where under it is :mod:`gens_fs.layout`'s; how a ``membership.csv`` reads and
writes is :mod:`gens_fs.cohorts`'; the generations are :class:`~gens_fs.store.GensStore`'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gens_fs.backends import (
    Capabilities,
    Children,
    Engine,
    RateLimit,
    RetryPolicy,
    SyncBackend,
    open_backend,
)
from gens_fs.cohorts import MembershipRow, format_membership, parse_membership
from gens_fs.errors import CohortNotFound, InvalidMembership, NotADataRoot
from gens_fs.layout import (
    COHORTS_DIR,
    DATA_ROOT_ABOVE,
    GENS_DIR,
    STAGES,
    RootKind,
    ancestor_path,
    base_name,
    inner_folder_kind,
    is_valid_gen_id,
    join,
    membership_cohort,
    membership_path,
    relpath_under,
    root_kind,
)
from gens_fs.store import GensStore


class DataRoot:
    """A data root: ``gens/`` and ``cohorts/`` side by side on one filesystem.
    ``engine``, ``retry`` and ``limit``: as for :class:`~gens_fs.store.GensStore`."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        fs: Any = None,
        engine: Engine = "fsspec",
        retry: RetryPolicy | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        backend = open_backend(
            root, storage_options=storage_options, fs=fs, engine=engine, retry=retry, limit=limit
        )
        self.backend = SyncBackend(backend)

    @property
    def capabilities(self) -> Capabilities:
        """What the storage guarantees (exclusive create, hash in listings, ...)."""
        return self.backend.capabilities

    @property
    def root(self) -> str:
        return self.backend.root

    @property
    def gens_root(self) -> str:
        return join(self.root, GENS_DIR)

    @property
    def url(self) -> str:
        """The data root as a user would type it (a plain path on local disk)."""
        return self.backend.url(self.root)

    def store(self, *, side_writes: bool = False) -> GensStore:
        """A ``GensStore`` on this data root's ``gens/`` (same filesystem); with
        ``side_writes`` it also writes raw texts under ``3_generation/`` here."""
        return GensStore.on(
            self.backend.at(self.gens_root), side_write_root=self.root if side_writes else None
        )

    def membership_file(self, cohort_id: str) -> str:
        return join(self.root, membership_path(cohort_id))

    def read_membership(self, cohort_id: str) -> list[MembershipRow]:
        path = self.membership_file(cohort_id)
        data = self.backend.read_many([path])[path]
        if data is None:
            raise CohortNotFound(
                f"no cohort {cohort_id!r}: {path} does not exist "
                f"(known cohorts: {', '.join(self.cohort_ids()) or 'none'})"
            )
        return parse_membership(data, where=path)

    def read_memberships(
        self, cohort_ids: Iterable[str] | None = None
    ) -> dict[str, list[MembershipRow] | InvalidMembership]:
        """Every cohort's rows, in one listing and one batch of GETs (one per cohort);
        ``cohort_ids`` when the caller listed them already (no listing then).

        A file that does not parse comes back as its ``InvalidMembership`` error, so a
        caller looking at all cohorts can report it and go on.
        """
        ids = self.cohort_ids() if cohort_ids is None else cohort_ids
        paths = {c: self.membership_file(c) for c in ids}
        data = self.backend.read_many(list(paths.values()))
        out: dict[str, list[MembershipRow] | InvalidMembership] = {}
        for cohort_id, path in paths.items():
            raw = data[path]
            if raw is None:  # removed since the listing
                continue
            try:
                out[cohort_id] = parse_membership(raw, where=path)
            except InvalidMembership as exc:
                out[cohort_id] = exc
        return out

    def write_membership(
        self, cohort_id: str, rows: Iterable[MembershipRow], *, durable: bool = False
    ) -> None:
        """Write the cohort's ``membership.csv`` (atomically on local disk; one PUT on S3);
        ``durable``: on local disk, on disk (file and folder ``fsync``ed) before it
        returns."""
        path = self.membership_file(cohort_id)
        backend = self.backend.durable() if durable else self.backend
        backend.write_many({path: format_membership(rows)})

    def cohort_ids(self) -> list[str]:
        """The cohorts that have a ``membership.csv``, sorted: one listing of ``cohorts/``."""
        found = self.backend.listing(join(self.root, COHORTS_DIR))
        relpaths = (relpath_under(self.root, path) or "" for path in found)
        return sorted({c for r in relpaths if (c := membership_cohort(r)) is not None})


def open_data_root(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> DataRoot:
    """``data_root`` itself if it is a ``DataRoot`` already, else a new one on it."""
    if isinstance(data_root, DataRoot):
        return data_root
    return DataRoot(data_root, storage_options=storage_options)


def _rows(
    rows: Iterable[MembershipRow | Mapping[str, str] | tuple[str, str]],
) -> list[MembershipRow]:
    out = []
    for row in rows:
        if isinstance(row, MembershipRow):
            out.append(row)
        elif isinstance(row, tuple):
            out.append(MembershipRow(stage=row[0], gen_id=row[1]))
        else:
            out.append(MembershipRow(stage=row["stage"], gen_id=row["gen_id"]))
    return out


def read_membership(
    data_root: str | os.PathLike[str],
    cohort_id: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[MembershipRow]:
    """The rows of a cohort's ``membership.csv`` (``CohortNotFound`` if it has none)."""
    return DataRoot(data_root, storage_options=storage_options).read_membership(cohort_id)


def write_membership(
    data_root: str | os.PathLike[str],
    cohort_id: str,
    rows: Iterable[MembershipRow | Mapping[str, str] | tuple[str, str]],
    *,
    storage_options: Mapping[str, Any] | None = None,
    durable: bool = False,
) -> None:
    """Write a cohort's ``membership.csv`` (atomically on local disk; one PUT on S3;
    ``durable``: see :meth:`DataRoot.write_membership`)."""
    root = DataRoot(data_root, storage_options=storage_options)
    root.write_membership(cohort_id, _rows(rows), durable=durable)


def cohort_ids(
    data_root: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """The cohorts that have a ``membership.csv``, sorted: one listing."""
    return DataRoot(data_root, storage_options=storage_options).cohort_ids()


_ROOT_ADVICE = "give the folder that holds gens/ and cohorts/"
# How many names a refusal quotes from what a root holds.
_NAMES_QUOTED = 3


def require_data_root(
    backend: SyncBackend, *, what: str = "data root", allow_empty: bool = False, if_empty: str = ""
) -> None:
    """Raise ``NotADataRoot`` unless ``backend.root`` looks like a data root: it holds
    ``gens/`` or ``cohorts/`` (on S3: something is stored under one of them). One listing of
    the root's first level (one ``ListObjectsV2``, which also fails on a missing bucket).

    A part of a data root (a gens root, a stage folder, ``cohorts/``, a generation folder;
    see :func:`refuse_misplaced_root`) is always refused, with the data root above it as
    the hint, and so is an absent folder and one that holds something else. A root that
    holds nothing at all (an empty folder, an S3 prefix with nothing under it: a mistyped
    one) passes only with ``allow_empty``; ``if_empty`` ends its refusal, to say how to
    proceed.
    """
    found = backend.children(backend.root, stop_at=(GENS_DIR, COHORTS_DIR))
    kind = _root_kind(backend, found)
    if kind == "data":
        return
    url = backend.url(backend.root)
    if kind != "other":
        raise NotADataRoot(f"{what} {url} {_misplaced(backend, kind, found)}")
    if found.exists is False:
        raise NotADataRoot(f"{what} {url} does not exist: {_ROOT_ADVICE}")
    held = sorted(f"{n}/" for n in found.folders if not n.startswith("."))
    held += sorted(n for n in found.files if not n.startswith("."))
    if held:
        raise NotADataRoot(
            f"{what} {url} holds neither gens/ nor cohorts/ (it holds {_quoted(held)}): "
            f"{_ROOT_ADVICE}"
        )
    if not allow_empty:
        state = "holds nothing" if found.exists is None else "holds neither gens/ nor cohorts/"
        raise NotADataRoot(f"{what} {url} {state}: {_ROOT_ADVICE}{if_empty}")


def refuse_misplaced_root(backend: SyncBackend, *, what: str = "data root") -> Children:
    """Raise ``NotADataRoot`` when ``backend.root`` looks like a part of a data root rather
    than one: a gens root (it holds stage folders), a stage folder (named after a stage and
    holding gen_id folders, or holding folders with a generation's files: one of them is
    looked into to be sure), the ``cohorts/`` folder (one holding ``membership.csv`` is
    looked for), a generation folder (it holds ``metadata.json`` and a text). A data root,
    an empty or absent folder, or one holding something else passes: what a destination
    may be. One listing of the root's first level (two when a folder inside must tell),
    returned: what the root holds at its first level."""
    found = backend.children(backend.root, stop_at=(GENS_DIR, COHORTS_DIR))
    kind = _root_kind(backend, found, confirm=True)
    if kind not in ("data", "other"):
        raise NotADataRoot(f"{what} {backend.url(backend.root)} {_misplaced(backend, kind, found)}")
    return found


def _root_kind(backend: SyncBackend, found: Children, *, confirm: bool = False) -> RootKind:
    """:func:`gens_fs.layout.root_kind`, and for a root holding folders named like gen_ids
    one more listing, of the first of them, when the name does not tell (or, ``confirm``,
    to be sure of what the name tells: a folder named ``essay`` may be anything)."""
    kind = root_kind(found.folders, name=base_name(backend.root), files=found.files)
    named_like_ids = sorted(f for f in found.folders if is_valid_gen_id(f))
    if named_like_ids and (kind == "other" or (confirm and kind in ("stage", "cohorts"))):
        inner = backend.children(join(backend.root, named_like_ids[0]))
        kind = inner_folder_kind(inner.files)
    return kind


def _misplaced(backend: SyncBackend, kind: RootKind, found: Children) -> str:
    """What a part of a data root given as a root looks like, and the data root above it."""
    name = base_name(backend.root)
    folders = _quoted([f"{f}/" for f in sorted(found.folders) if is_valid_gen_id(f)])
    if kind == "gens":
        looks = f"a gens root (it holds {', '.join(f'{s}/' for s in STAGES if s in found.folders)})"
    elif kind == "stage":
        stage = f"the {name} stage folder" if name in STAGES else "a stage folder"
        looks = f"{stage} of a gens root (it holds generation folders: {folders})"
    elif kind == "cohorts":
        looks = f"the cohorts/ folder of a data root (it holds {folders})"
    else:
        files = _quoted(sorted(f for f in found.files if not f.startswith(".")))
        looks = f"a generation folder (it holds {files})"
    above = ancestor_path(backend.root, DATA_ROOT_ABOVE[kind])
    hint = f"did you mean {backend.url(above)}?" if above else "give the data root above it"
    return f"looks like {looks}; {hint}"


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMES_QUOTED])
    return shown if len(names) <= _NAMES_QUOTED else f"{shown}, ..."
