"""The spec's troubleshooting list as code: findings over a data root.

:data:`RULES` is the list: each kind of finding with its severity, what it means (the
README's table is generated from it: :func:`rules_markdown`) and the advice every such
finding's message ends with. :func:`find_problems` is pure: a
:class:`~gens_fs.inventory.StoreSnapshot` (listings with sizes, parsed metadata, membership
rows) in, a :class:`CheckReport` out. :func:`check` only reads the snapshot, batched (see
:func:`check` for the request count), and calls it.

An incomplete generation gets only ``incomplete`` and the text-file warnings; its
metadata-based rules cannot run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final, Literal

from pydantic import BaseModel, computed_field

from gens_fs.data_root import DataRoot, open_data_root
from gens_fs.errors import InvalidMembership, InvalidMetadata
from gens_fs.inventory import StoreSnapshot, read_snapshot
from gens_fs.layout import (
    METADATA_FILE,
    PARENT_STAGE,
    PARSED_FILE,
    PROMPT_FILE,
    RAW_FILE,
    STAGE_ORDER,
    STAGES,
    generation_folder,
    generation_relpath,
    is_valid_gen_id,
    join,
    membership_path,
)
from gens_fs.models import GenerationMetadata
from gens_fs.selection import Selection, selection_of

Severity = Literal["error", "warning", "info"]
# The kinds, in RULES' order: spelled out because a type checker cannot read them from
# RULES. Each rule's kind is checked against this type, and the tests check that every kind
# has its rule.
FindingKind = Literal[
    "missing_generation",
    "incomplete",
    "invalid_metadata",
    "missing_parent_id",
    "missing_parent",
    "invalid_membership",
    "empty_parsed",
    "missing_prompt",
    "missing_task_id",
    "missing_model_id",
    "not_in_any_cohort",
    "stray",
    "ignored",
]


@dataclass(frozen=True)
class Rule:
    """One kind of finding: its severity, what it means (one line for the docs, Markdown),
    and the advice that ends the message of every finding of this kind."""

    kind: FindingKind
    severity: Severity
    meaning: str
    advice: str


RULES: Final[Mapping[FindingKind, Rule]] = {rule.kind: rule for rule in (
    Rule("missing_generation", "error",
         meaning="a cohort's `membership.csv` lists a gen_id with no directory",
         advice="check that the membership lists the right gen_id for the stage, and that the "
         "generation (and its upstream parents) were written to this store"),
    Rule("incomplete", "error",
         meaning="files but no `metadata.json`",
         advice="its write did not finish (metadata.json is written last): if a sync or a job "
         "writing it was interrupted, run it again; otherwise rewrite the generation or delete "
         "its folder"),
    Rule("invalid_metadata", "error",
         meaning="`metadata.json` unparsable, not an object, a field of the wrong type, or no "
         "`template_id`; a draft naming a parent; an unsafe `parent_gen_id`",
         advice="fix or rewrite metadata.json: it needs task_id, template_id, model_id and, for "
         "essays and evaluations, parent_gen_id"),
    Rule("missing_parent_id", "error",
         meaning="an essay or evaluation with an empty `parent_gen_id`",
         advice="set parent_gen_id in metadata.json to the parent's gen_id"),
    Rule("missing_parent", "error",
         meaning="the parent (draft of an essay, essay of an evaluation) is absent or incomplete "
         "(no `metadata.json` in the parent stage's listing)",
         advice="ensure upstream parents exist: restore or regenerate the parent, or fix "
         "parent_gen_id"),
    Rule("invalid_membership", "error",
         meaning="a `membership.csv` that does not parse (when checking all cohorts; asking "
         "for that cohort is an `InvalidMembership` error instead)",
         advice="fix the file; every row needs a known stage and a safe gen_id"),
    Rule("empty_parsed", "warning",
         meaning="`parsed.txt` empty or absent while `raw.txt` is not (from the listing's sizes)",
         advice="the generator or parser may have failed; inspect raw.txt and metadata.json"),
    Rule("missing_prompt", "warning",
         meaning="a draft or essay without a non-empty `prompt.txt`, unless copy-mode "
         '(`"mode": "copy"`)',
         advice="prompt side-writes are best effort, but drafts and essays generated via LLM "
         "normally have prompt.txt; regenerate if you need the prompt"),
    Rule("missing_task_id", "info",
         meaning="no `task_id` (the original pipeline never wrote one)",
         advice="the spec asks for task_id (the original pipeline did not write it); the "
         "generation loads and syncs as it is, but add task_id before rewriting it with gens_fs"),
    Rule("missing_model_id", "warning",
         meaning="neither `model_id` nor `llm_model_id`, and not copy-mode (whose "
         "`llm_model_id` is `null` by design)",
         advice="record the model in metadata.json as model_id (llm_model_id is read too); only "
         "copy-mode generations (mode: copy) have none"),
    Rule("not_in_any_cohort", "info",
         meaning="a committed generation no cohort lists (see Scope below)",
         advice="membership.csv is the source of truth: add it to a cohort, or delete it if "
         "stray"),
    Rule("stray", "warning",
         meaning="an entry outside the layout: a file directly under `gens/<stage>/`, a folder "
         "inside a generation, a folder under `gens/<stage>/` whose name is not a valid gen_id, "
         "a file where a stage folder should be (`gens/essay` is a file), a file or non-stage "
         "folder directly under `gens/`, a cohort folder without `membership.csv` (or with an "
         "invalid name), a file directly under `cohorts/` "
         "([what sync does with each](#stray-entries))",
         advice="it is not part of the layout, and gens-fs does not read it (sync: see the "
         "README): move it into place or out of the data root"),
    Rule("ignored", "warning",
         meaning="a symbolic link (not followed), a FIFO, socket or device (never opened); the "
         "message names which",
         advice="left out of every listing; replace it with a regular file, or pass "
         "--follow-symlinks for a link whose target stays inside the data root"),
)}  # fmt: skip
# Stages whose generations normally carry their prompt (the spec's "Not seeing prompts").
PROMPTED_STAGES: Final = ("draft", "essay")

_SEVERITY_ORDER: Final = {"error": 0, "warning": 1, "info": 2}


def rules_markdown() -> str:
    """The README's table of what ``check`` reports, from :data:`RULES` (a test keeps the
    README equal to it)."""
    lines = ["| kind | severity | meaning | advice (in the message) |", "|---|---|---|---|"]
    lines += [f"| `{r.kind}` | {r.severity} | {r.meaning} | {r.advice} |" for r in RULES.values()]
    return "\n".join(lines) + "\n"


class Finding(BaseModel):
    """One problem (or remark) about one generation or membership file.

    ``path`` is the file or directory to look at, under the report's ``data_root``;
    ``cohort`` names the membership involved, when one is.
    """

    kind: FindingKind
    severity: Severity
    stage: str | None
    gen_id: str | None
    path: str
    message: str
    cohort: str | None = None


class CheckSummary(BaseModel):
    """How much was looked at and what was found."""

    generations: int
    cohorts: int
    errors: int
    warnings: int
    infos: int
    by_kind: dict[str, int]


class CheckReport(BaseModel):
    """The findings of a check, worst first, and their summary. ``ok``: no errors."""

    data_root: str
    cohort: str | None
    stages: list[str]
    findings: list[Finding]
    summary: CheckSummary

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.summary.errors == 0


def _finding(
    kind: FindingKind,
    what: str,
    path: str,
    stage: str | None = None,
    gen_id: str | None = None,
    cohort: str | None = None,
) -> Finding:
    """A finding of ``kind``: its message is ``what`` was found, then the rule's advice."""
    rule = RULES[kind]
    return Finding(
        kind=kind,
        severity=rule.severity,
        stage=stage,
        gen_id=gen_id,
        path=path,
        message=f"{what}: {rule.advice}",
        cohort=cohort,
    )


@dataclass(frozen=True)
class _Gen:
    """One generation as findings name it (``str``: "essay e1") and point at it."""

    data_root: str
    stage: str
    gen_id: str

    def __str__(self) -> str:
        return f"{self.stage} {self.gen_id}"

    def path(self, name: str | None = None) -> str:
        """Its folder, or its file ``name``, under the data root (a URL off local disk)."""
        return join(self.data_root, generation_relpath((self.stage, self.gen_id), name))

    def finding(
        self, kind: FindingKind, what: str, name: str | None = None, cohort: str | None = None
    ) -> Finding:
        """A finding about this generation, pointing at its file ``name`` or its folder."""
        return _finding(kind, what, self.path(name), self.stage, self.gen_id, cohort)


def _membership_findings(snapshot: StoreSnapshot) -> Iterator[Finding]:
    """A membership that does not parse; a member of a checked stage with no folder."""
    for cohort_id, rows in snapshot.memberships.items():
        if isinstance(rows, InvalidMembership):
            path = join(snapshot.data_root, membership_path(cohort_id))
            yield _finding("invalid_membership", str(rows), path, cohort=cohort_id)
            continue
        for row in rows:
            key = (row.stage, row.gen_id)
            if (
                row.stage in snapshot.stages
                and snapshot.files_of(*key) is None
                and snapshot.selects_absent(key)
            ):
                what = f"cohort {cohort_id} lists {row.stage} {row.gen_id}, which has no directory"
                gen = _Gen(snapshot.data_root, row.stage, row.gen_id)
                yield gen.finding("missing_generation", what, cohort=cohort_id)


def _generation_findings(snapshot: StoreSnapshot, gen: _Gen) -> Iterator[Finding]:
    """Every rule about one generation in scope: its files, its metadata, its parent."""
    files = snapshot.files_of(gen.stage, gen.gen_id) or {}
    meta = snapshot.metadata.get((gen.stage, gen.gen_id))
    copied = isinstance(meta, GenerationMetadata) and meta.is_copy
    yield from _text_findings(gen, files, copied=copied)
    if METADATA_FILE not in files or meta is None:  # absent, or removed since the listing
        present = ", ".join(sorted(files)) or "nothing"
        yield gen.finding("incomplete", f"{gen} has {present} but no {METADATA_FILE}")
    elif isinstance(meta, InvalidMetadata):
        yield gen.finding("invalid_metadata", str(meta), METADATA_FILE)
    else:
        yield from _field_findings(gen, meta)
        yield from _lineage_findings(snapshot, gen, meta.parent_gen_id)


def _text_findings(gen: _Gen, files: Mapping[str, int], *, copied: bool) -> Iterator[Finding]:
    """The rules judged from the listing's sizes alone (no text file is read). ``copied``:
    a copy-mode generation of the original pipeline, which has no prompt of its own."""
    raw_size, parsed_size = files.get(RAW_FILE, 0), files.get(PARSED_FILE)
    if raw_size and not parsed_size:
        state = "missing" if parsed_size is None else "empty"
        what = f"{gen}: parsed.txt is {state} while raw.txt has {raw_size} bytes"
        yield gen.finding("empty_parsed", what, PARSED_FILE)
    if gen.stage in PROMPTED_STAGES and not copied and not files.get(PROMPT_FILE):
        state = "empty" if PROMPT_FILE in files else "missing"
        yield gen.finding("missing_prompt", f"{gen}: prompt.txt is {state}", PROMPT_FILE)


def _field_findings(gen: _Gen, meta: GenerationMetadata) -> Iterator[Finding]:
    """The spec's required fields (those ``write`` insists on). Reading accepts a file
    without them, so only a missing ``template_id`` (which the original pipeline always
    wrote) is an error; the original never wrote ``task_id``, and wrote
    ``llm_model_id: null`` for copy-mode generations only, by design."""
    for field in meta.missing_spec_fields():
        if field == "template_id":
            what = f"{gen.path(METADATA_FILE)}: no template_id"
            yield gen.finding("invalid_metadata", what, METADATA_FILE)
        elif field == "task_id":
            yield gen.finding("missing_task_id", f"{gen} has no task_id", METADATA_FILE)
        elif field == "model_id" and not meta.is_copy:
            what = f"{gen} has no model_id (nor llm_model_id) and is not a copy"
            yield gen.finding("missing_model_id", what, METADATA_FILE)


def _lineage_findings(
    snapshot: StoreSnapshot, gen: _Gen, parent_id: str | None
) -> Iterator[Finding]:
    """A draft naming a parent; an essay or evaluation whose ``parent_gen_id`` is empty,
    unsafe, or names a parent that is not committed (judged from the parent stage's
    listing, which a check always reads)."""
    parent_stage, meta_path = PARENT_STAGE[gen.stage], gen.path(METADATA_FILE)
    if parent_stage is None:
        if parent_id:
            what = f"{meta_path}: a draft has no parent, but parent_gen_id is {parent_id!r}"
            yield gen.finding("invalid_metadata", what, METADATA_FILE)
    elif not parent_id:
        what = f"{gen} has no parent_gen_id naming its {parent_stage}"
        yield gen.finding("missing_parent_id", what, METADATA_FILE)
    elif not is_valid_gen_id(parent_id):
        what = f"{meta_path}: parent_gen_id {parent_id!r} is not a valid gen_id"
        yield gen.finding("invalid_metadata", what, METADATA_FILE)
    elif not snapshot.is_committed(parent_stage, parent_id):
        listed = snapshot.files_of(parent_stage, parent_id) is not None
        state = f"is incomplete (no {METADATA_FILE})" if listed else "is not on disk"
        what = f"{gen}: parent {parent_stage} {parent_id} {state}"
        yield gen.finding("missing_parent", what, METADATA_FILE)


def _layout_findings(snapshot: StoreSnapshot) -> Iterator[Finding]:
    """``stray`` and ``ignored``: entries the listings found outside the layout."""
    found: list[tuple[FindingKind, str, str]] = [
        *(("stray", s.path, s.reason) for s in snapshot.strays),
        *(("ignored", i.path, i.reason) for i in snapshot.ignored),
    ]
    for kind, relpath, reason in found:
        stage, gen_id = generation_folder(relpath) or (None, None)
        path = join(snapshot.data_root, relpath)
        yield _finding(kind, f"{relpath}: {reason}", path, stage, gen_id)


def _unlisted_findings(snapshot: StoreSnapshot) -> Iterator[Finding]:
    """``not_in_any_cohort``, only when checking everything, at least one cohort exists and
    every membership parsed: a store that does not use cohorts, or whose memberships are
    unknown, would drown in it."""
    memberships = snapshot.memberships.values()
    known = [rows for rows in memberships if not isinstance(rows, InvalidMembership)]
    if snapshot.cohort is not None or not known or len(known) < len(memberships):
        return
    listed = {(row.stage, row.gen_id) for rows in known for row in rows}
    for stage, gen_id in snapshot.scope:
        if snapshot.is_committed(stage, gen_id) and (stage, gen_id) not in listed:
            gen = _Gen(snapshot.data_root, stage, gen_id)
            yield gen.finding("not_in_any_cohort", f"{gen} is in no cohort's membership.csv")


def _worst_first(finding: Finding) -> tuple[int, str, int, str, str]:
    stage = STAGE_ORDER.get(finding.stage or "", len(STAGES))
    severity = _SEVERITY_ORDER[finding.severity]
    return severity, finding.kind, stage, finding.gen_id or "", finding.path


def find_problems(snapshot: StoreSnapshot) -> CheckReport:
    """Every finding over ``snapshot``, worst first. Pure: no I/O."""
    generations = (_Gen(snapshot.data_root, *key) for key in snapshot.scope)
    found = chain(
        _membership_findings(snapshot),
        chain.from_iterable(_generation_findings(snapshot, gen) for gen in generations),
        _layout_findings(snapshot),
        _unlisted_findings(snapshot),
    )
    findings = sorted(found, key=_worst_first)
    return CheckReport(
        data_root=snapshot.data_root,
        cohort=snapshot.cohort,
        stages=list(snapshot.stages),
        findings=findings,
        summary=_summarize(findings, snapshot),
    )


def _summarize(findings: list[Finding], snapshot: StoreSnapshot) -> CheckSummary:
    severities = Counter(f.severity for f in findings)
    return CheckSummary(
        generations=len(snapshot.scope),
        cohorts=len(snapshot.memberships),
        errors=severities["error"],
        warnings=severities["warning"],
        infos=severities["info"],
        by_kind=dict(sorted(Counter(f.kind for f in findings).items())),
    )


def check(
    data_root: str | os.PathLike[str] | DataRoot,
    *,
    cohort: str | None = None,
    stages: Iterable[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    follow_symlinks: bool = False,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    where: Mapping[str, str] | Iterable[str] | None = None,
    selection: Selection | None = None,
) -> CheckReport:
    """Check a data root against the spec's invariants and troubleshooting list.

    Scope: with ``cohort``, that cohort's members of ``stages`` (all stages by default;
    their parents are checked for existence wherever they are); without, every generation
    of ``stages`` and every cohort's membership. ``CohortNotFound`` or
    ``InvalidMembership`` when the cohort asked for is absent or unreadable.

    Requests (each batch all in flight at once on S3): one recursive listing per stage in
    scope or parent of one; without ``cohort``, one listing of ``cohorts/`` plus one GET per
    cohort, with it one GET of its ``membership.csv``; one GET per committed
    ``metadata.json`` in scope; without ``cohort`` and ``stages``, one listing of the first
    level of ``gens/`` (for strays). No text file is read. ``follow_symlinks``: follow the
    symbolic links whose target stays inside the data root. A root that holds nothing is an
    empty store here (the CLI refuses it; see ``gens_fs.inventory.require_data_root``).

    ``include``/``exclude``/``where`` (or ``selection``; see :mod:`gens_fs.selection`)
    narrow the generations checked (their parents are still checked wherever they are);
    strays are then not reported, and a cohort member with no folder only when its gen_id
    is picked and there is no ``where``.
    """
    chosen = selection_of(include, exclude, where, selection)
    root = open_data_root(data_root, storage_options=storage_options)
    snapshot = read_snapshot(
        root,
        stages=stages,
        cohort=cohort,
        all_memberships=cohort is None,
        parent_stages=True,
        follow_symlinks=follow_symlinks,
        strays=True,
        selection=chosen,
    )
    return find_problems(snapshot)
