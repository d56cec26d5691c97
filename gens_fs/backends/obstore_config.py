"""From a root's protocol, its ``storage_options`` and the standard environment to what
obstore's stores are built with: one concern, kept apart from the backend that uses it.

obstore reads most of the standard environment itself (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, ``AZURE_STORAGE_ACCOUNT_NAME``, ``..._KEY``,
``GOOGLE_APPLICATION_CREDENTIALS``...). What it does not read, and the default engine does,
is filled in here so that one environment serves both engines:

* a plain-HTTP endpoint (``http://...``, a local emulator) is allowed (``allow_http``);
* ``AWS_PROFILE`` (or the ``profile`` option): the profile's keys, resolved once by botocore
  (installed with s3fs) when no key is given otherwise;
* ``AZURE_STORAGE_CONNECTION_STRING`` (or ``connection_string``): parsed into the account,
  key or SAS, and blob endpoint.

``storage_options`` are the default engine's (s3fs, adlfs, gcsfs) keys, mapped where obstore
has an equivalent (:data:`S3_KEYS`, :data:`AZURE_KEYS`, :data:`GCS_KEYS`); a key with none is
refused (``StorageError``) rather than silently dropped, so a setting a user relies on
never vanishes on switching engines. Only the default engine's client tuning, which obstore
does its own way, is accepted and left out (:data:`S3_TUNING`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gens_fs.errors import StorageError

# The protocols the obstore engine serves, and the kind of store each one is.
OBSTORE_KINDS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
}

# s3fs keys -> S3Config keys (dotted keys are nested options: client_kwargs.endpoint_url).
S3_KEYS = {
    "key": "access_key_id",
    "secret": "secret_access_key",
    "token": "session_token",
    "anon": "skip_signature",
    "endpoint_url": "endpoint",
    "client_kwargs.endpoint_url": "endpoint",
    "client_kwargs.region_name": "region",
    "profile": "profile",
    "config_kwargs.s3.addressing_style": "addressing_style",
}
# s3fs/botocore client tuning with no obstore counterpart to map it to: obstore already does
# what gens_fs asks of it (one GET per read, a pooled HTTP client), so these are accepted
# and left out. ``config_kwargs.retries`` sets the attempts of gens_fs's retry layer, which
# serves both engines (``gens_fs.backends.retry.policy_from_options``), not the client's.
S3_TUNING = frozenset(
    {
        "max_concurrency",
        "config_kwargs.max_pool_connections",
        "config_kwargs.retries",
        "config_kwargs.proxies",
    }
)
# obstore retries nothing itself: retries are gens_fs's (``gens_fs.backends.retry``), one
# layer for every engine, so a request is never retried by two.
NO_RETRIES: dict[str, Any] = {"max_retries": 0}
# adlfs keys -> AzureConfig keys.
AZURE_KEYS = {
    "connection_string": "connection_string",
    "account_name": "account_name",
    "account_key": "account_key",
    "sas_token": "sas_key",
    "anon": "skip_signature",
}
# gcsfs keys -> GoogleConfig keys (``token``: the path of a service account or
# application-default credentials JSON file; ``"anon"`` for anonymous access).
GCS_KEYS = {"token": "application_credentials", "endpoint_url": "base_url", "anon": "anon"}

_KEYS = {"s3": S3_KEYS, "azure": AZURE_KEYS, "gcs": GCS_KEYS}
_TUNING = {"s3": S3_TUNING, "azure": frozenset(), "gcs": frozenset()}


@dataclass(frozen=True)
class StoreSettings:
    """What every store of one backend is built with (one store per bucket/container).

    ``endpoint``: where requests go (for the backend's ``service``), ``credential_id``: who
    the client is without the secret (two backends copy server side only with the same).
    """

    kind: str
    config: dict[str, Any]
    client_options: dict[str, Any] = field(default_factory=dict)
    retry_config: dict[str, Any] = field(default_factory=lambda: dict(NO_RETRIES))
    endpoint: str = ""
    credential_id: str = ""


def store_settings(protocol: str, options: Mapping[str, Any]) -> StoreSettings:
    """The settings for a ``protocol://`` root with these (default engine's) options."""
    kind = OBSTORE_KINDS[protocol]
    mapped = _map_options(kind, options)
    build: Callable[[dict[str, Any]], StoreSettings] = {
        "s3": _s3_settings,
        "azure": _azure_settings,
        "gcs": _gcs_settings,
    }[kind]
    return build(mapped)


def _map_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as the target's keys; an option without an equivalent is refused."""
    keys, tuning = _KEYS[kind], _TUNING[kind]
    mapped: dict[str, Any] = {}
    for dotted, value in _flatten(options).items():
        if dotted in keys:
            if value is not None:
                mapped[keys[dotted]] = value
        elif not any(dotted == t or dotted.startswith(t + ".") for t in tuning):
            known = ", ".join(sorted(keys))
            raise StorageError(
                f"storage option {dotted!r} has no equivalent in the obstore engine "
                f"(it maps {known}): drop it, or use the default engine (fsspec)"
            )
    return mapped


def _flatten(options: Mapping[str, Any], parent: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in options.items():
        dotted = f"{parent}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        elif not (isinstance(value, Mapping) and not value):  # an empty mapping sets nothing
            flat[dotted] = value
    return flat


# -- S3 ---------------------------------------------------------------------------------------


def _s3_settings(mapped: dict[str, Any]) -> StoreSettings:
    config: dict[str, Any] = {}
    for name in ("access_key_id", "secret_access_key", "session_token", "region", "endpoint"):
        if name in mapped:
            config[name] = str(mapped[name])
    if mapped.get("skip_signature"):
        config["skip_signature"] = True
    style = mapped.get("addressing_style")
    if style is not None:
        config["virtual_hosted_style_request"] = style == "virtual"
    profile = mapped.get("profile") or os.environ.get("AWS_PROFILE")
    if profile and not _has_key(config) and not config.get("skip_signature"):
        config.update(_profile_keys(str(profile)))
    endpoint = config.get("endpoint") or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    key = config.get("access_key_id") or os.environ.get("AWS_ACCESS_KEY_ID")
    return StoreSettings(
        "s3",
        config,
        _allow_http(endpoint),
        endpoint=endpoint or "aws",
        credential_id="anonymous" if config.get("skip_signature") else _digest(key),
    )


def _has_key(config: Mapping[str, Any]) -> bool:
    return "access_key_id" in config or "AWS_ACCESS_KEY_ID" in os.environ


def _profile_keys(profile: str) -> dict[str, str]:
    """The keys of an AWS profile (``~/.aws/credentials``, ``~/.aws/config``), which obstore
    does not read: resolved once, through botocore."""
    import botocore.exceptions
    import botocore.session

    try:
        credentials = botocore.session.Session(profile=profile).get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise StorageError(
            f"AWS profile {profile!r} is not in ~/.aws/config or ~/.aws/credentials: fix "
            "AWS_PROFILE (or the profile option)"
        ) from None
    if credentials is None:
        raise StorageError(f"AWS profile {profile!r} holds no credentials")
    frozen = credentials.get_frozen_credentials()
    keys = {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key}
    if frozen.token:
        keys["session_token"] = frozen.token
    return keys


# -- Azure ------------------------------------------------------------------------------------


def _azure_settings(mapped: dict[str, Any]) -> StoreSettings:
    connection = mapped.pop("connection_string", None)
    if connection is None and not mapped:
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    config = {**(_parse_connection_string(str(connection)) if connection else {}), **mapped}
    if config.pop("skip_signature", False):
        config["skip_signature"] = True
    account = config.get("account_name") or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
    endpoint = (
        config.get("endpoint")
        or os.environ.get("AZURE_STORAGE_ENDPOINT")
        or (f"https://{account}.blob.core.windows.net" if account else "")
    )
    return StoreSettings(
        "azure",
        {k: v if isinstance(v, bool) else str(v) for k, v in config.items()},
        _allow_http(endpoint),
        endpoint=endpoint.rstrip("/"),
        credential_id=account,
    )


def _parse_connection_string(connection: str) -> dict[str, Any]:
    """An Azure Storage connection string (``Key=Value;...``) as AzureConfig keys."""
    parts = dict(
        part.split("=", 1) for part in connection.strip().strip(";").split(";") if "=" in part
    )
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return {"use_emulator": True, "account_name": "devstoreaccount1"}
    if "AccountName" not in parts and "BlobEndpoint" not in parts:
        raise StorageError(
            "the Azure connection string names no AccountName or BlobEndpoint: copy it whole "
            "from the storage account's Access keys page"
        )
    config: dict[str, Any] = {}
    if "AccountName" in parts:
        config["account_name"] = parts["AccountName"]
    if "AccountKey" in parts:
        config["account_key"] = parts["AccountKey"]
    if "SharedAccessSignature" in parts:
        config["sas_key"] = parts["SharedAccessSignature"]
    if "BlobEndpoint" in parts:
        config["endpoint"] = parts["BlobEndpoint"]
    elif "EndpointSuffix" in parts:
        scheme = parts.get("DefaultEndpointsProtocol", "https")
        config["endpoint"] = f"{scheme}://{parts['AccountName']}.blob.{parts['EndpointSuffix']}"
    return config


# -- Google Cloud Storage -----------------------------------------------------------------------


def _gcs_settings(mapped: dict[str, Any]) -> StoreSettings:
    config: dict[str, Any] = {}
    token = mapped.get("application_credentials")
    anon = mapped.get("anon") or token == "anon"
    if anon:
        config["skip_signature"] = True
    elif token is not None:
        config["application_credentials"] = str(token)
    if "base_url" in mapped:
        config["base_url"] = str(mapped["base_url"])
    endpoint = config.get("base_url", "https://storage.googleapis.com")
    return StoreSettings(
        "gcs",
        config,
        _allow_http(endpoint),
        endpoint=endpoint,
        credential_id="anonymous" if anon else _digest(token),
    )


# -- shared -----------------------------------------------------------------------------------


def _allow_http(endpoint: str | None) -> dict[str, Any]:
    """obstore refuses ``http://`` unless told: an endpoint given as ``http://`` is meant."""
    return {"allow_http": True} if endpoint and endpoint.startswith("http://") else {}


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _digest(secret: object) -> str:
    """Who the client is, without the secret."""
    return hashlib.sha256(str(secret).encode()).hexdigest()[:12]
