"""What planning a sync reads, batched, and keeps: the bytes read from the source are kept
(:attr:`SourceReads.prefetched`) and written as they are by the copy, never read twice.

* a cohort's ``membership.csv`` and the ``metadata.json`` of its generations and their
  ancestors (one batch per lineage level): the scope;
* the ``metadata.json`` of each essay and evaluation about to be committed: its parent;
* the stage of the parents that are outside the scope and not at the destination (one
  listing, only when there are any: is the parent in the source at all?);
* the membership CSVs to copy, when a generation is copied or held: the generations each
  one lists;
* the MD5 of the files whose listing gives none, where the comparison needs one
  (:func:`fill_hashes`).

A transient failure of one read (after the retries) makes that file unreadable, reported
with why; any other failure raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gens_fs.backends import SyncBackend
from gens_fs.backends.file_table import FileTable
from gens_fs.backends.retry import is_transient
from gens_fs.cohorts import parse_membership
from gens_fs.errors import CohortNotFound, GensError
from gens_fs.layout import GenKey, generation_of, join, membership_path, metadata_relpath
from gens_fs.listing import Files, list_data_root
from gens_fs.models import GenerationMetadata, read_metadata
from gens_fs.sync.compare import hash_by_reading, hashes_needed
from gens_fs.sync.plan import MembershipKeys, ParentIds
from gens_fs.sync.scope import SyncScope, close_over_parents

log = logging.getLogger(__name__)

# Files hashed per call: one batch's reads in flight at a time, not the whole listing's.
_HASH_BATCH = 256


class SourceReads:
    """The source of one sync, and the bytes read from it while planning, by relpath."""

    def __init__(self, source: SyncBackend) -> None:
        self.source = source
        self.prefetched: dict[str, bytes] = {}

    def scope(self, stages: Iterable[str] | None, cohort: str | None) -> SyncScope:
        """The scope; for a cohort, its rows and their ancestors, read from the source."""
        if cohort is None:
            return SyncScope.build(stages)
        relpath = membership_path(cohort)
        path = join(self.source.root, relpath)
        # The listing first: a missing bucket is a StorageError, not "no such cohort".
        self.source.scan([join(self.source.root, relpath.rsplit("/", 1)[0])])
        data = self.source.read_many([path])[path]
        if data is None:
            raise CohortNotFound(f"no cohort {cohort!r} in the source: {path} does not exist")
        self.prefetched[relpath] = data  # copied as read
        chosen = set(stages or ())
        rows = [
            (row.stage, row.gen_id)
            for row in parse_membership(data, where=path)
            if not chosen or row.stage in chosen
        ]

        def read_parents(keys: list[GenKey]) -> dict[GenKey, str | None]:
            found = self.parents([metadata_relpath(k) for k in keys])
            return {k: p if isinstance(p, str) else None for k in keys if (p := found.get(k))}

        generations = close_over_parents(rows, read_parents)
        return SyncScope.build(stages, cohort=cohort, generations=generations)

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
                    self.source.raise_for(blob)
                log.warning("sync: cannot read %s: %s", relpath, blob)
                unreadable[relpath] = f"{type(blob).__name__}: {blob}"
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


def fill_hashes(
    source: SyncBackend, target: SyncBackend, src: Files, dst: Files, *, checksum: bool
) -> tuple[Files, Files]:
    """Both listings with the MD5 of the files the comparison needs hashed (see
    :func:`gens_fs.sync.compare.hashes_needed`): on local disk and in memory no request,
    elsewhere one GET each."""
    need_src, need_dst = hashes_needed(
        src,
        dst,
        src_reads=hash_by_reading(source.capabilities),
        dst_reads=hash_by_reading(target.capabilities),
        checksum=checksum,
    )
    return (
        _with_md5(source, src, need_src, fresh=checksum),
        _with_md5(target, dst, need_dst, fresh=checksum),
    )


def _with_md5(backend: SyncBackend, files: Files, relpaths: list[str], *, fresh: bool) -> Files:
    """``files`` with the MD5 of each of ``relpaths`` as its hash (a file gone since the
    listing keeps what it had, so it compares by size)."""
    if not relpaths:
        return files
    found: dict[str, str] = {}
    for start in range(0, len(relpaths), _HASH_BATCH):
        paths = {join(backend.root, r): r for r in relpaths[start : start + _HASH_BATCH]}
        for path, digest in backend.md5_many(list(paths), fresh=fresh).items():
            found[paths[path]] = digest
    return FileTable.of(files).with_hashes(found)
