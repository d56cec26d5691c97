"""``GensStore``: read, write, list and delete generations under one gens root.

The way in to generations, one (or one batch) at a time; the sync copies whole stores as
files instead (``gens_fs.sync``). It builds paths with ``layout``,
moves bytes with one batched ``Backend`` call per step, and keeps the spec's invariants:

* ``metadata.json`` is the commit marker: written last, removed first. A generation is
  *committed* (``exists``, listed by ``gen_ids``, usable as a parent) once it is there.
* Essays and evaluations are written only when their parent is committed.
* Writes are create-only unless ``overwrite=True``; the winner of a race is decided by the
  medium's exclusive create of ``metadata.json`` (see ``gens_fs.backends.Backend.create``).
* Optional raw side-writes (the spec's Notes) are best effort: after the commit, never
  failing it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

from gens_fs.backends import (
    Capabilities,
    Engine,
    RateLimit,
    RetryPolicy,
    SyncBackend,
    open_backend,
)
from gens_fs.errors import (
    GenerationExists,
    GenerationNotFound,
    InvalidMetadata,
    ParentNotFound,
    UndecodableText,
    UnknownArtifact,
)
from gens_fs.layout import (
    ARTIFACT_FILES,
    METADATA_FILE,
    PARENT_STAGE,
    TEXT_FILES,
    GenKey,
    artifact_path,
    generation_dir,
    is_valid_gen_id,
    join,
    parse_gens_path,
    raw_side_write_path,
    relpath_under,
    validate_gen_id,
    validate_stage,
)
from gens_fs.models import (
    Generation,
    GenerationMetadata,
    MetadataResult,
    parse_metadata,
    parse_metadata_json,
    read_metadata,
    require_spec_fields,
)

log = logging.getLogger(__name__)

_NOT_FOUND_ADVICE = (
    "check the gen_id and the stage (gens-fs ls DATA_ROOT lists them); for a cohort's "
    "generation, that its membership.csv lists the right gen_id and that upstream "
    "parents exist"
)


class GensStore:
    """A gens root (``<data_root>/gens``) on any fsspec filesystem.

    ``root`` is a local path, a ``file://``, ``memory://`` or ``s3://bucket/prefix/gens``
    URL, or any fsspec URL (chained ones too); with ``fs=`` a filesystem already built and a
    path inside it. ``storage_options`` go to fsspec as they are (S3 gets tuned defaults
    underneath: see ``gens_fs.backends.s3.S3_DEFAULT_OPTIONS``). What the storage
    guarantees is :attr:`capabilities`. ``engine="obstore"`` serves an ``s3://``, ``gs://``
    or ``az://`` root through obstore instead of fsspec (``pip install 'gens_fs[obstore]'``;
    the same ``storage_options`` keys where obstore has an equivalent).

    ``retry``: how a request that fails with a transient error (a dropped connection, a
    5xx, a timeout) is retried, on every storage but local disk and memory; by default
    :class:`~gens_fs.backends.retry.RetryPolicy`'s 5 attempts (on S3, the attempts the
    options' ``config_kwargs.retries`` ask for). ``limit``: a
    :class:`~gens_fs.backends.limits.RateLimit` every request is charged to (requests and
    bytes a second; shared with every store, data root or sync given the same object).

    ``side_write_root``, a data root on the same filesystem (path or URL), turns on the
    spec's raw side-writes: each ``write`` with a raw text also writes it to
    ``<side_write_root>/3_generation/<stage>_raw/<gen_id>.txt``, after the commit and best
    effort (a failure is logged as a warning and never fails the write).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        fs: Any = None,
        side_write_root: str | os.PathLike[str] | None = None,
        engine: Engine = "fsspec",
        retry: RetryPolicy | None = None,
        limit: RateLimit | None = None,
    ) -> None:
        backend = open_backend(
            root, storage_options=storage_options, fs=fs, engine=engine, retry=retry, limit=limit
        )
        self._attach(SyncBackend(backend), side_write_root)

    @classmethod
    def on(
        cls, backend: SyncBackend, *, side_write_root: str | os.PathLike[str] | None = None
    ) -> GensStore:
        """A store on a backend already opened (a ``DataRoot``'s, for its ``gens/``)."""
        store = cls.__new__(cls)
        store._attach(backend, side_write_root)
        return store

    def _attach(self, backend: SyncBackend, side_write_root: str | os.PathLike[str] | None) -> None:
        self._backend = backend
        self.side_write_root: str | None = None
        if side_write_root is not None:
            self.side_write_root = backend.backend.path_of(os.fspath(side_write_root))

    @property
    def root(self) -> str:
        """The gens root as a path of its storage (no protocol)."""
        return self._backend.root

    @property
    def url(self) -> str:
        """The gens root as a user would type it (a plain path on local disk)."""
        return self._backend.url(self.root)

    @property
    def capabilities(self) -> Capabilities:
        """What the storage guarantees (exclusive create, hash in listings, ...)."""
        return self._backend.capabilities

    @property
    def exclusive_create(self) -> bool:
        """True when create-only writes are atomic against concurrent writers here."""
        return self._backend.exclusive_create

    def __repr__(self) -> str:
        return f"GensStore({self.url})"

    def path(self, stage: str, gen_id: str, filename: str | None = None) -> str:
        """The full path of a generation directory, or of one file in it."""
        rel = (
            generation_dir(stage, gen_id)
            if filename is None
            else artifact_path(stage, gen_id, filename)
        )
        return join(self.root, rel)

    def _url(self, stage: str, gen_id: str, filename: str | None = None) -> str:
        """:meth:`path` as a user would type it (``s3://bkt/...``), for messages."""
        return self._backend.url(self.path(stage, gen_id, filename))

    # -- reading ---------------------------------------------------------------------------

    def load(self, stage: str, gen_id: str) -> Generation:
        """Read one generation: one request per artifact file, all at once.

        A missing optional file reads as ``None``; ``GenerationNotFound`` when none of the
        files is there.
        """
        return self.load_many(stage, [gen_id])[gen_id]

    def load_many(
        self,
        stage: str,
        gen_ids: Iterable[str],
        *,
        missing: Literal["raise", "skip"] = "raise",
    ) -> dict[str, Generation]:
        """Read many generations of one stage in a single batch (concurrent on S3).

        At most four GETs per generation and no listing. Generations with none of their
        files raise one ``GenerationNotFound`` naming them all, or are left out with
        ``missing="skip"``. The result keeps the order of ``gen_ids``.
        """
        validate_stage(stage)
        ids = list(dict.fromkeys(validate_gen_id(g) for g in gen_ids))
        names = [*TEXT_FILES.values(), METADATA_FILE]
        paths = {(g, n): self.path(stage, g, n) for g in ids for n in names}
        data = self._backend.read_many(list(paths.values()))
        found: dict[str, Generation] = {}
        not_found: list[str] = []
        for gen_id in ids:
            files = {name: data[paths[gen_id, name]] for name in names}
            if all(value is None for value in files.values()):
                not_found.append(gen_id)
                continue
            found[gen_id] = self._build(stage, gen_id, files)
        if not_found and missing == "raise":
            one = len(not_found) == 1
            where = self._url(stage, not_found[0]) if one else self._backend.url(self.root)
            shown = ", ".join(not_found[:10]) + (" ..." if len(not_found) > 10 else "")
            count = "" if one else f" ({len(not_found)} missing)"
            raise GenerationNotFound(
                f"no {stage} generation {shown} under {where}{count}: {_NOT_FOUND_ADVICE}"
            )
        return found

    def _build(self, stage: str, gen_id: str, files: Mapping[str, bytes | None]) -> Generation:
        texts = {
            field: self._decode(files[name], stage, gen_id, name)
            for field, name in TEXT_FILES.items()
        }
        raw_meta = files[METADATA_FILE]
        metadata = None
        if raw_meta is not None:
            where = self._url(stage, gen_id, METADATA_FILE)
            metadata = parse_metadata_json(raw_meta, where=where)
        return Generation(stage=stage, gen_id=gen_id, metadata=metadata, **texts)

    def _decode(self, data: bytes | None, stage: str, gen_id: str, name: str) -> str | None:
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UndecodableText(
                f"{self._url(stage, gen_id, name)} is not UTF-8 text "
                f"(byte {exc.start}: {exc.reason}); inspect or rewrite that file"
            ) from None

    def iter_bytes(self, stage: str, gen_id: str, filename: str) -> Iterator[bytes] | None:
        """One artifact file's exact bytes, streamed in chunks (memory stays bounded for a
        file of any size); no other file of the generation is read.

        ``None`` when the generation lacks that file; ``GenerationNotFound`` when it has no
        file at all (one listing of its directory, only in that case); ``UnknownArtifact``
        for a name that is not one of ``raw.txt``, ``parsed.txt``, ``prompt.txt``,
        ``metadata.json``. On S3: a HEAD, then one ranged GET per chunk.
        """
        if filename not in ARTIFACT_FILES:
            raise UnknownArtifact(
                f"{filename!r} is not a generation file: expected one of "
                f"{', '.join(ARTIFACT_FILES)}"
            )
        chunks = self._backend.iter_file(self.path(stage, gen_id, filename))
        if chunks is None and not self._backend.listing(self.path(stage, gen_id)):
            raise GenerationNotFound(
                f"no {stage} generation {gen_id} under {self._url(stage, gen_id)}: "
                f"{_NOT_FOUND_ADVICE}"
            )
        return chunks

    def metadata_many(self, keys: Iterable[GenKey]) -> dict[GenKey, MetadataResult]:
        """The metadata of many ``(stage, gen_id)`` pairs, any stages, in one batch.

        One GET per ``metadata.json`` and no listing. Problems come back as values, not
        raised (see :func:`~gens_fs.models.read_metadata`), so a caller reasoning over many
        generations can report each one.
        """
        paths = {(s, g): self.path(s, g, METADATA_FILE) for s, g in dict.fromkeys(keys)}
        data = self._backend.read_many(list(paths.values()))
        return {
            key: read_metadata(data[path], where=self._backend.url(path))
            for key, path in paths.items()
        }

    def lineage(self, stage: str, gen_id: str, *, strict: bool = True) -> list[Generation]:
        """The generation and its ancestors, from the draft down to the one asked for.

        One ``load`` per level (at most three, each one batch of four GETs).
        ``GenerationNotFound`` if the generation itself is absent. Every link must be
        committed: with ``strict`` (the default) ``ParentNotFound`` names the first link that
        is missing, incomplete or unnamed; with ``strict=False`` the chain stops above the
        last committed link and is returned as it is, so its first generation is not a
        draft when a link is missing (:meth:`broken_link` says which).
        """
        chain = [self.load(stage, gen_id)]
        while (parent_stage := chain[-1].parent_stage) is not None:
            parent_id = chain[-1].parent_gen_id
            if chain[-1].metadata is None or parent_id is None or not is_valid_gen_id(parent_id):
                break
            parent = self.load_many(parent_stage, [parent_id], missing="skip").get(parent_id)
            if parent is None or not parent.is_committed:
                break
            chain.append(parent)
        chain.reverse()
        if strict and (problem := self.broken_link(chain)) is not None:
            raise ParentNotFound(problem)
        return chain

    def broken_link(self, chain: Sequence[Generation]) -> str | None:
        """Why a chain from :meth:`lineage` (``strict=False``) does not start at a draft:
        the missing link and what to do, or ``None`` when the chain is whole. No I/O."""
        if not chain or (parent_stage := chain[0].parent_stage) is None:
            return None
        child = chain[0]
        what = f"{child.stage} {child.gen_id}"
        if child.metadata is None:
            return (
                f"{what} has no {METADATA_FILE}, so its parent is unknown: the write did not "
                f"finish; rewrite it or delete {self._url(child.stage, child.gen_id)}"
            )
        parent_id = child.parent_gen_id
        if parent_id is None or not is_valid_gen_id(parent_id):
            return (
                f"{what}: parent_gen_id {parent_id or ''!r} does not name a {parent_stage} "
                f"generation; fix {self._url(child.stage, child.gen_id, METADATA_FILE)}"
            )
        return (
            f"parent {parent_stage} {parent_id} of {what} is missing (no "
            f"{self._url(parent_stage, parent_id, METADATA_FILE)}): restore or regenerate "
            f"the {parent_stage}"
        )

    def exists(self, stage: str, gen_id: str) -> bool:
        """True when the generation is committed (its ``metadata.json`` is there).

        One request: a GET of the small ``metadata.json`` (a HEAD on S3 would cost the
        same round trip, and s3fs follows a missing HEAD with a listing).
        """
        path = self.path(stage, gen_id, METADATA_FILE)
        return self._backend.read_many([path])[path] is not None

    def files(self, stage: str) -> dict[str, dict[str, int]]:
        """Every generation directory of ``stage``: gen_id -> {file name: size}.

        One recursive listing (paginated on S3). Incomplete generations (no
        ``metadata.json``) are included; hidden and stray files are not.
        """
        found = self._backend.listing_info_many([join(self.root, validate_stage(stage))])
        out: dict[str, dict[str, int]] = {}
        for path, info in found.items():
            file = parse_gens_path(relpath_under(self.root, path) or "")
            if file is not None and file.stage == stage:
                out.setdefault(file.gen_id, {})[file.name] = info.size
        return dict(sorted(out.items()))

    def gen_ids(self, stage: str) -> list[str]:
        """The committed gen_ids of ``stage``, sorted: one recursive listing."""
        return [g for g, names in self.files(stage).items() if METADATA_FILE in names]

    # -- writing ---------------------------------------------------------------------------

    def write(
        self,
        stage: str,
        gen_id: str,
        *,
        metadata: GenerationMetadata | dict[str, Any],
        raw: str | None = None,
        parsed: str | None = None,
        prompt: str | None = None,
        overwrite: bool = False,
        durable: bool = False,
    ) -> Generation:
        """Write a generation: the text files first, ``metadata.json`` last (the commit).

        Everything is checked before the first byte is written: stage, gen_id, metadata
        (strictly: the spec's ``task_id``, ``template_id`` and ``model_id``, where reading
        accepts the original pipeline's files without them), the parent (an essay's
        draft, an evaluation's essay, committed in this store) and, unless ``overwrite``,
        that the generation is not committed already (``GenerationExists``). The final
        commit is the medium's exclusive create, so of concurrent create-only writers
        exactly one wins where ``exclusive_create`` is True.

        ``metadata.json`` is the metadata's JSON object as given (``to_dict``), indented.
        With ``overwrite=True`` the old ``metadata.json`` is removed first (readers see an
        uncommitted generation, never a mix) and text files not given are removed.

        ``durable``: on local disk, the files and their folder are ``fsync``ed before the
        commit, and the commit before ``write`` returns (object stores: nothing changes).
        """
        meta_path = self.path(stage, gen_id, METADATA_FILE)
        where = self._backend.url(meta_path)
        meta = parse_metadata(metadata, where=where)
        require_spec_fields(meta, where=where)
        texts = {"raw_text": raw, "parsed_text": parsed, "prompt_text": prompt}
        for field, value in texts.items():
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{field.removesuffix('_text')} must be str, not {type(value)}")
        parent_meta = self._parent_metadata_path(stage, gen_id, meta)
        # One round trip answers both questions: is the parent committed, are we?
        probes = [p for p in (parent_meta, None if overwrite else meta_path) if p is not None]
        committed = self._backend.read_many(probes)
        if parent_meta is not None and committed[parent_meta] is None:
            parent_stage, parent_id = PARENT_STAGE[stage], meta.parent_gen_id
            raise ParentNotFound(
                f"{stage} {gen_id}: parent {parent_stage} {parent_id} is not in the store "
                f"(no {self._backend.url(parent_meta)}): write the {parent_stage} first"
            )
        if not overwrite and committed[meta_path] is not None:
            raise self._exists_error(stage, gen_id)
        given = {
            self.path(stage, gen_id, TEXT_FILES[f]): v.encode("utf-8")
            for f, v in texts.items()
            if v is not None
        }
        backend = self._backend.durable() if durable else self._backend
        self._put(backend, (stage, gen_id), given, meta.to_json().encode("utf-8"), overwrite)
        log.debug("wrote %s", self.path(stage, gen_id))
        if raw is not None and self.side_write_root is not None:
            self._side_write_raw(stage, gen_id, raw)
        return Generation(stage=stage, gen_id=gen_id, metadata=meta, **texts)

    def _put(
        self,
        backend: SyncBackend,
        key: GenKey,
        texts: Mapping[str, bytes],
        meta: bytes,
        overwrite: bool,
    ) -> None:
        """The writes of :meth:`write` through ``backend``, once everything is checked:
        the texts, then the commit (over an old one: uncommitted first, and its texts not
        given removed)."""
        stage, gen_id = key
        meta_path = self.path(stage, gen_id, METADATA_FILE)
        if overwrite:
            backend.remove([meta_path])
        backend.write_many(texts)
        if overwrite:
            stale = [self.path(stage, gen_id, name) for name in TEXT_FILES.values()]
            backend.remove(p for p in stale if p not in texts)
            backend.write_many({meta_path: meta})
        elif not backend.create(meta_path, meta):
            raise self._exists_error(stage, gen_id)

    def _side_write_raw(self, stage: str, gen_id: str, raw: str) -> None:
        """Best effort: one more write; any failure is logged, never raised."""
        assert self.side_write_root is not None
        path = join(self.side_write_root, raw_side_write_path(stage, gen_id))
        try:
            self._backend.write_many({path: raw.encode("utf-8")})
        except Exception as exc:
            log.warning("raw side-write of %s %s to %s failed: %s", stage, gen_id, path, exc)

    def _exists_error(self, stage: str, gen_id: str) -> GenerationExists:
        return GenerationExists(
            f"{stage} generation {gen_id} already exists at {self._url(stage, gen_id)}: "
            "pass overwrite=True to replace it, or mint a new gen_id"
        )

    def _parent_metadata_path(
        self, stage: str, gen_id: str, meta: GenerationMetadata
    ) -> str | None:
        """Check the parent pointer's form; return the parent's ``metadata.json`` to probe."""
        parent_stage = PARENT_STAGE[validate_stage(stage)]
        validate_gen_id(gen_id)
        parent_id = meta.parent_gen_id
        if parent_stage is None:
            if parent_id:
                raise InvalidMetadata(
                    f"draft {gen_id}: a draft has no parent, but parent_gen_id is {parent_id!r}"
                )
            return None
        if not parent_id:
            raise ParentNotFound(
                f"{stage} {gen_id} needs a parent_gen_id naming its {parent_stage} generation"
            )
        if not is_valid_gen_id(parent_id):
            raise InvalidMetadata(f"{stage} {gen_id}: parent_gen_id {parent_id!r} is not valid")
        return self.path(parent_stage, parent_id, METADATA_FILE)

    def delete(self, stage: str, gen_id: str) -> None:
        """Delete a generation: ``metadata.json`` first (uncommit), then every other file.

        ``GenerationNotFound`` when there is nothing to delete. Children are not checked:
        deleting a draft that essays still name leaves those essays with a missing parent.
        """
        directory = self.path(stage, gen_id)
        files = self._backend.listing(directory)
        if not files:
            raise GenerationNotFound(
                f"no {stage} generation {gen_id} at {self._url(stage, gen_id)}"
            )
        meta_path = self.path(stage, gen_id, METADATA_FILE)
        self._backend.remove([meta_path])
        self._backend.remove(p for p in files if p != meta_path)


def load_generation(
    gens_root: str | os.PathLike[str],
    stage: str,
    gen_id: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    engine: Engine = "fsspec",
) -> dict[str, Any]:
    """The spec's entry point, returning the original pipeline's plain dict.

    Keys ``stage, gen_id, parent_gen_id, raw_text, parsed_text, prompt_text, metadata``:
    ``metadata`` is the stored JSON object exactly (``None`` without ``metadata.json``),
    ``parent_gen_id`` its value there (``None`` when absent), ``raw_text`` is ``""`` when
    raw.txt is absent, ``parsed_text``/``prompt_text`` ``None``. Unlike the original, a
    generation with none of its files raises ``GenerationNotFound`` (a ``FileNotFoundError``)
    rather than returning an empty dict, so a mistyped gen_id is not silently nothing.
    """
    gen = GensStore(gens_root, storage_options=storage_options, engine=engine).load(stage, gen_id)
    return gen.to_dict()
