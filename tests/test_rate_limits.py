"""Rate limits (``sync --tpslimit``, ``--bwlimit``) and the adaptive answer to
``503 SlowDown``, measured where they matter: the request rate the S3 server sees
(``S3Middleware`` records when each request arrived). Every bound checked is an upper
bound on what arrives in a window of time, which a slow or loaded machine can only
lower."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import fsspec
import pytest
from conftest import cli_options

from gens_fs import DataRoot, GensStore, RateLimit, RetryPolicy, new_gen_id
from gens_fs.backends import parse_bandwidth
from gens_fs.backends.limits import TokenBucket
from gens_fs.backends.retry import AdaptiveRate
from gens_fs.errors import StorageError
from gens_fs.testing.invariants import snapshot
from gens_fs.testing.s3 import MotoServer, new_bucket, s3_storage_options
from gens_fs.testing.s3_middleware import RequestRecord, S3Middleware
from gens_fs.testing.s3_requests import FaultPlan, failing_once_at
from tests.process import gens_fs

META = {"task_id": "t", "template_id": "x", "model_id": "m"}
ENGINES = ["fsspec", "obstore"]
# A request's arrival is stamped when a server thread gets to it: on a loaded machine that
# can be late, bunching it with the next ones. The bounds allow this much.
LATE_S = 0.25


def most_in_window(times: Sequence[float], window_s: float) -> int:
    """The most of ``times`` that fall in any ``[t, t + window_s)``."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def most_bytes_in_window(records: Sequence[RequestRecord], window_s: float) -> int:
    """The most request-body bytes arriving in any ``[t, t + window_s)``."""
    ordered = sorted(records, key=lambda r: r.arrived)
    most, start, total = 0, 0, 0
    for record in ordered:
        total += record.bytes_in
        while ordered[start].arrived <= record.arrived - window_s:
            total -= ordered[start].bytes_in
            start += 1
        most = max(most, total)
    return most


def side_options(flag: str, endpoint: S3Middleware) -> list[str]:
    """``cli_options`` for one side of a sync: ``--src-option KEY=VALUE`` ..."""
    pairs = cli_options(s3_storage_options(endpoint.endpoint_url))[1::2]
    return [f"{flag}={pair}" for pair in pairs]


def local_store(root: Path, drafts: int, raw: str = "raw") -> None:
    store = GensStore(root / "gens")
    for i in range(drafts):
        store.write("draft", f"d{i:02}", metadata=META, raw=raw, parsed="parsed")


# -- the pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10M", 10 * 2**20), ("512K", 512 * 2**10), ("1.5G", 3 * 2**29), ("100B", 100),
     ("64", 64 * 2**10), ("2MiB", 2 * 2**20), ("8k", 8 * 2**10)],
)  # fmt: skip
def test_bandwidth_as_rclone_reads_it(text: str, rate: int) -> None:
    assert parse_bandwidth(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "10X", "-1M", "0", "0.1B"])
def test_bandwidth_that_is_not_a_rate(text: str) -> None:
    with pytest.raises(StorageError):
        parse_bandwidth(text)


def test_a_limit_needs_positive_rates() -> None:
    with pytest.raises(StorageError):
        RateLimit(tps=0)
    with pytest.raises(StorageError):
        RateLimit(bandwidth=0)
    assert RateLimit(tps=2.5, bandwidth="1M").bandwidth == 2**20


def test_the_token_bucket_spaces_takers_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    now = time.monotonic() + 100  # the bucket is full by then
    # five takers at one instant: the first at once, then one every 0.1 s
    assert [bucket.reserve(1, now=now) for _ in range(5)] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3, 0.4]
    )
    # 1.4 s later the debt (0.4 s) is paid and one token has been saved: at once
    assert bucket.reserve(1, now=now + 1.4) == pytest.approx(0.0)
    assert bucket.reserve(1, now=now + 1.4) == pytest.approx(0.1)


def test_the_adaptive_rate_halves_once_per_burst_of_throttling() -> None:
    slow_down = ConnectionError("Server returned non-2xx status code: 503: SlowDown")
    pacer = AdaptiveRate()
    sent = [pacer.reserve()[0] for _ in range(40)]  # 40 requests within the last second
    assert pacer.rate() is None
    pacer.observe(OSError("a 500"), sent[0])  # not throttling: nothing changes
    assert pacer.rate() is None
    pacer.observe(slow_down, sent[0])
    first = pacer.rate()
    assert first is not None and 20 <= first <= 21  # half of 40 a second, grown a moment
    pacer.observe(slow_down, sent[-1])  # the same burst, answered later: no second cut
    assert pacer.rate() == pytest.approx(first, rel=0.05)
    later, _ = pacer.reserve()
    pacer.observe(slow_down, later)  # sent after the cut: halves again
    assert pacer.rate() == pytest.approx(first / 2, rel=0.1)


# -- through the server ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_tpslimit_bounds_the_request_rate_the_server_sees(
    engine: str, tmp_path: Path, moto_server: MotoServer, s3_middleware: S3Middleware
) -> None:
    tps = 20
    src = tmp_path / "data"
    local_store(src, drafts=12)
    dst = f"s3://{new_bucket(moto_server.endpoint_url)}/data"
    options = cli_options(s3_storage_options(s3_middleware.endpoint_url))
    done = gens_fs(
        "sync", str(src), dst, *options, "--engine", engine, "--tpslimit", str(tps), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert s3_middleware.wait_idle()
    arrivals = [r.arrived for r in s3_middleware.log]
    assert s3_middleware.counts().get("PUT", 0) == 36  # every file, each once
    # at most tps a second, one ahead (unlimited, all 41 arrive within half a second)
    for window_s in (0.5, 1.0):
        assert most_in_window(arrivals, window_s) <= tps * (window_s + LATE_S) + 1, window_s
    assert snapshot(dst, s3_storage_options(moto_server.endpoint_url)) == snapshot(str(src))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sharded_listing_charges_each_request_as_it_is_sent_retries_too(
    engine: str, moto_server: MotoServer, s3_middleware: S3Middleware
) -> None:
    tps = 2
    stage = f"{new_bucket(moto_server.endpoint_url)}/data/gens/essay"
    files = {f"{stage}/{new_gen_id('essay', f't{i}')}/metadata.json": b"{}" for i in range(2_500)}
    fsspec.filesystem("s3", **s3_storage_options(moto_server.endpoint_url)).pipe(files)
    # The third listing request fails once (503): its retry is a request like the others.
    s3_middleware.faults = failing_once_at(2, op="LIST")
    options = s3_storage_options(s3_middleware.endpoint_url)
    root = DataRoot(
        f"s3://{stage.partition('/')[0]}/data",
        storage_options=options,
        engine=engine,
        limit=RateLimit(tps=tps),
    )

    listed = root.backend.scan([stage]).files

    assert sorted(listed) == sorted(files)
    assert s3_middleware.wait_idle()
    arrivals = [r.arrived for r in s3_middleware.log if r.kind == "LIST"]
    assert len(arrivals) >= 4  # a first page, shards sent side by side, and a retry
    # at most tps a second, one ahead: the shards are not sent in a burst
    for window_s in (0.5, 1.0):
        assert most_in_window(arrivals, window_s) <= tps * (window_s + LATE_S) + 1, window_s


def test_one_limit_for_both_sides_of_a_sync(
    tmp_path: Path, moto_server: MotoServer, s3_middleware: S3Middleware
) -> None:
    """S3 to S3 through two endpoints (so the bytes pass through the process: a GET at
    one, a PUT at the other): the two servers together see at most ``tps``."""
    tps = 20
    plain = s3_storage_options(moto_server.endpoint_url)
    src = f"s3://{new_bucket(moto_server.endpoint_url)}/data"
    local_store(tmp_path / "data", drafts=8)
    assert gens_fs("sync", str(tmp_path / "data"), src, *cli_options(plain)).returncode == 0
    dst = f"s3://{new_bucket(moto_server.endpoint_url)}/data"
    with S3Middleware() as other:
        src_flags = side_options("--src-option", s3_middleware)
        dst_flags = side_options("--dst-option", other)
        done = gens_fs("sync", src, dst, "--tpslimit", str(tps), *src_flags, *dst_flags)
        assert done.returncode == 0, done.stderr
        assert s3_middleware.wait_idle() and other.wait_idle()
        records = [*s3_middleware.log, *other.log]
    assert {r.kind for r in records} >= {"GET", "PUT"}
    arrivals = [r.arrived for r in records]
    for window_s in (0.5, 1.0):
        assert most_in_window(arrivals, window_s) <= tps * (window_s + LATE_S) + 1, window_s
    assert snapshot(dst, plain) == snapshot(src, plain)


def test_bwlimit_bounds_the_bytes_the_server_receives(
    tmp_path: Path, moto_server: MotoServer, s3_middleware: S3Middleware
) -> None:
    rate = 128 * 2**10
    src = tmp_path / "data"
    local_store(src, drafts=12, raw="x" * 20_000)  # 12 x 20 kB of raw.txt, and small files
    dst = f"s3://{new_bucket(moto_server.endpoint_url)}/data"
    options = cli_options(s3_storage_options(s3_middleware.endpoint_url))
    done = gens_fs("sync", str(src), dst, *options, "--bwlimit", "128K")
    assert done.returncode == 0, done.stderr
    assert s3_middleware.wait_idle()
    records = s3_middleware.log
    assert sum(r.bytes_in for r in records) >= 12 * 20_000
    # a tenth of a second's worth at once, then the rate (unlimited: all 240 kB within
    # a fifth of a second); one file more, sent as its turn came
    for window_s in (0.5, 1.0):
        bound = rate * (window_s + 0.1 + LATE_S) + 20_100
        assert most_bytes_in_window(records, window_s) <= bound, window_s


@pytest.mark.parametrize("engine", ENGINES)
def test_slow_down_slows_every_later_request(
    engine: str, moto_server: MotoServer, bucket: str, s3_middleware: S3Middleware
) -> None:
    """Every file's first GET answered ``503 SlowDown``: the retries do not come back as
    one burst; they are paced at half the rate the first attempts went out, and all 60
    files load."""
    plain = GensStore(
        f"s3://{bucket}/gens", storage_options=s3_storage_options(moto_server.endpoint_url)
    )
    ids = [f"d{i:02}" for i in range(15)]
    for gen_id in ids:
        plain.write("draft", gen_id, metadata=META, raw="r", parsed="p", prompt="q")
    store = GensStore(
        f"s3://{bucket}/gens",
        storage_options=s3_storage_options(s3_middleware.endpoint_url),
        engine=engine,
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05),
    )
    s3_middleware.faults = FaultPlan(rate=1.0, kinds=("503",), only_ops=("GET",), per_path=1)
    loaded = store.load_many("draft", ids)
    assert [g.raw_text for g in loaded.values()] == ["r"] * 15
    assert s3_middleware.wait_idle()
    gets = [r for r in s3_middleware.log if r.kind == "GET"]
    retried = sorted(r.arrived for r in gets if r.fault is None)
    assert len(retried) == 60
    # Unpaced, the 60 retries would all arrive within the 0.01-0.05 s of their backoff.
    in_half_second = sum(1 for t in retried if t < retried[0] + 0.5)
    assert in_half_second <= 30, in_half_second
