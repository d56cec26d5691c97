"""What an S3 request is, and which requests a fault plan breaks: pure, no I/O.

* :func:`classify_request` names the S3 operation of a path-style request (one of
  :data:`OP_KINDS`), which is what request budgets are counted in.
* :class:`FaultPlan` decides, from a seed and a request's index alone, which requests get
  which fault (:data:`FAULT_KINDS`), so a faulty run can be replayed.

:class:`gens_fs.testing.s3_middleware.S3Middleware` applies both to live requests.
"""

from __future__ import annotations

import fnmatch
import random
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# Operation kinds, as counted by S3Middleware.
OP_KINDS: Final = (
    "LIST",
    "GET",
    "HEAD",
    "HEAD_BUCKET",
    "PUT",
    "COPY",
    "DELETE",
    "DELETE_MULTI",
    "MULTIPART",
    "CREATE_BUCKET",
    "OTHER",
)
FAULT_KINDS: Final = ("500", "503", "cut", "delay")
# Answers a retry cannot change, injected only when asked for by name (``kinds``): they
# are what a client must not retry.
PERMANENT_FAULT_KINDS: Final = ("403", "404")

# Query parameters that only shape a bucket listing (anything else on a bucket GET is a
# sub-resource such as ?location or ?versioning, i.e. OTHER).
_LIST_PARAMS: Final = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "marker",
        "encoding-type",
        "fetch-owner",
        "versions",
        "key-marker",
        "version-id-marker",
        "x-id",
    }
)
# Query parameters that do not change what an object GET/HEAD/PUT/DELETE is.
_OBJECT_PARAMS: Final = frozenset(
    {
        "versionId",
        "partNumber",
        "x-id",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
    }
)


def classify_request(method: str, path: str, query: str, headers: Mapping[str, str]) -> str:
    """Name the S3 operation of a path-style request: one of :data:`OP_KINDS`.

    Pure and total: anything not recognised is ``OTHER``. Path-style addressing only
    (``/<bucket>/<key>``), which is what botocore uses for an IP-address endpoint. Header
    names are matched case-insensitively.
    """
    method = method.upper()
    bucket, _, key = path.lstrip("/").partition("/")
    params = {name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
    if not bucket:
        return "OTHER"  # ListBuckets and the like
    if "uploads" in params or "uploadId" in params:
        return "MULTIPART"
    if not key:
        return _classify_bucket(method, params)
    return _classify_object(method, params, headers)


def _classify_bucket(method: str, params: set[str]) -> str:
    if method == "GET" and params <= _LIST_PARAMS:
        return "LIST"
    if method == "HEAD" and not params:
        return "HEAD_BUCKET"
    if method == "PUT" and not params:
        return "CREATE_BUCKET"
    if method == "POST" and "delete" in params:
        return "DELETE_MULTI"
    return "OTHER"


def _classify_object(method: str, params: set[str], headers: Mapping[str, str]) -> str:
    if not params <= _OBJECT_PARAMS:
        return "OTHER"  # ?tagging, ?acl, ?retention, ...
    if method == "PUT":
        copy = any(name.lower() == "x-amz-copy-source" and v for name, v in headers.items())
        return "COPY" if copy else "PUT"
    simple = {"GET": "GET", "HEAD": "HEAD", "DELETE": "DELETE"}
    return simple.get(method, "OTHER")


@dataclass(frozen=True)
class FaultPlan:
    """Which requests break, as a pure function of a seed and a request index.

    The n-th request that the plan applies to (counted from when the plan was installed on
    the middleware, among requests whose kind is in ``only_ops``, or all if ``None``) gets
    the fault :meth:`choose` returns for ``n`` — so the same seed breaks the same requests
    of a sequential request sequence, run after run, whatever the timing.

    Kinds: ``"500"`` (S3 ``InternalError``) and ``"503"`` (S3 ``SlowDown``) are answered
    without reaching the S3 service; ``"cut"`` is served, then sends the response headers
    and half the body (nothing at all when there is no body) and closes the connection;
    ``"delay"`` waits ``delay_s`` more before it is served normally. ``"403"``
    (``AccessDenied``) and ``"404"`` (``NoSuchKey``), from :data:`PERMANENT_FAULT_KINDS`,
    are answered without reaching the service too; they are never in the default kinds.

    ``per_path``: only each request path's first ``per_path`` eligible requests take part
    (a fault that lasts that many attempts of each request, however the requests of
    different paths interleave); ``None``: every eligible request does. ``paths``: only
    requests whose path (``/bucket/key``, as sent) matches one of these ``fnmatch``
    patterns take part (``"*/membership.csv"``); ``None``: any path.
    """

    rate: float = 0.05
    seed: int = 1
    kinds: tuple[str, ...] = FAULT_KINDS
    only_ops: tuple[str, ...] | None = None
    delay_s: float = 0.5
    per_path: int | None = None
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {self.rate}")
        known = (*FAULT_KINDS, *PERMANENT_FAULT_KINDS)
        if not self.kinds or not set(self.kinds) <= set(known):
            raise ValueError(f"kinds must be a non-empty subset of {known}: {self.kinds}")
        if self.only_ops is not None and not set(self.only_ops) <= set(OP_KINDS):
            raise ValueError(f"only_ops must be a subset of {OP_KINDS}: {self.only_ops}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, not {self.delay_s}")
        if self.per_path is not None and self.per_path < 0:
            raise ValueError(f"per_path must be >= 0, not {self.per_path}")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.only_ops is not None:
            object.__setattr__(self, "only_ops", tuple(self.only_ops))
        if self.paths is not None:
            if isinstance(self.paths, str) or not self.paths:
                raise ValueError(f"paths must be a non-empty tuple of patterns: {self.paths!r}")
            object.__setattr__(self, "paths", tuple(self.paths))

    def applies_to(self, kind: str, seen_on_path: int = 0, path: str = "/") -> bool:
        """Whether a request of this operation kind, for ``path``, takes part in the fault
        sequence, the path having had ``seen_on_path`` eligible requests before it."""
        if self.per_path is not None and seen_on_path >= self.per_path:
            return False
        if self.paths is not None and not any(fnmatch.fnmatchcase(path, p) for p in self.paths):
            return False
        return self.only_ops is None or kind in self.only_ops

    def choose(self, index: int) -> str | None:
        """The fault for the ``index``-th eligible request, or ``None``. Deterministic."""
        rng = random.Random(f"gens_fs.faults:{self.seed}:{index}")
        if rng.random() >= self.rate:
            return None
        return rng.choice(self.kinds)

    def faulted(self, count: int) -> list[tuple[int, str]]:
        """``(index, fault)`` for every faulted index below ``count`` — what to expect."""
        return [(i, f) for i in range(count) if (f := self.choose(i)) is not None]


def failing_once_at(index: int, *, op: str, kind: str = "503", within: int = 20) -> FaultPlan:
    """A plan under which the ``index``-th request of kind ``op`` (counted from when it is
    installed) gets ``kind``, and none other of the first ``within``: the first seed that
    gives exactly that."""
    for seed in range(100_000):
        plan = FaultPlan(rate=1 / within, seed=seed, kinds=(kind,), only_ops=(op,))
        if plan.faulted(within) == [(index, kind)]:
            return plan
    raise ValueError(f"no seed fails request {index} alone of {within}")
