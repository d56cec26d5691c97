"""The local hash cache (``gens_fs.backends.local_hashes``): a file is not read again while
its stamp (size, mtime_ns, ctime_ns, inode) is the one recorded, and every edit is still
caught; racy, corrupt and foreign caches are never trusted.

Files written by a test are always "racy" (changed within the last 2 s), so the cache
would not keep their MD5. The tests that need a kept entry record it through the cache's
own API as a hashing would, at a moment later than the file's stamp (``opened_ns``), and
most of them record a *wrong* MD5 on purpose: seeing it come back proves the file was not
read, and not seeing it proves the entry was not trusted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from gens_fs import GensStore, sync
from gens_fs.backends.local_hashes import RACY_WINDOW_NS, HashCache, cache_dir, hash_files
from gens_fs.listing import list_data_root
from gens_fs.sync.roots import open_root
from gens_fs.testing.s3 import s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware

FAKE = "0123456789abcdef0123456789abcdef"
LATER_NS = 10 * RACY_WINDOW_NS  # a hashing this long after the file was written: not racy
META = {"task_id": "t", "template_id": "x", "model_id": "m"}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def keep(root: Path, path: Path, digest: str) -> None:
    """Record ``digest`` for ``path`` as a hashing long after its last change would, and
    save it (what a sync of an old, unchanged file leaves in the cache)."""
    cache = HashCache.for_root(str(root))
    cache.record(cache.key(str(path)), os.stat(path), digest, time.time_ns() + LATER_NS)
    cache.save()


def hashed(root: Path, path: Path, *, fresh: bool = False) -> str:
    """``path``'s MD5 as a new process would get it (the cache read from disk)."""
    found = hash_files(HashCache.for_root(str(root)), [str(path)], fresh=fresh)[str(path)]
    assert isinstance(found, str), found
    return found


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    path = root / "gens" / "draft" / "d1" / "raw.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a draft, first version")
    return root, path


def test_an_unchanged_file_is_not_read_again(tree: tuple[Path, Path]) -> None:
    root, path = tree
    keep(root, path, FAKE)
    assert hashed(root, path) == FAKE  # from the cache: the file was not read
    assert hashed(root, path, fresh=True) == md5(path)  # --checksum reads every file


def test_a_same_size_edit_with_its_mtime_restored_is_caught(tree: tuple[Path, Path]) -> None:
    root, path = tree
    before = os.stat(path)
    keep(root, path, md5(path))
    path.write_bytes(b"a draft, FIRST version")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert hashed(root, path) == md5(path) == hashlib.md5(b"a draft, FIRST version").hexdigest()


def test_a_file_replaced_by_a_rename_is_read_again(tree: tuple[Path, Path]) -> None:
    root, path = tree
    keep(root, path, FAKE)
    other = path.with_name(".raw.txt.tmp")
    shutil.copy2(path, other)  # same bytes, size and mtime: another inode and ctime
    os.replace(other, path)
    assert hashed(root, path) == md5(path)


def test_a_racy_file_is_hashed_but_not_kept(tree: tuple[Path, Path]) -> None:
    """A file changed within RACY_WINDOW_NS of its hashing could change again in the same
    timestamp step without its stamp changing: its MD5 is used, never kept."""
    root, path = tree
    cache = HashCache.for_root(str(root))
    cache.record(cache.key(str(path)), os.stat(path), FAKE, time.time_ns())
    cache.save()
    assert hashed(root, path) == md5(path)  # the racy entry was not kept
    assert hashed(root, path) == md5(path)  # nor the real one: the file is still racy
    assert not HashCache.for_root(str(root)).location.exists()  # type: ignore[union-attr]


def test_the_boundary_of_the_racy_window(tree: tuple[Path, Path]) -> None:
    root, path = tree
    info = os.stat(path)
    newest = max(info.st_mtime_ns, info.st_ctime_ns)
    cache = HashCache.for_root(str(root))
    key = cache.key(str(path))
    cache.record(key, info, FAKE, newest + RACY_WINDOW_NS)  # just inside: not kept
    assert cache.lookup(key, info) is None
    cache.record(key, info, FAKE, newest + RACY_WINDOW_NS + 1)
    assert cache.lookup(key, info) == FAKE


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "garbage", "empty"])
def test_a_corrupt_cache_is_not_trusted_and_is_rebuilt(
    tree: tuple[Path, Path], damage: str
) -> None:
    root, path = tree
    keep(root, path, FAKE)
    location = HashCache.for_root(str(root)).location
    assert location is not None
    data = bytearray(location.read_bytes())
    if damage == "flip a byte":
        data[-10] ^= 0x01  # inside the record's MD5: its CRC no longer matches
    elif damage == "truncate":
        del data[-5:]
    elif damage == "garbage":
        data[:] = os.urandom(len(data))
    else:
        data.clear()
    location.write_bytes(bytes(data))
    assert hashed(root, path) == md5(path)
    keep(root, path, FAKE)  # the next save rewrites a valid log
    assert hashed(root, path) == FAKE


def test_a_record_after_a_damaged_one_is_not_trusted(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    paths = [root / f"f{i}.txt" for i in range(3)]
    for path in paths:
        path.write_bytes(b"x")
        keep(root, path, FAKE)  # one append each
    location = HashCache.for_root(str(root)).location
    assert location is not None
    data = bytearray(location.read_bytes())
    record = 4 + 2 + len("f0.txt") + 32 + 16  # CRC, key length, key, stamp, MD5
    data[-2 * record + 30] ^= 0x01  # inside the second record's stamp
    location.write_bytes(bytes(data))
    assert [hashed(root, p) for p in paths] == [FAKE, md5(paths[1]), md5(paths[2])]


def test_a_cache_from_another_root_is_ignored(tmp_path: Path) -> None:
    """A log copied (or renamed) into another root's place: its header names its own root."""
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        (root / "gens").mkdir(parents=True)
        (root / "gens" / "x.txt").write_bytes(b"same relative path, same bytes")
    # the same stamps too: a copy that kept size, mtime (and, here, what a foreign cache
    # would need to match: the entry under the same relative name)
    keep(first, first / "gens" / "x.txt", FAKE)
    theirs = HashCache.for_root(str(first)).location
    mine = HashCache.for_root(str(second)).location
    assert theirs is not None and mine is not None and theirs != mine
    shutil.copy(theirs, mine)
    cache = HashCache.for_root(str(second))
    info = os.stat(first / "gens" / "x.txt")
    assert cache.lookup("gens/x.txt", info) is None  # even for the exact stamp recorded
    keep(second, second / "gens" / "x.txt", FAKE)
    assert mine.read_bytes().count(os.path.realpath(second).encode()) == 1  # rewritten


def test_the_cache_lives_outside_the_data_root(
    tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root, path = tree
    keep(root, path, FAKE)
    location = HashCache.for_root(str(root)).location
    assert location is not None and location.is_relative_to(cache_dir())
    assert not location.is_relative_to(root)
    monkeypatch.delenv("GENS_FS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gens_fs"
    # a cache directory inside the root being hashed would be listed and synced: not kept
    monkeypatch.setenv("GENS_FS_CACHE_DIR", str(root / "cohorts" / "cache"))
    assert HashCache.for_root(str(root)).location is None
    assert hashed(root, path) == md5(path)
    assert not (root / "cohorts").exists()


def test_an_unwritable_cache_directory_never_fails_a_hash(
    tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, path = tree
    blocker = root.parent / "blocker"
    blocker.write_bytes(b"a file where the cache directory would be")
    monkeypatch.setenv("GENS_FS_CACHE_DIR", str(blocker))
    cache = HashCache.for_root(str(root))
    cache.record(cache.key(str(path)), os.stat(path), md5(path), time.time_ns() + LATER_NS)
    cache.save()  # cannot be written: not kept, no error
    assert hashed(root, path) == md5(path)


def test_missing_and_special_files_are_values(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    fifo = root / "pipe"
    os.mkfifo(fifo)
    found = hash_files(HashCache.for_root(str(root)), [str(root / "gone"), str(fifo)])
    assert isinstance(found[str(root / "gone")], FileNotFoundError)
    assert isinstance(found[str(fifo)], OSError)  # SpecialFile: never opened


# -- in the local listing ------------------------------------------------------------------


def known_md5s(root: Path) -> dict[str, str | None]:
    """Each file's hash in a listing of ``root`` that carries the MD5s the cache knows."""
    backend = open_root(str(root), None, "fsspec", None).with_known_md5s()
    assert backend.capabilities.listing_hash == "md5"
    listing = list_data_root(backend, ["gens", "cohorts"])
    return {relpath: info.hash for relpath, info in listing.files.items()}


def test_a_listing_carries_the_md5s_the_cache_knows_for_unchanged_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    kept, edited, new, racy = (root / f"gens/draft/d{n}/raw.txt" for n in range(4))
    for path in (kept, edited, new, racy):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"a draft, first version")
    keep(root, kept, FAKE)  # a wrong MD5: seeing it proves the file was not read
    keep(root, edited, md5(edited))
    before = os.stat(edited)
    edited.write_bytes(b"a draft, FIRST version")  # same size, the mtime put back
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    hashed(root, racy)  # just written: hashed, not kept
    assert known_md5s(root) == {
        "gens/draft/d0/raw.txt": FAKE,
        "gens/draft/d1/raw.txt": None,  # its ctime changed: not the stamp recorded
        "gens/draft/d2/raw.txt": None,  # never hashed
        "gens/draft/d3/raw.txt": None,  # racy when hashed
    }
    plain = list_data_root(open_root(str(root), None, "fsspec", None), ["gens"])
    assert {info.hash for info in plain.files.values()} == {None}  # a listing as it always was


@pytest.mark.parametrize("damage", ["flip a byte", "garbage"])
def test_a_listing_never_takes_an_md5_from_a_corrupt_cache(
    tree: tuple[Path, Path], damage: str
) -> None:
    root, path = tree
    keep(root, path, FAKE)
    assert known_md5s(root) == {"gens/draft/d1/raw.txt": FAKE}
    location = HashCache.for_root(str(root)).location
    assert location is not None
    data = bytearray(location.read_bytes())
    if damage == "flip a byte":
        data[-10] ^= 0x01  # inside the record's MD5: its CRC no longer matches
    else:
        data[:] = os.urandom(len(data))
    location.write_bytes(bytes(data))
    assert known_md5s(root) == {"gens/draft/d1/raw.txt": None}


def test_a_listing_follows_a_link_to_the_file_hashed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    target = root / "gens/draft/d1/raw.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"a draft")
    link = root / "gens/draft/d2/raw.txt"
    link.parent.mkdir()
    link.symlink_to(target)
    keep(root, link, FAKE)  # recorded with the stamp of what the link points to
    backend = open_root(str(root), None, "fsspec", None).with_known_md5s()
    listing = list_data_root(backend, ["gens"], follow_symlinks=True)
    assert listing.files["gens/draft/d2/raw.txt"].hash == FAKE
    assert listing.files["gens/draft/d1/raw.txt"].hash is None


# -- through a sync ------------------------------------------------------------------------


def test_a_resync_trusts_the_cache_and_still_catches_a_same_size_edit(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    store = GensStore(str(src / "gens"))
    store.write("draft", "d1", metadata=META, raw="first draft", parsed="first")
    store.write("draft", "d2", metadata=META, raw="other draft", parsed="other")
    assert sync(str(src), str(dst)).copied == 6
    raw1, raw2 = src / "gens/draft/d1/raw.txt", src / "gens/draft/d2/raw.txt"
    for path in src.rglob("*.txt"):
        keep(src, path, md5(path))
    keep(src, raw2, FAKE)  # a wrong MD5 for an unchanged file: trusted, so copied again
    stamp = os.stat(raw1)
    raw1.write_bytes(b"FIRST draft")  # same size, old mtime
    os.utime(raw1, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    again = sync(str(src), str(dst))
    assert again.copied == 2 and again.ok
    assert (dst / "gens/draft/d1/raw.txt").read_bytes() == b"FIRST draft"
    # --checksum reads every file: the wrong entry is not used (nothing differs)
    keep(src, raw2, FAKE)
    assert sync(str(src), str(dst), checksum=True).copied == 0


def test_the_cache_never_appears_in_a_listing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    GensStore(str(src / "gens")).write("draft", "d1", metadata=META, raw="r", parsed="p")
    sync(str(src), str(dst))
    for path in src.rglob("*.txt"):
        keep(src, path, md5(path))
    assert HashCache.for_root(str(src)).location.exists()  # type: ignore[union-attr]
    for root in (src, dst):
        listing = list_data_root(open_root(str(root), None, "fsspec", None), ["gens", "cohorts"])
        assert sorted(listing.files) == [
            "gens/draft/d1/metadata.json",
            "gens/draft/d1/parsed.txt",
            "gens/draft/d1/raw.txt",
        ]


def test_a_resync_to_s3_takes_the_md5s_of_unchanged_files_from_the_listing(
    tmp_path: Path, bucket: str, s3_options: dict[str, object]
) -> None:
    """Against S3 the local listing carries the cached MD5s: an unchanged file is not read
    (its wrong cached MD5 is trusted, so it is copied again), a same-size edit whose mtime
    was put back is caught, and ``--checksum`` reads every file instead."""
    src, dst = tmp_path / "src", f"s3://{bucket}/data"
    store = GensStore(str(src / "gens"))
    store.write("draft", "d1", metadata=META, raw="first draft", parsed="first")
    store.write("draft", "d2", metadata=META, raw="other draft", parsed="other")
    assert sync(str(src), dst, dst_options=s3_options).copied == 6
    for path in src.rglob("*.*"):
        keep(src, path, md5(path))
    raw1, raw2 = src / "gens/draft/d1/raw.txt", src / "gens/draft/d2/raw.txt"
    assert sync(str(src), dst, dst_options=s3_options).copied == 0
    keep(src, raw2, FAKE)
    stamp = os.stat(raw1)
    raw1.write_bytes(b"FIRST draft")  # same size, old mtime
    os.utime(raw1, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    again = sync(str(src), dst, dst_options=s3_options, dry_run=True)
    assert sorted(a.path for a in again.actions) == [
        "gens/draft/d1/raw.txt",
        "gens/draft/d2/raw.txt",
    ]
    assert sync(str(src), dst, dst_options=s3_options, checksum=True, dry_run=True).actions == [
        again.actions[0]
    ]  # every file read: the wrong entry is not used, d2 is unchanged
    assert sync(str(src), dst, dst_options=s3_options, checksum=True).copied == 1


def test_a_file_changed_between_the_listing_and_the_copy_is_caught_next_time(
    tmp_path: Path, s3_middleware: S3Middleware, bucket: str
) -> None:
    """The MD5 a listing carries is the one recorded for the stamp it saw: a file edited
    after the listing (same size, mtime put back) is not seen by that sync, and is by the
    next one; a file edited before its copy is read as it is then."""
    src, dst = tmp_path / "src", f"s3://{bucket}/data"
    options = s3_storage_options(s3_middleware.endpoint_url)
    store = GensStore(str(src / "gens"))
    store.write("draft", "d1", metadata=META, raw="first draft", parsed="first")
    assert sync(str(src), dst, dst_options=options).copied == 3
    for path in src.rglob("*.*"):
        keep(src, path, md5(path))
    store.write("draft", "d2", metadata=META, raw="second draft", parsed="second")
    unchanged, copied = src / "gens/draft/d1/raw.txt", src / "gens/draft/d2/raw.txt"
    with s3_middleware.hold(["PUT"]) as hold:
        done: list[int] = []
        worker = threading.Thread(
            target=lambda: done.append(sync(str(src), dst, dst_options=options).copied)
        )
        worker.start()
        assert hold.wait_holding(30)  # listed and planned: copying d2
        stamp = os.stat(unchanged)
        unchanged.write_bytes(b"FIRST draft")
        os.utime(unchanged, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        copied.write_bytes(b"SECOND DRAFT, longer")
    worker.join(60)  # the held PUTs were answered 503: retried
    assert done == [3]  # d2's files; d1's raw.txt was unchanged when listed
    assert sync(str(src), dst, dst_options=options).ok
    assert sync(str(src), dst, dst_options=options).copied == 0
    remote = GensStore(f"{dst}/gens", storage_options=options)
    assert remote.load("draft", "d1").raw_text == "FIRST draft"
    assert remote.load("draft", "d2").raw_text == "SECOND DRAFT, longer"
