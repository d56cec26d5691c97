"""Shared test and benchmark infrastructure for gens_fs.

* :mod:`gens_fs.testing.s3` — a moto S3 server on loopback, a counting / slowing /
  fault-injecting reverse proxy in front of any S3 endpoint, and s3fs options that keep every
  request on loopback.
* :mod:`gens_fs.testing.synthetic` — a fast, seeded generator of realistic gens stores.
* :mod:`gens_fs.testing.azure` — Azurite (the Azure Storage emulator, installed from npm on
  first use) on loopback, and its account's connection string.

Importing this package never imports moto, boto3 or botocore: they are imported inside the
functions that need them, so code that only generates synthetic stores runs without them.
"""

from __future__ import annotations

from gens_fs.testing.s3 import (
    FAULT_KINDS,
    OP_KINDS,
    FaultPlan,
    MotoServer,
    RequestRecord,
    S3Proxy,
    classify_request,
    create_bucket,
    s3_storage_options,
)
from gens_fs.testing.synthetic import SyntheticStore, make_store, mutate

__all__ = [
    "FAULT_KINDS",
    "OP_KINDS",
    "FaultPlan",
    "MotoServer",
    "RequestRecord",
    "S3Proxy",
    "SyntheticStore",
    "classify_request",
    "create_bucket",
    "make_store",
    "mutate",
    "s3_storage_options",
]
