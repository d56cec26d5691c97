"""A data root seeded with exactly one case of each finding ``check`` reports (not a test
module: imported by the check and CLI tests)."""

from __future__ import annotations

import json
from typing import Any

from gens_fs import DataRoot, MembershipRow

META = {"task_id": "t1", "template_id": "tpl-a", "model_id": "model-x"}

# (kind, stage, gen_id) of every finding ``check`` must report on the seeded root.
EXPECTED = {
    ("missing_generation", "essay", "e-gone"),
    ("incomplete", "draft", "d-partial"),
    ("invalid_metadata", "draft", "d-badmeta"),
    ("missing_parent_id", "evaluation", "v-noparent"),
    ("missing_parent", "essay", "e-orphan"),
    ("empty_parsed", "draft", "d-emptyparsed"),
    ("missing_prompt", "essay", "e-noprompt"),
    ("not_in_any_cohort", "draft", "d-stray"),
}
COHORT_ROWS = [
    ("draft", "d1"),
    ("essay", "e1"),
    ("evaluation", "v1"),
    ("essay", "e-gone"),
    ("essay", "e-orphan"),
    ("evaluation", "v-noparent"),
    ("draft", "d-partial"),
    ("draft", "d-badmeta"),
    ("draft", "d-emptyparsed"),
    ("essay", "e-noprompt"),
]
# A second cohort written as an old spreadsheet would: BOM, CRLF, extra column, duplicate.
COHORT_C2 = b"\xef\xbb\xbfgen_id,stage,note\r\nd1,draft,x\r\nd1,draft,dup\r\n"


def seed(data_root: str, storage_options: dict[str, Any] | None = None) -> DataRoot:
    root = DataRoot(data_root, storage_options=storage_options)
    store = root.store()
    full: dict[str, Any] = {"raw": "raw text", "parsed": "parsed text", "prompt": "the prompt"}
    store.write("draft", "d1", metadata=META, **full)
    store.write("draft", "d-stray", metadata={**META, "model_id": "model-y"}, **full)
    store.write("draft", "d-emptyparsed", metadata=META, raw="raw", parsed="", prompt="p")
    store.write("essay", "e1", metadata={**META, "parent_gen_id": "d1"}, **full)
    store.write(
        "essay", "e-noprompt", metadata={**META, "parent_gen_id": "d1"}, raw="r", parsed="p"
    )
    store.write(
        "evaluation", "v1", metadata={**META, "template_id": "tpl-b", "parent_gen_id": "e1"},
        raw="SCORE: 7", parsed="7",
    )  # fmt: skip

    def files(stage: str, gen_id: str, **named: bytes) -> dict[str, bytes]:
        return {store.path(stage, gen_id, name.replace("_", ".")): v for name, v in named.items()}

    texts = {"raw_txt": b"r", "parsed_txt": b"p", "prompt_txt": b"q"}
    root.backend.write_many(
        {
            # Behind the store's back, as a crash or an older pipeline would leave them.
            **files("draft", "d-partial", **texts),
            **files("draft", "d-badmeta", **texts, metadata_json=b"{not json"),
            **files(
                "essay", "e-orphan", **texts,
                metadata_json=json.dumps({**META, "parent_gen_id": "d-gone"}).encode(),
            ),
            **files(
                "evaluation", "v-noparent", raw_txt=b"r", parsed_txt=b"p",
                metadata_json=json.dumps({**META, "parent_gen_id": ""}).encode(),
            ),
            root.membership_file("c2"): COHORT_C2,
        }
    )  # fmt: skip
    root.write_membership("c1", [MembershipRow(stage=s, gen_id=g) for s, g in COHORT_ROWS])
    return root
