"""The one retry layer: which errors a retry may cure, how often and how long to try.

Every request gens_fs sends to a storage that costs requests (S3 and Azure Blob through
fsspec; S3, GCS and Azure through obstore; any other fsspec filesystem) is retried here and
nowhere else: :class:`~gens_fs.backends.retried.RetriedBackend` applies :func:`retrying` to
each primitive at the backend boundary, and the storage clients are set to one attempt each
(botocore ``total_max_attempts: 1``, s3fs ``retries = 1``, the Azure SDK ``retry_total=0``
per request, obstore ``max_retries: 0``), so attempts never multiply. Local disk and memory
are not retried.

The bound, per request (so per file for a read, a write, a create, a copy; a file a sync
copies is one request at each side): ``attempts`` tries (default 5), waiting
``base_delay * 2**n`` seconds after the ``n + 1``-th failure (default 0.2 s, 0.4 s, 0.8 s,
1.6 s), at most ``max_delay`` (5 s), each wait jittered down to between half of it and all
of it: at most :attr:`RetryPolicy.max_wait_s` of waiting (3.0 s by default), plus the
attempts themselves (each bounded by the client's timeouts). What the clients still do,
because nothing turns it off: aiohttp (under s3fs and the Azure SDK) sends an idempotent
request again once when the connection closes before any answer (so up to
``2 * attempts`` requests then); the Azure SDK reads a download's body again when it was
cut short (up to 3 times, 1 s apart); s3fs pauses 0.1 s after some failed attempts.

Only transient errors are retried (:func:`is_transient`, the one classification): a
connection refused, reset or cut mid-body, a timeout, HTTP 408, 429, 500, 502, 503, 504
and the codes that mean "try again" (``SlowDown``...). A missing file, a denied request, a
bad request, an existing file fail at once (:func:`is_access_denied` tells a denial).

Throttling (:func:`is_throttle`: ``503 SlowDown``, ``429``...) slows the whole backend,
not only the request it answered: :class:`AdaptiveRate` paces every later request of that
backend, at a rate cut on each throttling answer and grown back while none comes.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gens_fs.errors import AccessDenied, GensError, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

# HTTP statuses a retry may cure (the list botocore's "standard" mode and the Azure SDK
# retry, plus 408 and 429, which say "try again" by definition).
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Service error codes that mean "try again", whatever the status they came with (S3 sends
# RequestTimeout as a 400).
TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
     "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
     "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException",
     "PriorRequestNotComplete", "InternalError", "ServiceUnavailable", "ServerBusy",
     "OperationTimedOut"}
)  # fmt: skip
# HTTP statuses and service codes that mean "you send too fast" (throttling), answered by
# slowing every request of the backend (AdaptiveRate), not only by retrying this one.
THROTTLE_STATUS = frozenset({429, 503})
THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
     "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
     "BandwidthLimitExceeded", "ServerBusy", "ServiceUnavailable", "TooManyRequests"}
)  # fmt: skip
# What a throttling answer says in an error that carries only text (obstore's).
_THROTTLE_TEXT = ("SlowDown", "status code: 503", "status code: 429", "Too Many Requests")
# Errors that mean "these credentials may not do that": by status, service code, and class
# name (the storage clients' own, matched by name so that none has to be imported).
DENIED_STATUS = 403
DENIED_CODES = frozenset(
    {"AccessDenied", "AllAccessDisabled", "AuthorizationFailure",
     "AuthorizationPermissionMismatch", "InsufficientAccountPermissions"}
)  # fmt: skip
DENIED_NAMES = frozenset({"PermissionDeniedError", "ClientAuthenticationError"})
# Connection-level failures, by class name (or a base class's): the clients' own (aiohttp,
# botocore, the Azure SDK, http.client), matched by name so that none has to be imported.
TRANSIENT_NAMES = frozenset(
    {"ClientPayloadError", "ServerDisconnectedError", "ClientConnectionError",
     "ClientOSError", "ServerTimeoutError", "EndpointConnectionError",
     "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
     "ResponseStreamingError", "IncompleteReadError", "IncompleteRead",
     "ResponseParserError", "ServiceRequestError", "ServiceResponseError"}
)  # fmt: skip
# Errors that say what is wrong with the request or the file: a retry gets the same answer.
PERMANENT_TYPES = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    NotImplementedError,
)
# errnos s3fs gives client (4xx) errors, and local ones no wait cures.
PERMANENT_ERRNOS = frozenset(
    {errno.EINVAL, errno.EPERM, errno.EACCES, errno.ENOENT, errno.EEXIST, errno.EISDIR,
     errno.ENOTDIR, errno.EMSGSIZE, errno.ENOTEMPTY, errno.ENOSPC, errno.EROFS,
     errno.ENAMETOOLONG, errno.ENOSYS}
)  # fmt: skip
# How far down an exception's ``__cause__`` chain the classification looks (s3fs wraps a
# botocore error, which carries the status, in an OSError).
_CHAIN_DEPTH = 4


@dataclass(frozen=True)
class RetryPolicy:
    """How a transient failure is retried: ``attempts`` tries in all (the first included),
    waiting about ``base_delay * 2**n`` seconds after the ``n``-th failure (``n`` from 0),
    at most ``max_delay``, each wait jittered between half of it and all of it.

    ``RetryPolicy(attempts=1)`` never retries. The default waits at most 3.0 s in all
    (:attr:`max_wait_s`): enough to ride out a dropped connection or a burst of
    ``503 SlowDown``, short enough that a failing file is reported in seconds.
    """

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, not {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")

    def wait_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure (1 for the first), before jitter."""
        return float(min(self.max_delay, self.base_delay * 2 ** (failures - 1)))

    @property
    def max_wait_s(self) -> float:
        """The most a request waits between its attempts, all retries together."""
        return sum(self.wait_s(n) for n in range(1, self.attempts))

    def jittered(self, failures: int) -> float:
        """The wait after the ``failures``-th failure: jittered so that requests failed
        together (a burst of 503s) do not come back together."""
        return self.wait_s(failures) * random.uniform(0.5, 1.0)


DEFAULT_POLICY = RetryPolicy()


def is_transient(exc: BaseException) -> bool:
    """True for an error a retry may cure (see the module docstring), on every backend.

    The error and its causes are looked at in turn, until one tells: a service error
    code, an HTTP status, a connection-level failure, or an error that names what is
    wrong with the request (a missing file, a denied request: permanent). An ``OSError``
    that tells nothing more is taken as transient (a network filesystem's EIO)."""
    if isinstance(exc, GensError):
        return False
    for link in _chain(exc):
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
    return isinstance(exc, OSError)


def is_throttle(exc: BaseException) -> bool:
    """True for an answer that says "slow down" (``503 SlowDown``, ``429``, a throttling
    code): transient, and a reason to send less (see :class:`AdaptiveRate`)."""
    for link in _chain(exc):
        if _error_code(link) in THROTTLE_CODES or _status(link) in THROTTLE_STATUS:
            return True
        if isinstance(link, ConnectionError) and any(t in str(link) for t in _THROTTLE_TEXT):
            return True
    return False


def is_access_denied(exc: BaseException) -> bool:
    """True for a refusal of these credentials (HTTP 403, ``AccessDenied``, a
    ``PermissionError``, EACCES/EPERM, the clients' own permission errors): permanent,
    and true of every request of its kind, so a caller stops rather than goes on."""
    for link in _chain(exc):
        names = {cls.__name__ for cls in type(link).__mro__}
        if _error_code(link) in DENIED_CODES or _status(link) == DENIED_STATUS:
            return True
        if isinstance(link, PermissionError) or names & DENIED_NAMES:
            return True
        if isinstance(link, OSError) and link.errno in (errno.EACCES, errno.EPERM):
            return True
    return False


def denial(exc: BaseException, operation: str, url: str) -> AccessDenied | None:
    """``exc`` as the ``AccessDenied`` of ``operation`` on ``url``, when it is one
    (:func:`is_access_denied`; one raised already stays as it is); else ``None``."""
    if isinstance(exc, AccessDenied):
        return exc
    if not is_access_denied(exc):
        return None
    lines = str(exc).strip().splitlines()
    said = lines[0].split(": <?xml", 1)[0] if lines else type(exc).__name__  # no body dump
    return AccessDenied(operation, url, said)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    link: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if link is None:
            return
        yield link
        link = link.__cause__


def _verdict(exc: BaseException) -> bool | None:
    """What this one exception says: transient, permanent, or nothing (``None``)."""
    if _error_code(exc) in TRANSIENT_CODES:
        return True
    status = _status(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    if {cls.__name__ for cls in type(exc).__mro__} & TRANSIENT_NAMES:
        return True
    if isinstance(exc, PERMANENT_TYPES):
        return False
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno not in PERMANENT_ERRNOS
    return None


def _error_code(exc: BaseException) -> str | None:
    """The service's error code: botocore's ``response["Error"]["Code"]``, the Azure
    SDK's ``error_code``."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code is not None else None
    code = getattr(exc, "error_code", None)
    return str(code) if code is not None else None


def _status(exc: BaseException) -> int | None:
    """The HTTP status an error came with: botocore's, the Azure SDK's, aiohttp's."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    else:
        status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


class AdaptiveRate:
    """How fast one backend sends once the service said "slow down": the retry layer's
    answer to throttling (:func:`is_throttle`), for every request of the backend.

    Off until a throttling answer comes. Then every request waits its turn, at half the
    rate requests were sent in the second before (:data:`BETA`); a later throttling
    answer to a request sent after that cut halves the rate again (answers to requests
    sent before it are the same burst), not below :data:`MIN_RATE` a second. Each
    :data:`RECOVERY_S` seconds without one double it, and once it is back at the rate of
    the first cut, the pacing stops. The wait for a turn is not a retry: it adds to
    :attr:`RetryPolicy.max_wait_s`.
    """

    BETA: float = 0.5
    MIN_RATE: float = 1.0
    RECOVERY_S: float = 1.0
    WINDOW_S: float = 1.0

    def __init__(self) -> None:
        self._sent: collections.deque[float] = collections.deque()
        self._rate: float | None = None  # requests a second at the last cut; None: off
        self._cut_at = 0.0
        self._ceiling = 0.0
        self._next = 0.0  # the earliest time the next request may go out

    def rate(self, now: float | None = None) -> float | None:
        """The requests a second allowed now, or ``None`` when not pacing."""
        if self._rate is None:
            return None
        now = time.monotonic() if now is None else now
        grown = self._rate * 2 ** ((now - self._cut_at) / self.RECOVERY_S)
        if grown >= self._ceiling:
            self._rate = None
            return None
        return grown

    def reserve(self, count: int = 1) -> tuple[float, float]:
        """Note ``count`` requests about to go out: ``(their send time, seconds to wait
        before sending them)``."""
        now = time.monotonic()
        window_start = now - self.WINDOW_S
        while self._sent and self._sent[0] < window_start:
            self._sent.popleft()
        rate = self.rate(now)
        if rate is None:
            self._sent.extend([now] * count)
            return now, 0.0
        slot = max(now, self._next)
        self._next = slot + count / rate
        self._sent.extend([slot] * count)
        return slot, slot - now

    async def turn(self, count: int = 1) -> float:
        """Wait for the turn of ``count`` requests; their send time."""
        sent, wait = self.reserve(count)
        if wait > 0:
            await asyncio.sleep(wait)
        return sent

    def observe(self, exc: BaseException, sent: float) -> None:
        """A request sent at ``sent`` failed with ``exc``: a throttling answer cuts the
        rate (see the class docstring)."""
        if not is_throttle(exc) or (self._rate is not None and sent < self._cut_at):
            return
        now = time.monotonic()
        current = self.rate(now)
        if current is None:
            current = max(self.MIN_RATE, len(self._sent) / self.WINDOW_S)
            self._ceiling = current
            log.info("throttled: pacing at %.1f requests a second", current * self.BETA)
        self._rate = max(self.MIN_RATE, current * self.BETA)
        self._cut_at = now
        self._next = max(self._next, now)


async def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str = "request",
    within_s: float | None = None,
    pacer: AdaptiveRate | None = None,
) -> T:
    """``await attempt()``, again after a transient failure, as ``policy`` says; the last
    failure (or a permanent one) is raised. With ``pacer``, each attempt waits its turn
    there first, and tells it of a throttling answer.

    ``within_s``: the retries end that many seconds after the first attempt began (the
    first attempt is bounded by its caller): none starts unless its wait ends before then,
    and one still running then is cancelled, and the failure before it raised.
    """
    if pacer is not None:
        attempt = _paced(pacer, attempt)
    loop = asyncio.get_running_loop()
    deadline = None if within_s is None else loop.time() + within_s
    failures = 0
    last: Exception | None = None
    while True:
        try:
            if last is None or deadline is None:
                return await attempt()
            return await _by(deadline, attempt, last)
        except Exception as exc:
            failures += 1
            if failures >= policy.attempts or not is_transient(exc):
                raise
            wait = policy.jittered(failures)
            if deadline is not None and loop.time() + wait >= deadline:
                raise
            log.info("%s failed (attempt %d), retrying: %s", what, failures, _describe(exc))
            last = exc
        await asyncio.sleep(wait)


def _paced(pacer: AdaptiveRate, attempt: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    async def paced() -> T:
        sent = await pacer.turn()
        try:
            return await attempt()
        except Exception as exc:
            pacer.observe(exc, sent)
            raise

    return paced


async def _by(deadline: float, attempt: Callable[[], Awaitable[T]], last: Exception) -> T:
    """``attempt()``'s result if it comes before ``deadline``; else it is cancelled and
    ``last`` (the failure that led to it) raised."""
    task = asyncio.ensure_future(attempt())
    try:
        remaining = deadline - asyncio.get_running_loop().time()
        done, _ = await asyncio.wait({task}, timeout=max(0.0, remaining))
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # unwound, its error (if any) dropped
    if not done:
        raise last
    return task.result()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def policy_from_options(options: Mapping[str, Any]) -> RetryPolicy | None:
    """The policy an S3 root's ``storage_options`` ask for, in botocore's words, or
    ``None`` when they say nothing: ``config_kwargs.retries.total_max_attempts`` (attempts,
    the first included) or ``config_kwargs.retries.max_attempts`` (retries after the first,
    as botocore counts them). Applied by gens_fs's layer, never by the client; ``mode`` is
    botocore's own and has no effect here."""
    retries = (options.get("config_kwargs") or {}).get("retries") or {}
    if not isinstance(retries, Mapping):
        raise StorageError(f"storage option config_kwargs.retries must be a mapping: {retries!r}")
    for key, extra in (("total_max_attempts", 0), ("max_attempts", 1)):
        value = retries.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value + extra < 1:
            raise StorageError(
                f"storage option config_kwargs.retries.{key} must be a whole number of "
                f"attempts (at least {1 - extra}), not {value!r}"
            )
        return RetryPolicy(attempts=value + extra)
    return None
