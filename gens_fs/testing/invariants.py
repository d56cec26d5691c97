"""What a sync destination must look like at every moment, as checks for tests.

:func:`snapshot` reads every visible file of a data root (hidden names — the local backend's
``.<name>.<uuid>.tmp`` temporaries — are invisible to the store and skipped);
:func:`mirror_problems` is pure: a source and a destination snapshot in, the broken
invariants out, one line each (an empty list when all hold):

* a committed generation (one with ``metadata.json``) at the destination has every file the
  source has for it, byte for byte, and nothing else;
* its parent (an essay's draft, an evaluation's essay) is committed at the destination;
* no file at the destination holds partial content: each is byte-identical to the
  source's (with ``exact_files``, the default: for a destination that started empty or as
  an older copy of the same source), or at least not a strict prefix of it.

:func:`check_mirror_invariants` snapshots both roots and runs the checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fsspec

from gens_fs.layout import (
    PARENT_STAGE,
    generation_of,
    generation_relpath,
    is_hidden,
    metadata_relpath,
)
from gens_fs.models import GenerationMetadata, read_metadata


def snapshot(root: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """Every visible file under the data root ``root`` (path or URL), by relative path."""
    fs, path = fsspec.core.url_to_fs(root, **dict(storage_options or {}))
    fs.invalidate_cache()
    try:
        found = fs.find(path)
    except FileNotFoundError:
        return {}
    base = path.rstrip("/") + "/"
    rel = [p[len(base) :] for p in found if p.startswith(base)]
    keep = [r for r in rel if not is_hidden(r)]
    if not keep:
        return {}
    data = fs.cat([base + r for r in keep])
    return {r: bytes(data[base + r]) for r in keep}


def mirror_problems(
    src: Mapping[str, bytes], dst: Mapping[str, bytes], *, exact_files: bool = True
) -> list[str]:
    """The invariants ``dst`` breaks as a (partial) mirror of ``src`` (see the module)."""
    problems: list[str] = []
    for relpath, data in sorted(dst.items()):
        expected = src.get(relpath)
        if expected is None or data == expected:
            continue
        if expected.startswith(data):
            problems.append(f"{relpath}: partial content ({len(data)} of {len(expected)} B)")
        elif exact_files:
            problems.append(f"{relpath}: differs from the source")
    committed = {key for r in dst if (key := generation_of(r)) and r == metadata_relpath(key)}
    for key in sorted(committed):
        gen = generation_relpath(key)
        want = {r: b for r, b in src.items() if generation_of(r) == key}
        got = {r: b for r, b in dst.items() if generation_of(r) == key}
        if want != got:
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            differ = sorted(r for r in set(want) & set(got) if want[r] != got[r])
            problems.append(
                f"{gen}: committed but missing {missing}, extra {extra}, differing {differ}"
            )
        parent_stage = PARENT_STAGE[key[0]]
        if parent_stage is None:
            continue
        meta = read_metadata(dst[metadata_relpath(key)], where=gen)
        if not isinstance(meta, GenerationMetadata) or not meta.parent_gen_id:
            problems.append(f"{gen}: committed with unreadable metadata.json")
        elif (parent_stage, meta.parent_gen_id) not in committed:
            parent = meta.parent_gen_id
            problems.append(f"{gen}: committed but its parent {parent_stage} {parent} is not")
    return problems


def check_mirror_invariants(
    src_root: str,
    dst_root: str,
    *,
    src_options: Mapping[str, Any] | None = None,
    dst_options: Mapping[str, Any] | None = None,
    exact_files: bool = True,
) -> list[str]:
    """:func:`mirror_problems` of the two data roots as they are now."""
    return mirror_problems(
        snapshot(src_root, src_options), snapshot(dst_root, dst_options), exact_files=exact_files
    )
