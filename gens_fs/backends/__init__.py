"""gens_fs's storage backends: one async-first contract, declared capabilities.

:func:`open_backend` turns a root into a :class:`Backend` (local disk, memory, S3, Azure
Blob, or any other fsspec filesystem through the generic path; S3, GCS and Azure Blob
through obstore with ``engine="obstore"``); :class:`SyncBackend` is its
blocking view for synchronous code, and :func:`run` the one way onto the event loop. Every
backend that costs requests is behind the one retry layer (:class:`RetryPolicy`,
:func:`is_transient`: :mod:`gens_fs.backends.retry`), and, when given one, a
:class:`RateLimit` (:mod:`gens_fs.backends.limits`). Nothing outside this package imports a
storage library or asks which backend it holds.
"""

from gens_fs.backends.base import (
    STREAM_CHUNK,
    Backend,
    Capabilities,
    Children,
    FileInfo,
    HashResult,
    Ignored,
    Leftovers,
    ListingHash,
    ReadResult,
    Removed,
    Scan,
    Stat,
)
from gens_fs.backends.limits import RateLimit, parse_bandwidth
from gens_fs.backends.loop import SyncBackend, run
from gens_fs.backends.open import ENGINES, Engine, open_backend
from gens_fs.backends.retry import RetryPolicy, is_access_denied, is_throttle, is_transient

__all__ = [
    "ENGINES",
    "STREAM_CHUNK",
    "Backend",
    "Capabilities",
    "Children",
    "Engine",
    "FileInfo",
    "HashResult",
    "Ignored",
    "Leftovers",
    "ListingHash",
    "RateLimit",
    "ReadResult",
    "Removed",
    "RetryPolicy",
    "Scan",
    "Stat",
    "SyncBackend",
    "is_access_denied",
    "is_throttle",
    "is_transient",
    "open_backend",
    "parse_bandwidth",
    "run",
]
