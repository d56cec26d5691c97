"""Concurrent writers from separate processes, on local disk, on S3 (moto server) and on
Azure Blob (Azurite).

Memory is per-process, so its exclusive create is checked with threads instead.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gens_fs import GenerationExists, GensStore
from gens_fs.models import parse_metadata_json

PROCESSES = 8
T = TypeVar("T")
META = {"task_id": "t", "template_id": "x", "model_id": "m"}


def _race_create(root: str, options: dict[str, Any], who: int, barrier: Any) -> str:
    store = GensStore(root, storage_options=options)
    barrier.wait()
    try:
        store.write("draft", "contested", metadata={**META, "writer": who}, raw=f"w{who}")
    except GenerationExists:
        return "lost"
    return f"won {who}"


def _write_many(root: str, options: dict[str, Any], count: int, who: int, barrier: Any) -> int:
    store = GensStore(root, storage_options=options)
    barrier.wait()
    for i in range(count):
        store.write("draft", f"w{who}-{i}", metadata={**META, "writer": who}, raw=f"{who}/{i}")
    return count


def _roots(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if kind == "local":
        return str(tmp_path / "gens"), {}
    if kind == "azure":
        options = request.getfixturevalue("azure_options")
        return f"az://gens-test/{tmp_path.name}/gens", options
    options = request.getfixturevalue("s3_options")
    return f"s3://{request.getfixturevalue('bucket')}/gens", options


def _in_processes(target: Callable[..., T], *args: Any) -> list[T]:
    """Run ``target(*args, who, barrier)`` in PROCESSES fresh processes that start together."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            return pool.starmap(target, [(*args, who, barrier) for who in range(PROCESSES)])


@pytest.mark.parametrize("kind", ["local", "s3", "azure"])
def test_racing_creators_exactly_one_wins(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root, options = _roots(kind, tmp_path, request)
    results = _in_processes(_race_create, root, options)
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1, results
    winner = int(winners[0].split()[1])
    gen = GensStore(root, storage_options=options).load("draft", "contested")
    assert gen.metadata is not None and gen.metadata.model_extra == {"writer": winner}


@pytest.mark.parametrize("kind", ["local", "s3", "azure"])
def test_exclusive_create_primitive_under_a_process_race(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Without the store's early "already committed?" check, the medium alone must decide.
    root, options = _roots(kind, tmp_path, request)
    results = _in_processes(_race_primitive, root, options)
    assert sorted(results) == [False] * (PROCESSES - 1) + [True]


def _race_primitive(root: str, options: dict[str, Any], who: int, barrier: Any) -> bool:
    store = GensStore(root, storage_options=options)
    path = store.path("draft", "contested", "metadata.json")
    barrier.wait()
    return store._backend.create(path, f"writer {who}".encode())


def test_memory_exclusive_create_under_a_thread_race() -> None:
    store = GensStore("memory://thread-race/gens")
    path = store.path("draft", "contested", "metadata.json")
    barrier = threading.Barrier(PROCESSES)

    def attempt(who: int) -> bool:
        barrier.wait()
        return store._backend.create(path, f"writer {who}".encode())

    with ThreadPoolExecutor(PROCESSES) as pool:
        results = list(pool.map(attempt, range(PROCESSES)))
    assert sorted(results) == [False] * (PROCESSES - 1) + [True]


@pytest.mark.parametrize(("kind", "per_process"), [("local", 500), ("s3", 500)])
def test_many_writers_distinct_generations_all_land(
    kind: str, per_process: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root, options = _roots(kind, tmp_path, request)
    counts = _in_processes(_write_many, root, options, per_process)
    assert sum(counts) == PROCESSES * per_process
    store = GensStore(root, storage_options=options)
    listing = store.files("draft")
    assert len(listing) == PROCESSES * per_process
    # Every generation committed, its raw.txt of the exact size written, and its metadata
    # valid and naming the right writer (one batched GET per metadata.json).
    paths = []
    for gen_id, files in listing.items():
        who, i = gen_id[1:].split("-")
        assert files["raw.txt"] == len(f"{who}/{i}")
        paths.append(store.path("draft", gen_id, "metadata.json"))
    for path, data in store._backend.read_many(paths).items():
        assert data is not None
        gen_id = path.split("/")[-2]
        meta = parse_metadata_json(data, where=path)
        assert meta.model_extra == {"writer": int(gen_id[1:].split("-")[0])}
