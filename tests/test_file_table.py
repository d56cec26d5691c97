"""The compact listing (``gens_fs.backends.file_table``) is the mapping a ``dict`` of the
same rows would be, whatever the paths, hashes and order they come in; ``pairs`` walks two
of them as a lookup of each path would; the local walk fills one in path order."""

from __future__ import annotations

import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gens_fs.backends import FileInfo
from gens_fs.backends.file_table import FileTable, FileTableBuilder, pairs
from gens_fs.backends.local_walk import LocalWalk

PATHS = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00") | st.sampled_from("/-.aé\udc80"),
    min_size=1,
    max_size=12,
)
HASHES = st.none() | st.sampled_from(
    [
        "0123456789abcdef0123456789abcdef",  # an MD5: kept as 16 bytes
        "0123456789ABCDEF0123456789ABCDEF",  # upper case: kept as it is
        "0123456789abcdef0123456789abcdef-3",  # a multipart ETag
        "0x8DC1234567890AB",  # an Azure ETag
        "",
    ]
)
ROWS = st.lists(st.tuples(PATHS, st.builds(FileInfo, st.integers(0, 2**62), HASHES)), max_size=40)


@given(ROWS)
def test_a_table_is_the_dict_of_its_rows(rows: list[tuple[str, FileInfo]]) -> None:
    expected = dict(rows)  # a path given twice keeps its last row
    table = FileTable.of(rows)
    assert table == expected and dict(table) == expected and len(table) == len(expected)
    assert list(table) == sorted(expected, key=lambda p: p.encode("utf-8", "surrogateescape"))
    assert dict(table.items()) == expected
    for path, info in expected.items():
        assert path in table and table[path] == info and table.get(path) == info
    assert "\x00absent" not in table and table.get("\x00absent") is None


@given(ROWS, ROWS)
def test_pairs_is_a_lookup_of_every_path(
    src_rows: list[tuple[str, FileInfo]], dst_rows: list[tuple[str, FileInfo]]
) -> None:
    src, dst = dict(src_rows), dict(dst_rows)
    expected = {p: (src.get(p), dst.get(p)) for p in {*src, *dst}}
    for left, right in (
        (src, dst),
        (FileTable.of(src), FileTable.of(dst)),
        (src, FileTable.of(dst)),
    ):
        found = list(pairs(left, right))
        assert {p: (s, d) for p, s, d in found} == expected
        assert len(found) == len(expected)


@given(st.lists(ROWS, max_size=4))
def test_merged_runs_are_one_table(parts: list[list[tuple[str, FileInfo]]]) -> None:
    tables = [FileTable.of(rows) for rows in parts]
    merged = FileTable.merged(tables)
    assert set(merged) == {p for rows in parts for p, _ in rows}
    assert list(merged) == sorted(merged, key=lambda p: p.encode("utf-8", "surrogateescape"))
    for path in merged:
        assert any(table.get(path) == merged[path] for table in tables)


def test_folders_listed_apart_are_joined_without_a_copy() -> None:
    essays = FileTable.of({"gens/essay/e1/raw.txt": FileInfo(1, None)})
    drafts = FileTable.of({"gens/draft/d1/raw.txt": FileInfo(2, None)})
    merged = FileTable.merged([essays, drafts])
    assert list(merged) == ["gens/draft/d1/raw.txt", "gens/essay/e1/raw.txt"]
    assert merged._runs == (*drafts._runs, *essays._runs)


def test_views_share_the_rows() -> None:
    builder = FileTableBuilder()
    md5 = "0123456789abcdef0123456789abcdef"
    builder.add("bucket/data/gens/draft/d1/raw.txt", FileInfo(3, md5))
    builder.add("bucket/data/gens/draft/d1/x.txt", FileInfo(4, "etag-2"))
    table = builder.build()
    under = table.under("bucket/data/")
    assert under is not None and dict(under) == {
        "gens/draft/d1/raw.txt": FileInfo(3, md5),
        "gens/draft/d1/x.txt": FileInfo(4, "etag-2"),
    }
    assert table.under("bucket/other/") is None
    assert table.under("bucket/data/gens/draft/d1/raw.txt") is None  # nothing would be left
    assert dict(under.without_hashes()) == {
        "gens/draft/d1/raw.txt": FileInfo(3),
        "gens/draft/d1/x.txt": FileInfo(4),
    }
    assert under.only(lambda p: True) is under
    assert dict(under.only(lambda p: p.endswith("raw.txt"))) == {
        "gens/draft/d1/raw.txt": FileInfo(3, md5)
    }
    assert under.with_hashes({"gens/draft/d1/x.txt": md5})["gens/draft/d1/x.txt"] == FileInfo(
        4, md5
    )


PREFIXES = st.sampled_from(["", "a", "a/", "é/", "\udc80", "/"])


@given(ROWS, PREFIXES)
def test_under_is_the_rows_without_a_prefix_they_all_have(
    rows: list[tuple[str, FileInfo]], prefix: str
) -> None:
    table = FileTable.of([(prefix + path, info) for path, info in rows] + rows)
    expected = {p[len(prefix) :]: i for p, i in table.items() if len(p) > len(prefix)}
    everywhere = all(p.startswith(prefix) and len(p) > len(prefix) for p in table)
    under = table.under(prefix)
    assert (under is not None) == everywhere
    if under is not None:
        assert dict(under) == expected and list(under) == [p[len(prefix) :] for p in table]


@given(ROWS, st.dictionaries(PATHS, HASHES.filter(lambda h: h is not None), max_size=10))
def test_with_hashes_replaces_the_hashes_of_the_paths_given(
    rows: list[tuple[str, FileInfo]], hashes: dict[str, str]
) -> None:
    table = FileTable.of(rows)
    for view in (table, table.without_hashes()):
        chosen = {p: h for p, h in hashes.items() if p in view} | {
            p: "fedcba9876543210fedcba9876543210" for p in list(view)[::3]
        }
        changed = view.with_hashes({**chosen, "\x00absent": "0" * 32})
        assert dict(changed) == {
            p: FileInfo(i.size, chosen.get(p, i.hash)) for p, i in view.items()
        }
        assert dict(view) == dict(view.items())  # the table it came from is unchanged
        assert list(changed.unhashed()) == [p for p, i in changed.items() if i.hash is None]


@given(
    st.lists(
        st.tuples(PATHS, st.integers(0, 2**62), st.none() | st.binary(min_size=16, max_size=16))
    )
)
def test_a_row_added_with_its_md5_bytes_is_the_row_with_its_hex(
    rows: list[tuple[str, int, bytes | None]],
) -> None:
    raw, text = FileTableBuilder(), FileTableBuilder()
    for path, size, md5 in rows:
        raw.add_md5(path, size, md5)
        text.add(path, FileInfo(size, None if md5 is None else md5.hex()))
    assert dict(raw.build()) == dict(text.build())


NAMES = st.sampled_from(["a", "a.b", "a-", "a0", "b", "é", "z", "\udc80", "a b"])
TREES = st.recursive(
    st.just(b"x"),
    lambda inner: st.dictionaries(NAMES, inner, min_size=1, max_size=4),
    max_leaves=25,
)


def _write_tree(folder: Path, tree: object) -> dict[str, int]:
    """Write ``tree`` (name -> bytes for a file, name -> dict for a folder) under ``folder``;
    every file's path relative to it, with its size."""
    found: dict[str, int] = {}
    assert isinstance(tree, dict)
    for name, value in tree.items():
        path = folder / name
        if isinstance(value, dict):
            path.mkdir()
            found.update({f"{name}/{r}": s for r, s in _write_tree(path, value).items()})
        else:
            path.write_bytes(value)
            found[name] = len(value)
    return found


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(NAMES, TREES, min_size=1, max_size=4))
def test_the_local_walk_lists_every_file_in_path_order(tmp_path: Path, tree: object) -> None:
    """A folder's files come out in the byte order of their paths (``a/x`` after ``a.b``
    and ``a-``), whatever names sort between a folder's name and that name plus ``/``."""
    root = tmp_path / f"t{uuid.uuid4().hex}"
    (root / "top").mkdir(parents=True)
    expected = _write_tree(root / "top", tree)
    walk = LocalWalk(str(root), follow_symlinks=False)
    walk.prefix(f"{root}/top")
    table = walk.files
    assert {p: i.size for p, i in table.items()} == {
        f"{root}/top/{r}": s for r, s in expected.items()
    }
    assert list(table) == sorted(table, key=lambda p: p.encode("utf-8", "surrogateescape"))
