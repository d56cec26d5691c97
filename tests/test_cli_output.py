"""``gens-fs`` on real data, run as a real process (``python -m gens_fs``), one test per
finding of issue 8 ("First contact"): store text that looks like rich markup or carries
terminal escapes, long texts, exact bytes, Ctrl-C, and the output conventions (version,
completion, help, plurals, sizes, piped output, held-back generations, one error a line).
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import fsspec
import pytest
from conftest import cli_options

from gens_fs import (
    DataRoot,
    GenerationNotFound,
    GensStore,
    MembershipRow,
    UnknownArtifact,
    check,
)
from gens_fs.cli._common import human_size, plural, printable
from gens_fs.testing.invariants import mirror_problems, snapshot
from gens_fs.testing.s3 import MotoServer, s3_storage_options
from gens_fs.testing.s3_middleware import S3Middleware
from gens_fs.testing.synthetic import make_store
from tests.process import gens_fs_bytes, one_error_line, start, wait_until_held

REPO = Path(__file__).resolve().parents[1]
META = {"task_id": "t1", "template_id": "[bold]tpl[/bold]", "model_id": "llama[/8b]"}
# An LLM's output with an OSC title change, colours, a C1 CSI (clear screen) and CRLF.
HOSTILE_RAW = "before \x1b]0;pwned\x07 \x1b[31mred\x1b[0m \x9b2J after\r\nline2\n"
HOSTILE_MODEL = "m\x1b[2Jx"
# What a terminal would act on, had the text reached it raw.
RAW_SEQUENCES = [b"\x1b]0;pwned", b"\x1b[31m", b"\xc2\x9b", b"\x1b[2J"]


def in_terminal(*args: str) -> bytes:
    """``gens-fs ARGS`` with stdout on a pseudo-terminal: what a person would see."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gens_fs", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the process closed its end of the terminal
            break
        if not data:
            break
        out += data
    os.close(master)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


# Stores a process can reach from outside (a memory store dies with its process).
ON_EACH_BACKEND = pytest.mark.parametrize("backend_name", ["local", "s3"])


@pytest.fixture
def root_args(backend_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    """``[ROOT, -o ...]``: a data root whose path looks like markup (``[bold]x[/bold]``;
    on local disk with an escape sequence too) and the storage options to reach it."""
    if backend_name == "local":
        return [str(tmp_path / "[bold]x[/bold]\x1b[31m" / "data")]
    options = request.getfixturevalue("s3_options")
    bucket = request.getfixturevalue("bucket")
    return [f"s3://{bucket}/[bold]x[/bold]/data", *cli_options(options)]


def open_store(root_args: list[str], request: pytest.FixtureRequest) -> DataRoot:
    root = root_args[0]
    options = request.getfixturevalue("s3_options") if root.startswith("s3://") else {}
    return DataRoot(root, storage_options=options)


@pytest.fixture
def hostile(root_args: list[str], request: pytest.FixtureRequest) -> list[str]:
    """A data root whose metadata looks like markup and whose texts carry escapes."""
    store = open_store(root_args, request).store()
    store.write("draft", "d1", metadata=META, raw=HOSTILE_RAW, parsed="p", prompt="q")
    store.write(
        "essay", "e1", metadata={**META, "model_id": HOSTILE_MODEL, "parent_gen_id": "d1"},
        raw="essay", parsed="e", prompt="q",
    )  # fmt: skip
    root = open_store(root_args, request)
    root.write_membership("c1", [MembershipRow(stage="draft", gen_id="d1")])  # e1 in none
    return root_args


# -- store text is data: never markup, never terminal control -------------------------------


@ON_EACH_BACKEND
@pytest.mark.parametrize("command", ["ls", "stats", "check", "show"])
def test_markup_and_escapes_in_store_text_are_shown_as_data(
    hostile: list[str], command: str
) -> None:
    root, *options = hostile
    args = [root, "draft", "d1"] if command == "show" else [root]
    done = gens_fs_bytes(command, *args, *options)
    assert done.returncode in (0, 1), done.stderr.decode()
    assert done.stderr == b""
    out = done.stdout
    assert not any(seq in out for seq in RAW_SEQUENCES), out
    text = out.decode()
    if command != "show":  # the title names the root, brackets and all
        assert printable(root) in text
    if command != "check":
        assert "llama[/8b]" in text
    if command == "ls":
        assert "[bold]tpl[/bold]" in text and printable(HOSTILE_MODEL) in text
    if command == "show":
        assert "\\x1b]0;pwned\\x07 \\x1b[31mred\\x1b[0m \\x9b2J after\r\nline2" in text


@ON_EACH_BACKEND
def test_json_keeps_hostile_text_exact_and_escaped(hostile: list[str]) -> None:
    root, *options = hostile
    rows = gens_fs_bytes("ls", root, "--json", *options)
    shown = gens_fs_bytes("show", root, "draft", "d1", "--json", *options)
    for done in (rows, shown):
        assert done.returncode == 0, done.stderr.decode()
        assert not any(seq in done.stdout for seq in RAW_SEQUENCES)
    models = {r["gen_id"]: r["model_id"] for r in json.loads(rows.stdout)}
    assert models == {"d1": "llama[/8b]", "e1": HOSTILE_MODEL}
    assert json.loads(shown.stdout)["raw_text"] == HOSTILE_RAW


@ON_EACH_BACKEND
def test_on_a_terminal_escapes_stay_escaped(hostile: list[str]) -> None:
    root, *options = hostile
    for args in (["show", root, "draft", "d1"], ["show", root, "draft", "d1", "-f", "raw"]):
        out = in_terminal(*args, *options)
        assert not any(seq in out for seq in RAW_SEQUENCES), out
        assert b"\\x1b]0;pwned\\x07" in out and b"\\x9b2J" in out


# -- show: long texts, exact bytes ---------------------------------------------------------


def test_show_shortens_long_texts_with_a_note(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    store = GensStore(f"{root}/gens")
    many_lines = "".join(f"line {i:04d}\n" for i in range(3000))  # 30,000 characters
    one_line = "x" * 10_000
    store.write("draft", "d1", metadata=META, raw=many_lines, parsed=one_line, prompt="q")

    short = gens_fs_bytes("show", root, "draft", "d1")
    assert short.returncode == 0, short.stderr.decode()
    out = short.stdout.decode()
    assert "raw.txt (30,000 characters):" in out
    assert "line 0039\n" in out and "line 0040" not in out
    assert "... (29,600 more characters; --full to see all, or --field raw" in out
    assert "x" * 2000 + "\n... (8,000 more characters; --full to see all, or --field parsed" in out
    assert "prompt.txt (1 character):\nq\n" in out

    full = gens_fs_bytes("show", root, "draft", "d1", "--full").stdout.decode()
    assert many_lines in full and one_line in full and "more character" not in full


def test_show_of_a_50_mb_text_prints_one_screenful(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    line = "word " * 19 + "\n"
    GensStore(f"{root}/gens").write(
        "draft", "big", metadata=META, raw=line * (50_000_000 // len(line)), parsed="p"
    )
    done = gens_fs_bytes("show", root, "draft", "big")
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout) < 5_000
    assert b"--full to see all" in done.stdout


# raw.txt: no final newline, CRLF, escapes, bytes that are not UTF-8, and more than one
# 8 MiB chunk of the stream.
EXACT_RAW = b"no final newline\r\n\x1b[31m\xff\xfe" + b"z" * (9 * 2**20) + b"end"


@ON_EACH_BACKEND
def test_field_writes_the_exact_bytes_of_one_file(
    root_args: list[str], request: pytest.FixtureRequest
) -> None:
    root, *options = root_args
    data_root = open_store(root_args, request)
    store = data_root.store()
    store.write("draft", "d1", metadata=META, parsed="p")
    # Behind the store's back: raw.txt as a pipeline wrote it, prompt.txt not UTF-8.
    data_root.backend.write_many(
        {store.path("draft", "d1", "raw.txt"): EXACT_RAW,
         store.path("draft", "d1", "prompt.txt"): b"\xff\xfe not UTF-8"}
    )  # fmt: skip

    whole = gens_fs_bytes("show", root, "draft", "d1", *options)
    assert "is not UTF-8 text" in one_error_line(whole)
    raw = gens_fs_bytes("show", root, "draft", "d1", "--field", "raw", *options)
    assert (raw.returncode, raw.stderr) == (0, b"")
    assert raw.stdout == EXACT_RAW
    meta = gens_fs_bytes("show", root, "draft", "d1", "-f", "metadata", *options)
    meta_path = store.path("draft", "d1", "metadata.json")
    assert meta.stdout == data_root.backend.read_many([meta_path])[meta_path]
    missing = gens_fs_bytes("show", root, "draft", "d9", "-f", "raw", *options)
    assert "no draft generation d9" in one_error_line(missing)


def test_field_works_when_another_file_is_unreadable(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    store = GensStore(f"{root}/gens")
    store.write("draft", "d1", metadata=META, raw="the raw text")
    Path(store.path("draft", "d1", "parsed.txt")).mkdir()  # unreadable, even for root

    assert "not a regular file" in one_error_line(gens_fs_bytes("show", root, "draft", "d1"))
    raw = gens_fs_bytes("show", root, "draft", "d1", "--field", "raw")
    assert (raw.returncode, raw.stdout, raw.stderr) == (0, b"the raw text", b"")


def test_iter_bytes_streams_one_file(store: GensStore) -> None:
    """The library half of ``--field``, on every backend (memory too: in-process)."""
    store.write("draft", "d1", metadata=META, raw="r" * 100)
    chunks = store.iter_bytes("draft", "d1", "raw.txt")
    assert chunks is not None and b"".join(chunks) == b"r" * 100
    assert store.iter_bytes("draft", "d1", "prompt.txt") is None
    with pytest.raises(GenerationNotFound, match="no draft generation d9"):
        store.iter_bytes("draft", "d9", "raw.txt")
    with pytest.raises(UnknownArtifact, match=re.escape("'../x' is not a generation file")):
        store.iter_bytes("draft", "d1", "../x")


def peak_rss_kb(args: list[str]) -> int:
    """The peak resident memory of ``python -m gens_fs ARGS`` (stdout to /dev/null), as its
    parent sees it: the only child of a fresh interpreter."""
    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run([sys.executable, '-m', 'gens_fs', *sys.argv[1:]],"
        " stdout=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_field_streams_in_bounded_memory(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    store = GensStore(f"{root}/gens")
    store.write("draft", "small", metadata=META, raw="x")
    store.write("draft", "big", metadata=META, raw="y" * 64 * 2**20)
    small = peak_rss_kb(["show", root, "draft", "small", "--field", "raw"])
    big = peak_rss_kb(["show", root, "draft", "big", "--field", "raw"])
    assert big - small < 32 * 1024, (small, big)  # a whole read would add 64 MB at least


# -- Ctrl-C ----------------------------------------------------------------------------------


def start_and_interrupt(
    args: list[str], middleware: S3Middleware, kind: str | None, after: int
) -> str:
    """Start ``gens-fs ARGS``; send SIGINT once ``after`` of its requests (of ``kind``, or
    of any kind) have been answered and the next one is held. Exit code 130 and nothing on
    stdout; returns stderr."""
    with middleware.hold(None if kind is None else [kind], after=after) as hold:
        proc = start(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert wait_until_held(hold, proc), proc.communicate()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (proc.returncode, out) == (130, b""), err
    return err.decode()


INTERRUPTED = re.compile(
    r"gens-fs: interrupted after ([\d,]+) of ([\d,]+) files; the destination is "
    r"consistent; run the same command again to finish\n"
)


def test_ctrl_c_during_sync_says_how_far_it_got(
    tmp_path: Path, moto_server: MotoServer, bucket: str, s3_middleware: S3Middleware
) -> None:
    src, dst = f"s3://{bucket}/src", str(tmp_path / "dst")
    direct = s3_storage_options(moto_server.endpoint_url)
    fs, path = fsspec.core.url_to_fs(src, **direct)
    make_store(fs, path, drafts=3, seed=8)  # 27 generations: 24 parents to read first
    src_files = snapshot(src, direct)
    args = [
        "sync",
        src,
        dst,
        "--jobs",
        "4",
        *cli_options(s3_storage_options(s3_middleware.endpoint_url)),
    ]

    err = start_and_interrupt(args, s3_middleware, "GET", after=24 + 30)
    match = INTERRUPTED.fullmatch(err)
    assert match, err
    done, total = (int(g.replace(",", "")) for g in match.groups())
    assert 0 < done < total == len(src_files)
    assert mirror_problems(src_files, snapshot(dst)) == []
    # Transfers in flight were cancelled and awaited, so no write was cut between its
    # temporary file and the rename.
    assert sorted(p.name for p in Path(dst).rglob(".*")) == []
    assert all(f.kind == "incomplete" for f in check(dst).findings if f.severity == "error")

    again = gens_fs_bytes(*args)
    assert again.returncode == 0, again.stderr.decode()
    assert snapshot(dst) == src_files


@pytest.mark.parametrize("command", ["ls", "sync"])
def test_ctrl_c_before_any_work_is_one_line(
    command: str, tmp_path: Path, bucket: str, s3_middleware: S3Middleware
) -> None:
    root = f"s3://{bucket}/data"
    args = [root, str(tmp_path / "dst")] if command == "sync" else [root]
    options = cli_options(s3_storage_options(s3_middleware.endpoint_url))
    # its first request is held: the signal arrives while it waits for the answer
    err = start_and_interrupt([command, *args, *options], s3_middleware, None, after=0)
    expected = (
        "gens-fs: interrupted before any file was copied; the destination is consistent; "
        "run the same command again to finish\n"
        if command == "sync"
        else "gens-fs: interrupted\n"
    )
    assert err == expected


# -- conventions -----------------------------------------------------------------------------


def test_version() -> None:
    done = gens_fs_bytes("--version")
    assert (done.returncode, done.stdout.decode()) == (0, f"gens-fs {version('gens_fs')}\n")


def test_shell_completion() -> None:
    assert b"--install-completion" in gens_fs_bytes("--help").stdout
    env = {"_GENS_FS_COMPLETE": "complete_bash", "COMP_WORDS": "gens-fs s", "COMP_CWORD": "1"}
    assert gens_fs_bytes(env=env).stdout.decode().split() == ["show", "stats", "sync"]
    env = {**env, "COMP_WORDS": "gens-fs show --fi", "COMP_CWORD": "2"}
    assert gens_fs_bytes(env=env).stdout.decode().split() == ["--field"]


HELP = {
    "ls": ["gens-fs ls [OPTIONS] ROOT\n", "-s, --stage STAGE", "-c, --cohort COHORT_ID"],
    "show": ["gens-fs show [OPTIONS] ROOT STAGE GEN_ID\n", "-f, --field NAME", "--full"],
    "check": ["gens-fs check [OPTIONS] ROOT\n", "-o, --option KEY=VALUE"],
    "stats": ["gens-fs stats [OPTIONS] ROOT\n"],
    "sync": ["gens-fs sync [OPTIONS] SRC DST\n", "--max-delete N", "-j, --jobs N"],
    "demo": ["gens-fs demo [OPTIONS]\n", "--bucket NAME"],
}


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_names_things_readably(command: str) -> None:
    text = gens_fs_bytes(command, "--help").stdout.decode()
    for expected in HELP[command]:
        assert expected in text
    assert not re.search(r"<\w|\{\w| TEXT\b| INTEGER\b", text), text


def test_plurals_sizes_held_back_and_unwrapped_lines(tmp_path: Path) -> None:
    base = tmp_path / ("a-long-folder-name-" * 4)
    src, dst = str(base / "src"), str(base / "dst")
    store = GensStore(f"{src}/gens")
    long_model = "model-" + "m" * 150
    meta = {**META, "model_id": long_model}
    store.write("draft", "d0", metadata=meta, raw="r" * 1_234_567, parsed="p", prompt="q")
    store.write("essay", "e0", metadata={**meta, "parent_gen_id": "d0"}, raw="e", prompt="q")

    held = gens_fs_bytes("sync", src, dst, "--stage", "essay")
    assert held.returncode == 1
    out = held.stdout.decode().splitlines()
    assert out[0].startswith(f"{src} -> {dst}: copied 0 files (0 B), skipped 0 unchanged")
    assert out[1] == "held back 1 generation (each error says why and what to do): essay/e0"
    err = held.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("gens-fs: error: gens/essay/e0: not synced: its")
    report = json.loads(gens_fs_bytes("sync", src, dst, "--stage", "essay", "--json").stdout)
    assert report["held"] == ["essay/e0"]

    first = gens_fs_bytes("sync", src, dst).stdout.decode()
    count = len(snapshot(src))
    assert f"{src} -> {dst}: copied {count} files (1.2 MB), skipped 0 unchanged" in first
    Path(store.path("draft", "d0", "parsed.txt")).write_text("P")
    again = gens_fs_bytes("sync", src, dst).stdout.decode()
    assert f": copied 1 file (1 B), skipped {count - 1} unchanged, deleted 0 files in " in again

    listed = gens_fs_bytes("ls", dst).stdout.decode()
    assert "2 generations\n" in listed and "1.2 MB/1 B/1 B" in listed
    assert any(long_model in line for line in listed.splitlines())  # no line broken
    assert "1 generation\n" in gens_fs_bytes("ls", dst, "--stage", "draft").stdout.decode()
    assert " 1.2 MB " in gens_fs_bytes("stats", dst).stdout.decode()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # click adds its guess: "No such option: --bogus (Possible options: --verbose)"
        (["ls", "--xyzzy"], "No such option: --xyzzy (see gens-fs ls --help)"),
        (["ls"], "Missing argument 'ROOT'. (see gens-fs ls --help)"),
        (["sync", "a", "b", "-j", "0"], "Invalid value for '--jobs' / '-j': Input should be"),
        (["nope"], "No such command 'nope'. (see gens-fs --help)"),
    ],
)
def test_a_command_line_mistake_is_one_line(args: list[str], expected: str) -> None:
    assert expected in one_error_line(gens_fs_bytes(*args))


def test_an_error_is_one_line_even_when_it_quotes_a_newline(tmp_path: Path) -> None:
    line = one_error_line(gens_fs_bytes("ls", str(tmp_path / "a\nb\x1b[31mc")))
    assert "a\\nb\\x1b[31mc" in line


def test_printable_plural_and_human_size() -> None:
    assert printable("a\x1b[1m\tb\r\nc\x9b\x7f") == "a\\x1b[1m\\tb\\r\\nc\\x9b\\x7f"
    assert printable("a\x1b[1m\tb\r\nc\rd\n", multiline=True) == "a\\x1b[1m\tb\r\nc\\rd\n"
    assert printable("é ü — 漢字") == "é ü — 漢字"
    assert [plural(n, "file") for n in (0, 1, 2, 1234)] == [
        "0 files", "1 file", "2 files", "1,234 files",
    ]  # fmt: skip
    assert plural(1, "more character") == "1 more character"
    sizes = [0, 999, 1000, 1_234_567, 999_949, 999_950, 5 * 10**12, 10**18]
    assert [human_size(s) for s in sizes] == [
        "0 B", "999 B", "1.0 kB", "1.2 MB", "999.9 kB", "1.0 MB", "5.0 TB", "1000.0 PB",
    ]  # fmt: skip
