"""A data root as the original pipeline (daydreaming_dagster) left it (not a test module:
imported by ``test_legacy.py``).

Everything is written byte for byte the way the original wrote it, behind gens_fs's back:
``metadata.json`` from its ``_base_meta`` plus the LLM metrics and cohort keys
(``json.dumps(..., ensure_ascii=False, indent=2)``, no final newline), no ``task_id``,
``llm_model_id`` instead of ``model_id`` (``null`` in copy mode), no ``parent_gen_id`` key on
drafts, ``files`` with the absolute paths it resolved on its machine. Ids are its
deterministic ``d_``/``e_``/``v_`` ids, one with the ``-1`` suffix it adds on a collision.
A copy-mode essay has only ``parsed.txt`` (its draft's parsed text) and ``metadata.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gens_fs import DataRoot

COHORT = "cohort-2025-09-28-a"
ORIGIN = "/home/dd/daydreaming/data/gens"  # where the original resolved its ``files`` paths


@dataclass(frozen=True)
class LegacyGeneration:
    """One generation of the fixture: its texts (``None``: no such file) and metadata."""

    stage: str
    gen_id: str
    metadata: dict[str, Any]
    raw: str | None
    parsed: str | None
    prompt: str | None

    @property
    def metadata_bytes(self) -> bytes:
        return json.dumps(self.metadata, ensure_ascii=False, indent=2).encode("utf-8")

    def files(self) -> dict[str, bytes]:
        """File name -> bytes, as the original left them."""
        named = {"raw.txt": self.raw, "parsed.txt": self.parsed, "prompt.txt": self.prompt}
        out = {name: text.encode("utf-8") for name, text in named.items() if text is not None}
        out["metadata.json"] = self.metadata_bytes
        return out


def _llm(
    stage: str, gen_id: str, template: str, model: str, texts: tuple[str, str, str], **extra: Any
) -> LegacyGeneration:
    """An LLM generation: ``execute_llm``'s metadata (the ``files`` it wrote out with the
    metadata, before parsing, name raw.txt only)."""
    prompt, raw, parsed = texts
    parent = extra.pop("parent_gen_id", None)
    replicate = extra.pop("replicate", 1)
    metadata: dict[str, Any] = {
        "stage": stage,
        "gen_id": gen_id,
        "template_id": template,
        "llm_model_id": model,
        **({"parent_gen_id": parent} if parent else {}),
        "parser_name": extra.pop("parser_name", None),
        "mode": "llm",
        "files": {"raw": f"{ORIGIN}/{stage}/{gen_id}/raw.txt"},
        "finish_reason": "stop",
        "truncated": False,
        "usage": {"completion_tokens": len(raw) // 4, "max_tokens": 20480},
        "duration_s": 41.207,
        "max_tokens": 20480,
        "duration_ms": 41207,
        "prompt_chars": len(prompt),
        "raw_chars": len(raw),
        "parsed_chars": len(parsed),
        "total_tokens": None,
        **extra,
        "origin_cohort_id": COHORT,
        "replicate": replicate,
    }
    return LegacyGeneration(stage, gen_id, metadata, raw, parsed, prompt)


def _copy_essay(gen_id: str, template: str, draft: LegacyGeneration) -> LegacyGeneration:
    """``execute_copy``: the draft's parsed text, no model, no prompt, no raw."""
    metadata: dict[str, Any] = {
        "stage": "essay",
        "gen_id": gen_id,
        "template_id": template,
        "llm_model_id": None,
        "parent_gen_id": draft.gen_id,
        "parser_name": None,
        "mode": "copy",
        "files": {"parsed": f"{ORIGIN}/essay/{gen_id}/parsed.txt"},
        "finish_reason": None,
        "truncated": False,
        "usage": None,
        "duration_s": 0.001,
        "origin_cohort_id": COHORT,
        "replicate": 1,
    }
    return LegacyGeneration("essay", gen_id, metadata, None, draft.parsed, None)


def _build() -> tuple[LegacyGeneration, ...]:
    draft = _llm(
        "draft", "d_2lq7x0c4m1v9s8hk", "creative-synthesis-v10", "deepseek_r1_f",
        ("Combine the concepts below.\n", "<think>…</think>\nIdea 1: dreams as search.\n",
         "Idea 1: dreams as search.\n"),
        parser_name="essay_idea_last", combo_id="combo_v1_1f3a76ee2c45",
    )  # fmt: skip
    collided = _llm(
        "draft", "d_2lq7x0c4m1v9s8hk-1", "creative-synthesis-v10", "qwen3_235b_a22b",
        ("Combine the concepts below.\n", "Idée : rêver, c'est chercher — 夢.\n",
         "Idée : rêver, c'est chercher — 夢.\n"),
        combo_id="combo_v1_1f3a76ee2c45", replicate=2,
    )  # fmt: skip
    essay = _llm(
        "essay", "e_5n0b3r6t2y8u1i4o", "llm-essay-v2", "sonnet-4",
        ("Write an essay from this draft:\nIdea 1: dreams as search.\n",
         "# Dreaming as search\n\nAn essay.\n", "# Dreaming as search\n\nAn essay.\n"),
        parent_gen_id=draft.gen_id, input_mode="prompt", draft_line_count=1,
    )  # fmt: skip
    copied = _copy_essay("e_7k2m9q4w1e6r3t0y", "parsed-from-links-v1", collided)
    scored = _llm(
        "evaluation", "v_3c8x1z6v4b9n2m7q", "daydreaming-verification-v2", "gemini_25_pro",
        ("Rate this essay:\n# Dreaming as search\n", "Reasoning...\nSCORE: 7.5\n", "7.5"),
        parent_gen_id=essay.gen_id, parser_name="in_last_line", input_mode="prompt",
        evaluation_notes={"rubric": ["novelty", "coherence"], "scale": [0, 10]},
    )  # fmt: skip
    scored_copy = _llm(
        "evaluation", "v_9p4o7i2u5y8t1r6e", "novelty-v1", "gemini_25_pro",
        ("Rate this essay:\nIdée : rêver\n", "SCORE: 4\n", "4"),
        parent_gen_id=copied.gen_id, parser_name="in_last_line", input_mode="prompt",
        replicate=2,
    )  # fmt: skip
    return (draft, collided, essay, copied, scored, scored_copy)


GENERATIONS = _build()
BY_ID = {(g.stage, g.gen_id): g for g in GENERATIONS}
MEMBERSHIP = ("stage,gen_id\n" + "".join(f"{g.stage},{g.gen_id}\n" for g in GENERATIONS)).encode()


def write_legacy(data_root: str, storage_options: dict[str, Any] | None = None) -> DataRoot:
    """Write the fixture under ``data_root`` (any backend) and return it."""
    root = DataRoot(data_root, storage_options=storage_options)
    store = root.store()
    files = {
        store.path(g.stage, g.gen_id, name): data
        for g in GENERATIONS
        for name, data in g.files().items()
    }
    root.backend.write_many({**files, root.membership_file(COHORT): MEMBERSHIP})
    return root
