"""Seeded synthetic gens stores with realistic file sizes, written in bulk.

:func:`make_store` writes drafts, their essays and the essays' evaluations — four artifact
files each, laid out by :mod:`gens_fs.layout` — plus a cohort ``membership.csv``, with one
``fs.pipe`` call per batch of files instead of one call per file. Same arguments, same
bytes: gen_ids, texts and metadata are all derived from ``seed``.

:func:`mutate` then edits a seeded fraction of the files, half of them without changing
their size (and, on local disk, without changing their mtime), which is what a sync that
trusts size + mtime must still notice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gens_fs.layout import (
    GENS_DIR,
    METADATA_FILE,
    PARSED_FILE,
    PROMPT_FILE,
    RAW_FILE,
    STAGES,
    artifact_path,
    join,
    membership_path,
    validate_gen_id,
)

GEN_ID_LENGTH: Final = 16
_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_PIPE_BATCH: Final = 2000

_WORDS: Final = [
    "the",
    "idea",
    "of",
    "a",
    "mind",
    "that",
    "wanders",
    "between",
    "concepts",
    "and",
    "returns",
    "with",
    "something",
    "new",
    "creativity",
    "combination",
    "insight",
    "pattern",
    "memory",
    "default",
    "mode",
    "network",
    "daydream",
    "loop",
    "generator",
    "evaluator",
    "critic",
    "novelty",
    "usefulness",
    "surprise",
    "analogy",
    "metaphor",
    "structure",
    "because",
    "therefore",
    "however",
    "although",
    "meanwhile",
    "perhaps",
    "clearly",
    "arguably",
    "indeed",
    "café",
    "naïve",
    "façade",
    "résumé",
    "über",
    "straße",
    "déjà-vu",
    "coöperate",
    "jalapeño",
    "smörgåsbord",
    "思考",
    "創造",
    "夢",
    "ночь",
    "идея",
    "мысль",
    "λόγος",
    "ψυχή",
]
_MODELS: Final = ("deepseek_r1_f", "qwen3_235b_a22b", "gemini_25_pro", "sonnet-4", "gpt-5")
_TEMPLATES: Final[dict[str, tuple[str, ...]]] = {
    "draft": ("deliberate-rolling-thread-v2", "creative-synthesis-v10", "links-v4"),
    "essay": ("parsed-from-links-v1", "creative-synthesis-v10", "essay-copy-v1"),
    "evaluation": ("daydreaming-verification-v3", "gemini-prior-art-eval", "novelty-v2"),
}
# (min, max) byte sizes per stage and file; evaluations' parsed text is built separately.
_SIZES: Final[dict[str, dict[str, tuple[int, int]]]] = {
    "draft": {RAW_FILE: (3000, 6000), PARSED_FILE: (2000, 4000), PROMPT_FILE: (1000, 2000)},
    "essay": {RAW_FILE: (6000, 12000), PARSED_FILE: (5000, 10000), PROMPT_FILE: (2800, 3200)},
    "evaluation": {RAW_FILE: (1000, 2000), PROMPT_FILE: (7500, 8500)},
}


@dataclass(frozen=True)
class SyntheticStore:
    """What :func:`make_store` wrote.

    ``gen_ids`` maps each stage to its gen_ids in creation order; ``parents`` maps every
    essay and evaluation gen_id to its parent's; ``sizes`` maps every written path
    (artifacts and membership) to its size in bytes *as generated* (:func:`mutate` does not
    update it).
    """

    data_root: str
    cohort_id: str | None
    gen_ids: Mapping[str, tuple[str, ...]]
    parents: Mapping[str, str]
    sizes: Mapping[str, int]

    @property
    def generation_count(self) -> int:
        """Number of generations over all stages."""
        return sum(len(ids) for ids in self.gen_ids.values())

    @property
    def file_count(self) -> int:
        """Number of files written, membership included."""
        return len(self.sizes)

    @property
    def total_bytes(self) -> int:
        """Bytes written, membership included."""
        return sum(self.sizes.values())

    @property
    def artifact_paths(self) -> list[str]:
        """Paths of the generation files (not the membership), sorted."""
        gens_root = join(self.data_root, GENS_DIR)
        return sorted(p for p in self.sizes if p.startswith(gens_root + "/"))


class _TextSource:
    """Cheap pseudo-text: slices of one seeded word pool, cut at word boundaries."""

    def __init__(self, rng: random.Random, pool_chars: int = 1 << 18) -> None:
        words: list[str] = []
        length = 0
        while length < pool_chars:
            sentence = " ".join(rng.choices(_WORDS, k=rng.randint(6, 18))).capitalize()
            words.append(sentence + ".")
            length += len(sentence) + 2
        pool = " ".join(words)
        self._pool = pool + " " + pool  # a slice may wrap past the end
        self._size = len(pool)
        self._rng = rng

    def text(self, header: str, size_range: tuple[int, int]) -> bytes:
        """UTF-8 text starting with ``header``, its byte size drawn from ``size_range``.

        Never larger than the drawn size; non-ASCII words can make it slightly smaller.
        """
        target = self._rng.randint(*size_range)
        start = self._pool.find(" ", self._rng.randrange(self._size)) + 1
        chars = max(target - len(header.encode()), 0)
        data = (header + self._pool[start : start + chars]).encode()
        if len(data) > target:  # non-ASCII words took more than a byte per character
            chars = max(chars - (len(data) - target), 0)
            data = (header + self._pool[start : start + chars]).encode()
        return data


def _gen_id(seed: int, stage: str, index: int) -> str:
    digest = hashlib.sha256(f"gens_fs.synthetic:{seed}:{stage}:{index}".encode()).digest()
    number = int.from_bytes(digest[:12], "big")
    chars = []
    for _ in range(GEN_ID_LENGTH):
        number, digit = divmod(number, 36)
        chars.append(_BASE36[digit])
    return validate_gen_id("".join(chars))


def _metadata(
    rng: random.Random, stage: str, gen_id: str, parent: str, index: int, prompt_len: int
) -> bytes:
    model = rng.choice(_MODELS)
    template = rng.choice(_TEMPLATES[stage])
    completion = rng.randint(200, 4000)
    metadata: dict[str, Any] = {
        "task_id": f"{stage}-c{index:05d}__{template}__{model}",
        "template_id": template,
        "model_id": model,
        "parent_gen_id": parent,
        "function": f"{stage}_response",
        "usage": {
            "prompt_tokens": prompt_len // 4,
            "completion_tokens": completion,
            "total_tokens": prompt_len // 4 + completion,
        },
        "note": f"synthétique — déterministe ({gen_id})",
    }
    return _dump_json(metadata)


def _dump_json(metadata: Mapping[str, Any]) -> bytes:
    """The layout ``GenerationMetadata.to_json`` writes: indent 2, UTF-8, final newline."""
    return (json.dumps(metadata, indent=2, ensure_ascii=False) + "\n").encode()


def _generation_files(
    rng: random.Random,
    text: _TextSource,
    stage: str,
    gen_id: str,
    parent: str,
    index: int,
) -> dict[str, bytes]:
    """The four artifact files of one generation, keyed by file name."""
    sizes = _SIZES[stage]
    files = {
        name: text.text(f"[{stage} {gen_id} {name}]\n", size_range)
        for name, size_range in sizes.items()
    }
    if stage == "evaluation":
        reason = text.text("", (15, 150)).decode()
        files[PARSED_FILE] = f"SCORE: {rng.randint(1, 9)}\n{reason}".encode()
    files[METADATA_FILE] = _metadata(rng, stage, gen_id, parent, index, len(files[PROMPT_FILE]))
    return files


def make_store(
    fs: Any,
    data_root: str,
    *,
    drafts: int,
    essays_per_draft: int = 2,
    evaluations_per_essay: int = 3,
    seed: int = 0,
    cohort_id: str | None = "bench",
) -> SyntheticStore:
    """Write a valid synthetic store under ``data_root`` on ``fs`` and describe it.

    Every essay's parent is a draft of the store and every evaluation's an essay, so the
    store satisfies the spec's lineage invariant. With ``cohort_id`` a
    ``cohorts/<cohort_id>/membership.csv`` lists every generation (``stage,gen_id``).
    Existing files at the same paths are overwritten; nothing else is touched.
    """
    if drafts < 0 or essays_per_draft < 0 or evaluations_per_essay < 0:
        raise ValueError("drafts, essays_per_draft and evaluations_per_essay must be >= 0")
    rng = random.Random(f"gens_fs.synthetic:{seed}")
    text = _TextSource(rng)
    gens_root = join(data_root, GENS_DIR)
    fanout = {"draft": 1, "essay": essays_per_draft, "evaluation": evaluations_per_essay}
    gen_ids: dict[str, list[str]] = {stage: [] for stage in STAGES}
    parents: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    previous: list[str] = [""] * drafts
    for stage in STAGES:
        current: list[str] = []
        for parent in previous:
            for _ in range(fanout[stage]):
                index = len(current)
                gen_id = _gen_id(seed, stage, index)
                for name, data in _generation_files(
                    rng, text, stage, gen_id, parent, index
                ).items():
                    contents[join(gens_root, artifact_path(stage, gen_id, name))] = data
                if parent:
                    parents[gen_id] = parent
                current.append(gen_id)
        gen_ids[stage] = current
        previous = current
    if cohort_id is not None:
        rows = [f"{stage},{gen_id}\n" for stage in STAGES for gen_id in gen_ids[stage]]
        membership = join(data_root, membership_path(cohort_id))
        contents[membership] = ("stage,gen_id\n" + "".join(rows)).encode()
    _write_all(fs, contents)
    return SyntheticStore(
        data_root=data_root,
        cohort_id=cohort_id,
        gen_ids={stage: tuple(ids) for stage, ids in gen_ids.items()},
        parents=parents,
        sizes={path: len(data) for path, data in contents.items()},
    )


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


def _write_all(fs: Any, contents: Mapping[str, bytes]) -> None:
    """``fs.pipe`` in batches; on local disk create the directories first (pipe does not)."""
    if _is_local(fs):
        for directory in sorted({path.rsplit("/", 1)[0] for path in contents}):
            fs.makedirs(directory, exist_ok=True)
    paths = list(contents)
    for start in range(0, len(paths), _PIPE_BATCH):
        fs.pipe({path: contents[path] for path in paths[start : start + _PIPE_BATCH]})


def mutate(
    fs: Any,
    data_root: str,
    store: SyntheticStore,
    fraction: float = 0.01,
    seed: int = 1,
    same_size_share: float = 0.5,
) -> list[str]:
    """Edit ``fraction`` of the store's artifact files (at least one); return their paths.

    A ``same_size_share`` of them keep their exact byte size (ASCII letters swapped for
    other letters; in ``metadata.json`` a token count replaced by another of as many
    digits, so the JSON stays valid), and on local disk they also get their old mtime back
    (``os.utime``, nanoseconds) — invisible to a size + mtime comparison. The others grow.
    ``data_root`` may differ from ``store.data_root``: the same relative files are edited
    there (a copy of the store). Deterministic for a given store and ``seed``; paths are
    returned sorted. Every file
    stays valid UTF-8 and every metadata file valid JSON.
    """
    if not 0.0 <= fraction <= 1.0 or not 0.0 <= same_size_share <= 1.0:
        raise ValueError("fraction and same_size_share must be within [0, 1]")
    candidates = _rebase(store.artifact_paths, store.data_root, data_root)
    if not candidates:
        return []
    rng = random.Random(f"gens_fs.synthetic.mutate:{seed}")
    chosen = sorted(rng.sample(candidates, max(1, round(fraction * len(candidates)))))
    same_size = set(rng.sample(chosen, round(same_size_share * len(chosen))))
    old = fs.cat(chosen)
    local = _is_local(fs)
    stamps = {p: os.stat(_local_path(fs, p)) for p in same_size} if local else {}
    edits = {
        path: _same_size_edit(rng, path, old[path])
        if path in same_size
        else _growing_edit(rng, path, old[path])
        for path in chosen
    }
    fs.pipe(edits)
    for path, stat in stamps.items():
        os.utime(_local_path(fs, path), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return chosen


def _rebase(paths: list[str], old_root: str, new_root: str) -> list[str]:
    """The same files under ``new_root`` (a copy of the store, e.g. a sync destination)."""
    prefix = join(old_root, "")
    return [join(new_root, path[len(prefix) :]) for path in paths]


def _local_path(fs: Any, path: str) -> str:
    return str(fs._strip_protocol(path))


def _same_size_edit(rng: random.Random, path: str, data: bytes) -> bytes:
    if path.endswith("/" + METADATA_FILE):
        return _same_size_metadata_edit(rng, data)
    edited = bytearray(data)
    letters = [i for i, byte in enumerate(edited) if 97 <= byte <= 122]  # ASCII a-z
    for i in rng.sample(letters, min(3, len(letters))):
        edited[i] = 97 + (edited[i] - 97 + rng.randint(1, 25)) % 26
    if bytes(edited) == data:  # no ASCII letter to swap (never for generated files)
        raise ValueError(f"cannot edit {path} without changing its size")
    return bytes(edited)


def _same_size_metadata_edit(rng: random.Random, data: bytes) -> bytes:
    metadata = json.loads(data)
    usage = metadata["usage"]
    digits = len(str(usage["completion_tokens"]))
    low, high = 10 ** (digits - 1), 10**digits - 1
    usage["completion_tokens"] = rng.choice(
        [n for n in (rng.randint(low, high) for _ in range(8)) if n != usage["completion_tokens"]]
        or [low if usage["completion_tokens"] != low else high]
    )
    edited = _dump_json(metadata)
    if len(edited) != len(data):
        raise AssertionError("metadata edit changed the size")  # pragma: no cover
    return edited


def _growing_edit(rng: random.Random, path: str, data: bytes) -> bytes:
    tag = f"r{rng.randrange(1 << 30):08x}"
    if path.endswith("/" + METADATA_FILE):
        metadata = json.loads(data)
        metadata["edited"] = f"édité {tag}"
        return _dump_json(metadata)
    return data + f"\n[edited {tag} — révisé]\n".encode()
