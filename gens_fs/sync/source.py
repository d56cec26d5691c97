"""What planning a sync reads, batched, and keeps: the bytes read from the source are kept
(:attr:`SourceReads.prefetched`) and written as they are by the copy, never read twice.

* a cohort's ``membership.csv``, or a selection's ``metadata.json`` (for ``where``), and
  the ``metadata.json`` of the generations and their ancestors (one batch per lineage
  level): the scope;
* the ``metadata.json`` of each essay and evaluation about to be committed: its parent;
* the stage of the parents that are outside the scope and not at the destination (one
  listing, only when there are any: is the parent in the source at all?);
* the membership CSVs to copy, when a generation is copied or held: the generations each
  one lists;
* the MD5 of the files whose listing gives none, where the comparison needs one
  (:func:`fill_hashes`).

A transient failure of one read (after the retries) makes that file unreadable, reported
with why (:attr:`SourceReads.unreadable`), and the sync goes on without it: a membership
CSV is held back, a generation whose ``metadata.json`` it is, held; the cohort of
``--cohort`` whose own ``membership.csv`` cannot be read gives an empty scope (nothing
copied, the CSV reported). A file ``--checksum`` cannot hash is copied again instead of
compared (:func:`fill_hashes`' ``failed``). Any other failure raises (access denied as
``AccessDenied``, naming the file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gens_fs.backends import SyncBackend
from gens_fs.backends.file_table import FileTable
from gens_fs.backends.retry import is_transient
from gens_fs.cohorts import parse_membership
from gens_fs.errors import CohortNotFound, GensError
from gens_fs.layout import (
    GenKey,
    generation_of,
    join,
    membership_path,
    metadata_relpath,
    stage_folder,
)
from gens_fs.listing import Files, Lister, Listing, list_data_root
from gens_fs.models import GenerationMetadata, read_metadata
from gens_fs.selection import Selection, judged_object
from gens_fs.sync.compare import hash_by_reading, hashes_needed
from gens_fs.sync.plan import MembershipKeys, ParentIds
from gens_fs.sync.scope import SyncScope, close_over_parents

log = logging.getLogger(__name__)

# Files hashed per call: one batch's reads in flight at a time, not the whole listing's.
_HASH_BATCH = 256


class SourceReads:
    """The source of one sync, and the bytes read from it while planning, by relpath."""

    def __init__(self, source: SyncBackend, lister: Lister = list_data_root) -> None:
        self.source = source
        self.lister = lister
        self.prefetched: dict[str, bytes] = {}
        self._listed: dict[str, Listing] = {}  # by folder: what listed it
        self.unreadable: dict[str, str] = {}  # relpath -> why, after the retries

    def scope(
        self,
        stages: Iterable[str] | None,
        cohort: str | None,
        selection: Selection | None = None,
        *,
        follow_symlinks: bool = False,
    ) -> SyncScope:
        """The scope. A cohort's rows, or with a ``selection`` the generations of
        ``stages`` it picks (from the source's listing of those stages, and for a
        ``where`` one GET per ``metadata.json``, batched), and all their ancestors (one
        batch of ``metadata.json`` per lineage level). A selection leaves ``cohorts/`` out,
        a cohort's ``membership.csv`` too: it would list generations left behind."""
        if cohort is None and selection is None:
            return SyncScope.build(stages)
        chosen = SyncScope.build(stages).stages
        if cohort is None:
            wide = [stage_folder(s) for s in chosen]
            candidates = list(self.listing(wide, follow_symlinks=follow_symlinks).generations)
        else:
            candidates = [k for k in self._cohort_rows(cohort) if not stages or k[0] in chosen]
        if selection is not None:
            candidates = self._select(candidates, selection)
            cohort = None
        generations = close_over_parents(candidates, self._read_parents)
        return SyncScope.build(stages, cohort=cohort, generations=generations)

    def _cohort_rows(self, cohort: str) -> list[GenKey]:
        """The generations ``cohort``'s ``membership.csv`` lists (read once, kept for the
        copy); none when it cannot be read (see :attr:`unreadable`). ``CohortNotFound``
        when it has none."""
        relpath = membership_path(cohort)
        path = join(self.source.root, relpath)
        # The listing first: a missing bucket is a StorageError, not "no such cohort".
        self.source.scan([join(self.source.root, relpath.rsplit("/", 1)[0])])
        if self.read([relpath]):  # unreadable: nothing to copy, the CSV reported
            return []
        data = self.prefetched.get(relpath)  # copied as read
        if data is None:
            raise CohortNotFound(f"no cohort {cohort!r} in the source: {path} does not exist")
        return [(row.stage, row.gen_id) for row in parse_membership(data, where=path)]

    def _select(self, candidates: list[GenKey], selection: Selection) -> list[GenKey]:
        """The ``candidates`` ``selection`` picks: its globs on the gen_ids, then its
        ``where`` on the ``metadata.json`` of the rest (one batch, kept for the copy). One
        that cannot be read is left out, with a warning."""
        picked = [k for k in candidates if selection.picks_id(k[1])]
        if not selection.needs_metadata:
            return picked
        relpaths = {k: metadata_relpath(k) for k in picked}
        for relpath, why in self.read(relpaths.values()).items():
            log.warning("sync: %s left out: --where cannot be judged: %s", relpath, why)
        return [
            key
            for key, relpath in relpaths.items()
            if selection.holds(judged_object(self.prefetched.get(relpath), where=relpath))
        ]

    def _read_parents(self, keys: list[GenKey]) -> dict[GenKey, str | None]:
        found = self.parents([metadata_relpath(k) for k in keys])
        return {k: p if isinstance(p, str) else None for k in keys if (p := found.get(k))}

    def has_listed(self, folders: Iterable[str]) -> bool:
        """Whether any of ``folders`` was listed already (by :meth:`listing`)."""
        return any(folder in self._listed for folder in folders)

    def listing(self, folders: Iterable[str], *, follow_symlinks: bool = False) -> Listing:
        """The source's listing of ``folders`` (data-root relpaths): each folder is listed
        once per sync, those not listed yet together (side by side)."""
        wanted = tuple(folders)
        fresh = [f for f in wanted if f not in self._listed]
        if fresh:
            found = self.lister(self.source, fresh, follow_symlinks=follow_symlinks)
            self._listed.update(dict.fromkeys(fresh, found))
            if len(fresh) == len(wanted):  # the usual sync: one listing of exactly these
                return found
        parts = {id(part): part for part in (self._listed[f] for f in wanted)}.values()
        under = tuple(f + "/" for f in wanted)
        return Listing(
            FileTable.merged(
                FileTable.of(p.files).only(lambda r: r.startswith(under)) for p in parts
            ),
            tuple(
                entry
                for part in parts
                for entry in part.ignored
                if entry.path.startswith(under) or entry.path in wanted
            ),
        )

    def read(self, relpaths: Iterable[str]) -> dict[str, str]:
        """Read the files of ``relpaths`` not read yet (one batch). Returns those that could
        not be read, with why; a missing file is neither read nor unreadable."""
        paths = {r: join(self.source.root, r) for r in relpaths if r not in self.prefetched}
        data = self.source.read_each(list(paths.values())) if paths else {}
        unreadable: dict[str, str] = {}
        for relpath, path in paths.items():
            blob = data.get(path)
            if isinstance(blob, Exception):
                if not is_transient(blob):
                    self.source.raise_for(blob, "reading", path)
                log.warning("sync: cannot read %s: %s", relpath, blob)
                unreadable[relpath] = self.unreadable[relpath] = f"{type(blob).__name__}: {blob}"
            elif blob is not None:
                self.prefetched[relpath] = blob
        return unreadable

    def parents(self, metadata_relpaths: list[str]) -> ParentIds:
        """Each ``metadata.json``'s ``parent_gen_id`` (``""``: it names none), its
        ``InvalidMetadata`` when it does not parse, ``None`` when it could not be read."""
        self.read(metadata_relpaths)
        out: dict[GenKey, str | GensError | None] = {}
        for relpath in metadata_relpaths:
            key = generation_of(relpath)
            if key is not None:
                meta = read_metadata(self.prefetched.get(relpath), where=relpath)
                out[key] = meta.parent_gen_id if isinstance(meta, GenerationMetadata) else meta
        return out

    def committed(self, parents: list[GenKey]) -> dict[GenKey, bool]:
        """Whether the source has each of ``parents`` committed: one listing of each of their
        stages (side by side), only when there are any."""
        if not parents:
            return {}
        stages = SyncScope.build(sorted({stage for stage, _gen_id in parents}))
        found = list_data_root(self.source, stages.roots()).files
        return {parent: metadata_relpath(parent) in found for parent in parents}

    def memberships(self, relpaths: list[str]) -> tuple[dict[str, MembershipKeys], dict[str, str]]:
        """The generations each membership CSV lists (``None``: it does not parse), and
        those that could not be read, with why."""
        unreadable = self.read(relpaths)
        rows: dict[str, MembershipKeys] = {}
        for relpath in relpaths:
            blob = self.prefetched.get(relpath)
            if blob is None:
                continue
            try:
                rows[relpath] = [(r.stage, r.gen_id) for r in parse_membership(blob, where=relpath)]
            except GensError:
                rows[relpath] = None  # not this sync's to judge: copied as it is
        return rows, unreadable


def gone_from_source(
    reads: SourceReads,
    target: SyncBackend,
    scope: SyncScope,
    stages: Iterable[str] | None,
    selection: Selection,
    *,
    follow_symlinks: bool = False,
) -> SyncScope:
    """``scope`` with the generations of the chosen ``stages`` that the destination has and
    the source has not at all, where ``selection`` picks them: with ``--delete``, a
    selection applies to both sides (as rclone's filters do), so these are deleted. The
    globs judge their gen_ids; a ``where`` judges their ``metadata.json`` at the
    destination (one batch of reads, only for them). Costs one listing of those stages at
    the destination."""
    assert scope.generations is not None  # a selection's scope
    wide = [stage_folder(s) for s in SyncScope.build(stages).stages]
    at_source = reads.listing(wide, follow_symlinks=follow_symlinks).generations
    at_target = reads.lister(target, wide, follow_symlinks=follow_symlinks).generations
    gone = [k for k in at_target if k not in at_source and selection.picks_id(k[1])]
    if gone and selection.needs_metadata:
        paths = {k: join(target.root, metadata_relpath(k)) for k in gone}
        found = target.read_each(list(paths.values()))
        gone = [
            k
            for k, path in paths.items()
            if selection.holds(judged_object(_bytes_or_none(found.get(path)), where=path))
        ]
    if not gone:
        return scope
    return SyncScope.build(generations=scope.generations | set(gone))


def _bytes_or_none(blob: bytes | Exception | None) -> bytes | None:
    return blob if isinstance(blob, bytes) else None


def fill_hashes(
    source: SyncBackend,
    target: SyncBackend,
    src: Files,
    dst: Files,
    *,
    checksum: bool,
    failed: dict[str, str] | None = None,
) -> tuple[Files, Files]:
    """Both listings with the MD5 of the files the comparison needs hashed (see
    :func:`gens_fs.sync.compare.hashes_needed`): on local disk and in memory no request,
    elsewhere one GET each.

    A file either side could not read (a transient failure, after the retries) is left
    out of the destination's files, so that it is copied again rather than compared, and
    put in ``failed`` (relpath -> why)."""
    need_src, need_dst = hashes_needed(
        src,
        dst,
        src_reads=hash_by_reading(source.capabilities),
        dst_reads=hash_by_reading(target.capabilities),
        checksum=checksum,
    )
    unread: dict[str, str] = {}
    src_out = _with_md5(source, src, need_src, unread, fresh=checksum)
    dst_out = _with_md5(target, dst, need_dst, unread, fresh=checksum)
    for relpath, why in unread.items():
        log.warning("sync: cannot read %s to compare it: %s", relpath, why)
        if failed is not None:
            failed[relpath] = why
    if unread:  # copied again rather than compared
        dst_out = FileTable.of(dst_out).only(lambda relpath: relpath not in unread)
    return src_out, dst_out


def _with_md5(
    backend: SyncBackend, files: Files, relpaths: list[str], unread: dict[str, str], *, fresh: bool
) -> Files:
    """``files`` with the MD5 of each of ``relpaths`` as its hash (a file gone since the
    listing keeps what it had, so it compares by size; one that could not be read goes
    in ``unread``)."""
    if not relpaths:
        return files
    found: dict[str, str] = {}
    for start in range(0, len(relpaths), _HASH_BATCH):
        paths = {join(backend.root, r): r for r in relpaths[start : start + _HASH_BATCH]}
        for path, digest in backend.md5_each(list(paths), fresh=fresh).items():
            if isinstance(digest, str):
                found[paths[path]] = digest
            elif is_transient(digest):
                unread[paths[path]] = f"{type(digest).__name__}: {digest}"
            else:
                backend.raise_for(digest, "reading", path)
    return FileTable.of(files).with_hashes(found)
