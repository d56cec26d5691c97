"""What a data root holds, as one listing shows it: the one model of a store's files.

:func:`list_data_root` is the one function that lists a data root: one recursive listing
per folder asked for (side by side on an object store), over the backend protocol, with no
request per file. Its :class:`Listing` maps each file's path relative to the data root
(``gens/essay/e1/raw.txt``) to its :class:`~gens_fs.backends.FileInfo` (size, and the hash
the listing gave for free, as the backend declares it), and keeps the entries the listing
left out without reading them (symbolic links, special files). Hidden files (our writers'
temporary files among them) are left out silently.

Everything that reasons over many generations reads the same views of it: ``check``,
``ls`` and ``stats`` (through :mod:`gens_fs.inventory`), ``sync`` (its two sides) and the
exports: :attr:`Listing.generations` (each generation folder and its files),
:meth:`Listing.is_committed`, :meth:`Listing.strays`, :attr:`Listing.cohort_ids`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from gens_fs.backends import FileInfo, Ignored, Scan, SyncBackend
from gens_fs.backends.file_table import FileTable, pairs
from gens_fs.layout import (
    COHORTS_DIR,
    GenKey,
    GensFile,
    Stray,
    classify_gens_file,
    cohort_strays,
    is_hidden,
    join,
    membership_cohort,
    metadata_relpath,
    pipeline_order,
    relpath_under,
)

Files = Mapping[str, FileInfo]
"""Files by data-root relpath."""


@dataclass(frozen=True)
class Listing:
    """The files a listing found under a data root, by relpath, and what it left out
    (``ignored``, data-root relpaths). Pure data; the views are computed once, on use."""

    files: Files
    ignored: tuple[Ignored, ...] = ()

    @cached_property
    def generations(self) -> dict[GenKey, dict[str, FileInfo]]:
        """Each generation folder listed, in pipeline order: its files by name (committed
        ones have ``metadata.json``; incomplete ones do not)."""
        found: dict[GenKey, dict[str, FileInfo]] = {}
        for relpath, info in self.files.items():
            entry = classify_gens_file(relpath)
            if isinstance(entry, GensFile):
                found.setdefault((entry.stage, entry.gen_id), {})[entry.name] = info
        return dict(sorted(found.items(), key=lambda item: pipeline_order(item[0])))

    def is_committed(self, key: GenKey) -> bool:
        """True when the listing shows the generation's ``metadata.json``."""
        return metadata_relpath(key) in self.files

    @cached_property
    def cohort_ids(self) -> list[str]:
        """The cohorts whose ``membership.csv`` was listed, sorted."""
        return sorted({c for r in self.files if (c := membership_cohort(r)) is not None})

    def strays(self, fitting: Files | None = None) -> list[Stray]:
        """The listed entries that do not fit the layout, each folder once, sorted.
        ``fitting``: files the caller knows to fit (not looked at again; both listings are
        walked side by side)."""
        if fitting is self.files:
            return []  # every file fits
        found: dict[str, str] = {}
        cohort_files: list[str] = []
        for relpath, mine, fits in pairs(self.files, fitting or {}):
            if mine is None or fits is not None:
                continue
            if relpath.startswith(COHORTS_DIR + "/"):
                cohort_files.append(relpath)
            elif isinstance(entry := classify_gens_file(relpath), Stray):
                found.setdefault(entry.path, entry.reason)
        return sorted([Stray(p, r) for p, r in found.items()] + cohort_strays(cohort_files))

    def only(self, keep: Callable[[str], bool]) -> Listing:
        """The same listing, only the files and ignored entries ``keep`` accepts."""
        return Listing(
            FileTable.of(self.files).only(keep), tuple(i for i in self.ignored if keep(i.path))
        )


def list_data_root(
    backend: SyncBackend, folders: Iterable[str], *, follow_symlinks: bool = False
) -> Listing:
    """Every file under ``folders`` (relpaths of the data root ``backend.root``): one
    recursive listing each, side by side on an object store (LIST pages only).

    A file keeps the hash its listing gave only where the backend declares one
    (``Capabilities.listing_hash``). ``follow_symlinks``: see
    :meth:`gens_fs.backends.local.LocalBackend.scan`."""
    return listing_of(
        backend, backend.scan(scan_paths(backend, folders), follow_symlinks=follow_symlinks)
    )


def scan_paths(backend: SyncBackend, folders: Iterable[str]) -> list[str]:
    """The backend paths of a data root's ``folders``, as :meth:`SyncBackend.scan` takes
    them."""
    return [join(backend.root, f) for f in folders]


def listing_of(backend: SyncBackend, scan: Scan) -> Listing:
    """The :class:`Listing` of what ``backend.scan`` found under the data root (see
    :func:`list_data_root`), as a compact :class:`FileTable`."""
    found = FileTable.of(scan.files)
    # Every path under the root, as a scan of its folders gives them: the relpaths are a
    # view of the scan's own arrays (a million-file listing is never held twice).
    files = found.under(join(backend.root, ""))
    if files is None:
        files = FileTable.of(
            (relpath, info)
            for path, info in found.items()
            if (relpath := relpath_under(backend.root, path)) is not None
        )
    files = files.only(lambda relpath: not is_hidden(relpath))
    if backend.capabilities.listing_hash is None:
        files = files.without_hashes()
    ignored = tuple(
        Ignored(relpath, entry.reason)
        for entry in scan.ignored
        if (relpath := relpath_under(backend.root, entry.path)) is not None
        and not is_hidden(relpath)
    )
    return Listing(files, ignored)


class Lister(Protocol):
    """How a sync lists a side: :func:`~gens_fs.listing.list_data_root` (the default), or
    the same listing from tasks on a cluster (``gens_fs.dask_sync``)."""

    def __call__(
        self, backend: SyncBackend, folders: Sequence[str], *, follow_symlinks: bool = False
    ) -> Listing: ...
