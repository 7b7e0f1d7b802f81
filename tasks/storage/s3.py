"""S3 (s3fs): the filesystem, its upload options, the storage class, the credential check."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.core.errors import ConfigError
from tasks.core.redact import register_secret
from tasks.storage.parts import PART_SIZE

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


# S3 storage classes an upload may use. GLACIER and DEEP_ARCHIVE are left out on
# purpose: an object stored there cannot be read back, so it could not be verified;
# move copies there with the lifecycle policy (`offsite-setup`) instead.
S3_STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
)


S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_storage_class(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    name = value.strip().upper()
    if name not in S3_STORAGE_CLASSES:
        hint = (
            " (objects there cannot be read back to verify them; use `chatbot-backup "
            "offsite-setup` to move copies to Glacier after OFFSITE_GLACIER_DAYS)"
            if name in ("GLACIER", "DEEP_ARCHIVE")
            else ""
        )
        raise ConfigError(
            f"OFFSITE_S3_STORAGE_CLASS: must be one of {', '.join(S3_STORAGE_CLASSES)}, "
            f"got {value!r}{hint}"
        )
    return name


def s3_filesystem(
    env: Mapping[str, str], storage_class: str | None
) -> tuple[Callable[[], AbstractFileSystem], dict[str, Any]]:
    klass = check_storage_class(storage_class)
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    require_aws_credentials(env)
    register_secret(env.get("AWS_SECRET_ACCESS_KEY"))
    register_secret(env.get("AWS_SESSION_TOKEN"))
    # Keys given in `env` are passed on; otherwise botocore's own chain (profile, role).
    keys = {
        arg: env[var]
        for arg, var in (
            ("key", "AWS_ACCESS_KEY_ID"),
            ("secret", "AWS_SECRET_ACCESS_KEY"),
            ("token", "AWS_SESSION_TOKEN"),
        )
        if env.get(var)
    }

    def make() -> AbstractFileSystem:
        import s3fs

        client_kwargs: dict[str, Any] = {}
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        if region:
            client_kwargs["region_name"] = region
        fs = s3fs.S3FileSystem(
            skip_instance_cache=True,
            use_listings_cache=False,
            max_concurrency=4,
            client_kwargs=client_kwargs,
            # A short botocore retry: the outer loop (tasks.core.backoff) owns the waiting.
            config_kwargs={
                "retries": {"max_attempts": 2, "mode": "standard"},
                "connect_timeout": 10,
                "read_timeout": 60,
            },
            s3_additional_kwargs={"StorageClass": klass} if klass else None,
            **keys,
        )
        fs.retries = 2  # s3fs' own retry loop (class default 5)
        return fs

    return make, {"chunksize": PART_SIZE}


def require_aws_credentials(env: Mapping[str, str]) -> None:
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_SECRET_ACCESS_KEY"):
        raise ConfigError(
            "S3 credentials incomplete: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    import botocore.session

    try:
        found = botocore.session.Session().get_credentials()
    except Exception:  # a broken profile file is as good as none
        found = None
    if found is None:
        raise ConfigError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, or run where an instance role is available)"
        )


# --------------------------------------------------------------------------- Object Lock

OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


def check_lock_mode(value: str | None) -> str:
    mode = (value or "GOVERNANCE").strip().upper()
    if mode not in OBJECT_LOCK_MODES:
        raise ConfigError(
            f"OFFSITE_OBJECT_LOCK_MODE: must be GOVERNANCE or COMPLIANCE, got {value!r}"
        )
    return mode


def lock_kwargs(mode: str, days: int) -> dict[str, Any]:
    """The PutObject / CreateMultipartUpload arguments of a retention `days` from now."""
    until = datetime.now(UTC) + timedelta(days=days)
    return {"ObjectLockMode": mode, "ObjectLockRetainUntilDate": until}


def head_object(fs: AbstractFileSystem, path: str) -> dict[str, Any]:
    """S3's HeadObject of `bucket/key` (it carries the Object Lock retention)."""
    bucket, key, _ = fs.split_path(path)
    return dict(fs.call_s3("head_object", Bucket=bucket, Key=key))


def bucket_lock_state(fs: AbstractFileSystem, bucket: str) -> tuple[str, str | None]:
    """(versioning status, Object Lock default or None when the bucket cannot lock)."""
    versioning = fs.call_s3("get_bucket_versioning", Bucket=bucket)
    status = str(versioning.get("Status") or "Disabled")
    try:
        config = fs.call_s3("get_object_lock_configuration", Bucket=bucket)
    except Exception as exc:
        text = f"{type(exc).__name__} {exc}"
        if "ObjectLockConfigurationNotFound" in text or "NotFound" in text:
            return status, None
        raise
    lock = config.get("ObjectLockConfiguration") or {}
    if lock.get("ObjectLockEnabled") != "Enabled":
        return status, None
    rule = (lock.get("Rule") or {}).get("DefaultRetention") or {}
    default = f"{rule.get('Mode')} {rule.get('Days') or rule.get('Years')}" if rule else "none"
    return status, default
