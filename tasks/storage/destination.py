"""`OFFSITE_DESTINATION` (or the local folder) as a Destination: parsing, no network.

`parse_destination` turns a destination text into a Destination of the right backend
without touching the network: a malformed destination or missing credentials is a
ConfigError before any work starts. Credentials are taken the way each SDK expects them
(SPEC: Configuration) and never appear in a message: the display form of a destination
carries none. A new backend is one module beside this one (making its filesystem) and
one line here, plus its entry in the conformance suite (tests/test_destinations.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.errors import ConfigError
from tasks.core.redact import register_secret, strip_url_password
from tasks.storage.azure import AZ_CONTAINER, azure_filesystem
from tasks.storage.base import (
    PART_SIZE,
    PARTIAL_MARKER,
    READ_CHUNK,
    Commit,
    Destination,
    RemoteEntry,
    Scheme,
)
from tasks.storage.gcs import GCS_BUCKET, gcs_filesystem
from tasks.storage.local import local_destination
from tasks.storage.s3 import (
    S3_BUCKET,
    S3_STORAGE_CLASSES,
    check_lock_mode,
    check_storage_class,
    s3_filesystem,
)
from tasks.storage.ssh import ssh_destination, ssh_url_destination
from tasks.storage.throttle import parse_bandwidth

if TYPE_CHECKING:
    from tasks.core.settings import Settings

__all__ = [
    "PART_SIZE",
    "PARTIAL_MARKER",
    "READ_CHUNK",
    "S3_STORAGE_CLASSES",
    "Commit",
    "Destination",
    "RemoteEntry",
    "Scheme",
    "is_remote_url",
    "destination_texts",
    "open_destination",
    "open_destinations",
    "parse_destination",
    "split_remote_url",
]

_SCHEME_ALIASES: dict[str, Scheme] = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "az",
    "sftp": "ssh",
    "ssh": "ssh",
    "file": "file",
}


_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")


# scp-style `[user@]host:path`: a colon before any slash (as scp and rsync decide).
_SCP = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\]):(?P<path>.*)$"
)


def parse_destination(
    text: str,
    *,
    app_root: Path | None = None,
    s3_storage_class: str | None = None,
    ssh_config: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Destination:
    """Map an `OFFSITE_DESTINATION` value to a Destination; ConfigError when it cannot be.

    Nothing is connected here; credentials are only checked for presence.
    """
    env = os.environ if env is None else env
    value = (text or "").strip()
    if not value:
        raise ConfigError("OFFSITE_DESTINATION is empty")
    match = _URL.match(value)
    if match:
        scheme = _SCHEME_ALIASES.get(match.group("scheme").lower())
        rest = match.group("rest")
        if scheme is None:
            raise ConfigError(
                f"OFFSITE_DESTINATION: unsupported scheme {match.group('scheme')!r} "
                "(use s3://, gs://, az://, user@host:/path or a local path)"
            )
        if scheme == "file":
            return local_destination(rest, app_root)
        if scheme == "ssh":
            return ssh_url_destination(rest, ssh_config)
        return _object_store(scheme, rest, s3_storage_class, env)
    scp = _SCP.match(value)
    if scp and "/" not in value.split(":", 1)[0]:
        return ssh_destination(
            scp.group("user"), scp.group("host"), None, scp.group("path"), ssh_config
        )
    return local_destination(value, app_root)


def _split_bucket(scheme: str, rest: str) -> tuple[str, str]:
    if "@" in rest.split("/", 1)[0]:
        # s3://KEY:SECRET@bucket would put a secret where every log line shows it.
        register_secret(rest.split("@", 1)[0])
        raise ConfigError(
            f"OFFSITE_DESTINATION: credentials in a {scheme}:// URL are not supported; "
            "give them the way the SDK expects (see the configuration table)"
        )
    bucket, _, prefix = rest.partition("/")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"OFFSITE_DESTINATION: '.' and '..' are not allowed in {scheme}:// paths")
    return bucket, "/".join(parts)


def _object_store(
    scheme: Scheme, rest: str, storage_class: str | None, env: Mapping[str, str]
) -> Destination:
    bucket, prefix = _split_bucket(scheme, rest)
    noun = "container" if scheme == "az" else "bucket"
    pattern = {"s3": S3_BUCKET, "gs": GCS_BUCKET, "az": AZ_CONTAINER}[scheme]
    if not bucket:
        raise ConfigError(f"OFFSITE_DESTINATION: {scheme}:// needs a {noun} name")
    if not pattern.match(bucket):
        limits = (
            "3-63 lowercase letters, digits and hyphens"
            if scheme == "az"
            else ("3-63 lowercase letters, digits, dots and hyphens")
        )
        raise ConfigError(f"OFFSITE_DESTINATION: {bucket!r} is not a valid {noun} name ({limits})")
    root = f"{bucket}/{prefix}" if prefix else bucket
    display = f"{scheme}://{root}"
    options: dict[str, Any] = {"bucket": bucket, "prefix": prefix}
    read_options = {"block_size": READ_CHUNK, "cache_type": "none"}
    if scheme == "s3":
        make_fs, put_options = s3_filesystem(env, storage_class)
        options["storage_class"] = check_storage_class(storage_class)
    elif scheme == "gs":
        make_fs, put_options = gcs_filesystem(env)
    else:
        make_fs, put_options = azure_filesystem(env)
    return Destination(scheme, root, display, make_fs, "direct", put_options, read_options, options)


def destination_texts(value: str | None) -> list[str]:
    """`OFFSITE_DESTINATION` split on commas (several destinations), blanks dropped."""
    texts = [part.strip() for part in (value or "").split(",") if part.strip()]
    seen: set[str] = set()
    for text in texts:
        if text in seen:
            raise ConfigError(f"OFFSITE_DESTINATION: {strip_url_password(text)!r} is listed twice")
        seen.add(text)
    return texts


def open_destination(settings: Settings, text: str | None = None) -> Destination:
    """The off-site destination `text` (default: the only or first one the settings name),
    checked but not connected, with the settings' Object Lock and bandwidth cap."""
    value = text if text is not None else settings.offsite_destination
    texts = destination_texts(value)
    if not texts:
        raise ConfigError(
            "OFFSITE_DESTINATION is not set: --offsite needs s3://bucket/prefix, "
            "gs://bucket/prefix, az://container/prefix, user@host:/path or a local path"
        )
    if len(texts) > 1 and text is not None:
        raise ConfigError(f"one destination expected, got {len(texts)}")
    ssh_config = settings.offsite_ssh_config
    dest = parse_destination(
        texts[0],
        app_root=settings.app_root,
        s3_storage_class=settings.offsite_s3_storage_class,
        ssh_config=settings.resolve(ssh_config) if ssh_config is not None else None,
    )
    if settings.offsite_object_lock_days:
        dest.lock = (
            check_lock_mode(settings.offsite_object_lock_mode),
            settings.offsite_object_lock_days,
        )
    dest.bandwidth = parse_bandwidth(settings.offsite_bandwidth_limit)
    dest.source_text = texts[0]
    return dest


def open_destinations(settings: Settings) -> list[Destination]:
    """Every destination `OFFSITE_DESTINATION` lists (comma-separated), checked, in order."""
    texts = destination_texts(settings.offsite_destination)
    if not texts:
        open_destination(settings)  # raises the not-set message
    return [open_destination(settings, text) for text in texts]


def split_remote_url(url: str) -> tuple[str, str]:
    """`s3://b/p/NAME` -> (`s3://b/p`, `NAME`); the same for every destination form."""
    value = url.strip().rstrip("/")
    head, sep, name = value.rpartition("/")
    if not sep or not name or re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*:/?", head):
        raise ConfigError(f"not a backup file URL: {strip_url_password(url)!r}")
    return (head or "/"), name


def is_remote_url(text: str) -> bool:
    """True for s3://, gs://, az://, sftp:// URLs and user@host:/path; False for local paths."""
    value = text.strip()
    match = _URL.match(value)
    if match:
        return _SCHEME_ALIASES.get(match.group("scheme").lower(), "file") != "file"
    scp = _SCP.match(value)
    return bool(scp) and "/" not in value.split(":", 1)[0]
