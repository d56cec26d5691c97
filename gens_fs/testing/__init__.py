"""Shared test and benchmark infrastructure for gens_fs.

* :mod:`gens_fs.testing.s3` — moto's S3 served on loopback (:class:`MotoServer`), a bucket
  per test (:func:`new_bucket`), and s3fs/boto3 options that keep every request on loopback.
* :mod:`gens_fs.testing.s3_middleware` — :class:`S3Middleware`, WSGI middleware around
  moto's app on its own endpoint: counts requests by kind, adds latency, injects faults
  from a seeded :class:`FaultPlan`, and holds requests so a test can stop a client mid-run.
* :mod:`gens_fs.testing.s3_requests` — the pure parts: :func:`classify_request` and
  :class:`FaultPlan`.
* :mod:`gens_fs.testing.s3_iam` — ``IamMotoServer``: moto enforcing IAM, in a child
  process (the setting is process-global), with buckets and users made for a test; import
  it from its module (it runs as ``python -m gens_fs.testing.s3_iam`` in the child, which
  the package must not have imported already).
* :mod:`gens_fs.testing.synthetic` — a fast, seeded generator of realistic gens stores.
* :mod:`gens_fs.testing.azure` — Azurite (the Azure Storage emulator, installed from npm on
  first use) on loopback, and its account's connection string.

Importing this package never imports moto, boto3, botocore or werkzeug: they are imported
inside the functions that need them, so code that only generates synthetic stores runs
without them.
"""

from __future__ import annotations

from gens_fs.testing.s3 import MotoServer, create_bucket, new_bucket, s3_storage_options
from gens_fs.testing.s3_middleware import Hold, RequestRecord, S3Middleware
from gens_fs.testing.s3_requests import (
    FAULT_KINDS,
    OP_KINDS,
    PERMANENT_FAULT_KINDS,
    FaultPlan,
    classify_request,
)
from gens_fs.testing.synthetic import SyntheticStore, make_store, mutate

__all__ = [
    "FAULT_KINDS",
    "OP_KINDS",
    "PERMANENT_FAULT_KINDS",
    "FaultPlan",
    "Hold",
    "MotoServer",
    "RequestRecord",
    "S3Middleware",
    "SyntheticStore",
    "classify_request",
    "create_bucket",
    "make_store",
    "mutate",
    "new_bucket",
    "s3_storage_options",
]
