"""From a root (a path, any fsspec URL, or a path inside a filesystem already built) to its
backend: the only place that chooses a backend by what the storage is, and by engine.

Two engines serve object stores behind the one contract: ``"fsspec"`` (the default: s3fs,
adlfs, gcsfs and every other fsspec filesystem) and ``"obstore"`` (S3, GCS and Azure Blob
through obstore, an optional extra). The engine is a choice of client for object stores
only: local disk and memory have one backend each, which serves them under either engine
(so one ``engine`` can apply to both sides of a local-to-cloud sync); any other protocol
under ``engine="obstore"`` is refused.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

import fsspec
from fsspec.asyn import get_loop
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from gens_fs.backends.base import Backend
from gens_fs.backends.generic import FsspecBackend
from gens_fs.backends.limits import RateLimit, with_limit
from gens_fs.backends.local import LocalBackend
from gens_fs.backends.memory import MemoryBackend
from gens_fs.backends.retried import with_retries
from gens_fs.backends.retry import DEFAULT_POLICY, RetryPolicy, policy_from_options
from gens_fs.backends.s3 import S3_CLIENT_RETRIES, S3_DEFAULT_OPTIONS, S3FS_ATTEMPTS, S3Backend
from gens_fs.errors import StorageError

# Filesystems that fsspec knows but that cannot hold a store: read-only, or no listing of a
# tree (an HTTP "listing" is links scraped from a page).
UNSUPPORTED_PROTOCOLS = frozenset({"http", "https", "github", "git", "tar", "libarchive", "data"})
# Protocols that need one of gens_fs's extras installed.
EXTRAS = {"az": "azure", "abfs": "azure", "abfss": "azure"}

Engine = Literal["fsspec", "obstore"]
"""Which client serves an object store: ``"fsspec"`` (the default) or ``"obstore"``."""
ENGINES: tuple[str, ...] = get_args(Engine)
# Protocols that have one backend whatever the engine.
_ENGINE_FREE = frozenset({"file", "local", "memory"})


def open_backend(
    root: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    fs: Any = None,
    engine: Engine = "fsspec",
    retry: RetryPolicy | None = None,
    limit: RateLimit | None = None,
) -> Backend:
    """The backend for ``root``: a local path, any fsspec URL (chained ones too), or a path
    inside the filesystem ``fs``. S3 gets :data:`S3_DEFAULT_OPTIONS` under yours.
    ``engine="obstore"``: an ``s3://``, ``gs://`` or ``az://`` root through obstore (see
    the module docstring for the others).

    Every backend but local disk and memory is behind the one retry layer
    (:mod:`gens_fs.backends.retried`) with ``retry``; without it, the attempts an S3 root's
    storage options ask for (``config_kwargs.retries``, see
    :func:`~gens_fs.backends.retry.policy_from_options`), else :data:`DEFAULT_POLICY`.
    ``limit``: a :class:`~gens_fs.backends.limits.RateLimit` its requests are charged to,
    under the retry layer (so each attempt counts), shared with every backend given it."""
    text = os.fspath(root)
    options = dict(storage_options or {})
    backend = _open(text, options, fs, engine)  # checks the options' shapes first
    policy = retry or _policy_in(text, options, fs) or DEFAULT_POLICY
    return with_retries(with_limit(backend, limit), policy)


def _open(text: str, options: dict[str, Any], fs: Any, engine: Engine) -> Backend:
    if engine != "fsspec":
        obstore_backend = _open_obstore(text, options, fs, engine)
        if obstore_backend is not None:
            return obstore_backend
    if fs is None:
        _check_protocols(text)
        if _is_s3(text):
            _check_s3_options(options)
    try:
        if fs is None:
            fs, path = _build(text, options)
        else:
            path = fs._strip_protocol(text)
    except ImportError as exc:
        raise StorageError(f"cannot open {text!r}: {_install_hint(text, exc)}") from None
    except Exception as exc:  # a filesystem that cannot even be built: config or network
        raise StorageError(
            f"cannot open {text!r}: {type(exc).__name__}: {exc}; check the URL and the storage "
            "options"
        ) from None
    _check_loop(fs, text)
    return _backend_for(fs, path.rstrip("/") or path)


def _build(text: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The filesystem for ``text`` and the path in it. S3 (not chained) gets our defaults
    under the options, and its client makes one attempt per request: retries are gens_fs's
    (:mod:`gens_fs.backends.retry`), never the client's too."""
    if _is_s3(text) and "::" not in text:
        options = _merge_defaults(S3_DEFAULT_OPTIONS, options)
        options["config_kwargs"] = {**options["config_kwargs"], "retries": dict(S3_CLIENT_RETRIES)}
    fs, path = fsspec.core.url_to_fs(text, **options)
    if _is_s3(text) and "::" not in text:
        # s3fs's own retries (a class attribute, which no option sets) on this instance
        fs.retries = S3FS_ATTEMPTS
        if fs.session is None and fs._s3 is None:  # no session given, no client yet
            from gens_fs.backends.s3_client import listing_session

            fs.session = listing_session(fs.kwargs)  # what s3fs would build, less parsing
    return fs, str(path)


def _is_s3(url: str) -> bool:
    return fsspec.core.split_protocol(url)[0] in ("s3", "s3a")


def _policy_in(text: str, options: Mapping[str, Any], fs: Any) -> RetryPolicy | None:
    """The retry policy an S3 URL's storage options ask for (either engine), if any."""
    return policy_from_options(options) if fs is None and _is_s3(text) else None


# s3fs options whose values must be strings, at the top level and inside client_kwargs; a
# wrong type would otherwise surface as a TypeError deep inside botocore on first use.
_S3_TEXT_OPTIONS: Final = ("key", "secret", "token", "profile", "endpoint_url")
_S3_CLIENT_TEXT_OPTIONS: Final = ("endpoint_url", "region_name", "aws_access_key_id")
_S3_MAPPING_OPTIONS: Final = ("client_kwargs", "config_kwargs", "s3_additional_kwargs")


def _check_s3_options(options: Mapping[str, Any]) -> None:
    """Refuse storage options of the wrong shape before the client is built from them."""

    def refuse(name: str, value: object, kind: str) -> StorageError:
        return StorageError(f"storage option {name} must be {kind}, not {value!r}")

    for name in _S3_MAPPING_OPTIONS:
        if name in options and not isinstance(options[name], Mapping):
            raise refuse(name, options[name], f"a mapping (-o {name}.KEY=VALUE)")
    client = options.get("client_kwargs") or {}
    found = [(n, options.get(n)) for n in _S3_TEXT_OPTIONS]
    found += [(f"client_kwargs.{n}", client.get(n)) for n in _S3_CLIENT_TEXT_OPTIONS]
    for name, value in found:
        if value is not None and not isinstance(value, str):
            raise refuse(name, value, "a string")
    endpoint = client.get("endpoint_url") or options.get("endpoint_url")
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint):
        raise StorageError(
            f"endpoint URL {endpoint!r} is not an http(s) URL: write it as "
            "http://HOST:PORT or https://HOST"
        )


def _open_obstore(url: str, options: dict[str, Any], fs: Any, engine: str) -> Backend | None:
    """The obstore backend for ``url``; ``None`` for a root that has one backend whatever
    the engine (local disk, memory). ``StorageError`` for anything it cannot serve."""
    if engine not in ENGINES:
        raise StorageError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    protocol = (fsspec.core.split_protocol(url)[0] or "file") if fs is None else None
    if protocol in _ENGINE_FREE:
        return None
    try:
        from gens_fs.backends.obstore import ObstoreBackend, bucket_path
        from gens_fs.backends.obstore_config import OBSTORE_KINDS, store_settings
    except ImportError:
        raise StorageError(
            "the obstore engine needs the obstore extra: pip install 'gens_fs[obstore]'"
        ) from None
    if protocol not in OBSTORE_KINDS or "::" in url:
        what = "a filesystem already built (fs=)" if fs is not None else repr(url)
        raise StorageError(
            f"the obstore engine serves s3://, gs:// and az:// URLs (and local paths and "
            f"memory:// through their own backends), not {what}: use engine='fsspec'"
        )
    return ObstoreBackend(store_settings(protocol, options), bucket_path(url))


def _backend_for(fs: Any, root: str) -> Backend:
    """The backend that knows the most about ``fs``; the generic one for any other."""
    if isinstance(fs, LocalFileSystem):
        return LocalBackend(root)
    if isinstance(fs, MemoryFileSystem):
        return MemoryBackend(fs, root)
    if _is_instance(fs, "s3fs", "S3FileSystem"):
        return S3Backend(fs, root)
    if _is_instance(fs, "adlfs", "AzureBlobFileSystem"):
        from gens_fs.backends.azure import AzureBackend  # needs the azure extra, as adlfs did

        return AzureBackend(fs, root)
    return FsspecBackend(fs, root)


def _is_instance(fs: Any, module: str, name: str) -> bool:
    """``isinstance(fs, module.name)`` without importing ``module``: an instance of it
    exists only once it is imported (so a local-only run never loads s3fs or adlfs)."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(fs, getattr(loaded, name))


def _check_loop(fs: Any, url: str) -> None:
    """An asynchronous filesystem in synchronous mode is bound to one event loop: it must
    be fsspec's, the loop every backend coroutine runs on."""
    if getattr(fs, "async_impl", False) and not fs.asynchronous and fs.loop is not get_loop():
        raise StorageError(
            f"the filesystem for {url!r} runs on an event loop of its own: build it without "
            "loop= (gens_fs runs every request on fsspec's IO loop)"
        )


def _check_protocols(url: str) -> None:
    """Refuse, before building anything, a protocol fsspec does not know or one that
    cannot hold a store (:data:`UNSUPPORTED_PROTOCOLS`); each part of a chained URL."""
    for part in url.split("::"):
        protocol = fsspec.core.split_protocol(part)[0]
        if protocol is None:
            continue
        if protocol not in fsspec.available_protocols():
            raise StorageError(
                f"unknown protocol {protocol!r} in {url!r}: use a local path or a URL such as "
                "s3://bucket/prefix, az://container/prefix, memory://name, or another fsspec "
                "protocol"
            )
        if protocol in UNSUPPORTED_PROTOCOLS:
            raise StorageError(
                f"{protocol}:// cannot hold a gens store (it is read-only or cannot list a "
                f"folder): {url!r}; copy the data somewhere that can (local disk, s3://...)"
            )


def _install_hint(url: str, exc: ImportError) -> str:
    protocol = fsspec.core.split_protocol(url.split("::")[-1])[0] or ""
    extra = EXTRAS.get(protocol)
    if extra is None:
        return f"{exc}"
    return f"{protocol}:// needs the {extra} extra: pip install 'gens_fs[{extra}]'"


def _merge_defaults(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in options.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
