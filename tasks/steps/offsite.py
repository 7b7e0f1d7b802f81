"""Prefect `@task` wrappers for off-site copies (upload, prune, verify, lifecycle, lock check).

All have side effects or read live remote state, hence `cache_policy=NO_CACHE`. None
uses Prefect retries: each network step already retries transient errors with
exponential backoff inside a bounded window (`tasks.offsite.remote.remote_call`), reconnecting
between attempts, and a second layer would multiply the waiting.

Each takes the destination's text (one entry of OFFSITE_DESTINATION, which carries no
secret: credentials come from the SDKs' environment), so each destination of a run is
its own task run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.settings import Settings
from tasks.offsite.catalog import RemotePrune, prune_remote, remote_catalog
from tasks.offsite.copy import OffsiteCopy, copy_backup
from tasks.offsite.encryption import encryption_from_settings
from tasks.offsite.remote import policy_from_settings, remote_call, staging_dir
from tasks.offsite.s3_lifecycle import apply_lifecycle
from tasks.offsite.verify import RemoteCheck, VerifyReport, verify_copy, verify_destination
from tasks.storage.destination import open_destination
from tasks.storage.s3 import bucket_lock_state


def _log() -> Any:
    """Where retry notices go: the task run's log (the Prefect UI), else ours."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger().warning
    except Exception:  # called outside a run
        return logging.getLogger("chatbot_backup").warning


@task(name="offsite-upload", cache_policy=NO_CACHE)
def upload_offsite(
    settings: Settings, local: Path, known_sha256: str | None = None, destination: str | None = None
) -> OffsiteCopy:
    """Copy one backup off-site (encrypted when configured), verified; skip an identical copy."""
    return copy_backup(
        open_destination(settings, destination),
        local,
        policy=policy_from_settings(settings),
        staging=staging_dir(settings.backups),
        encryption=encryption_from_settings(settings),
        known_sha256=known_sha256,
        log=_log(),
    )


@task(name="offsite-prune", cache_policy=NO_CACHE)
def prune_offsite(settings: Settings, now: datetime, destination: str | None = None) -> RemotePrune:
    """Off-site retention: OFFSITE_RETENTION_DAYS, newest 3 of each kind and tier kept."""
    dest = open_destination(settings, destination)
    pruned, _ = remote_call(
        dest,
        f"off-site retention at {dest}",
        lambda: prune_remote(dest, settings.offsite_retention_days, now),
        policy_from_settings(settings),
        _log(),
    )
    return pruned


@task(name="offsite-verify", cache_policy=NO_CACHE)
def verify_offsite(settings: Settings, destination: str | None = None) -> list[RemoteCheck]:
    """Read every finished off-site copy back and compare it with its sidecar."""
    dest = open_destination(settings, destination)
    policy = policy_from_settings(settings)
    backups, _ = remote_call(dest, f"listing {dest}", lambda: remote_catalog(dest), policy, _log())
    checks = []
    for backup in backups:
        check, _ = remote_call(
            dest,
            f"verifying {dest.url(backup.remote_name)}",
            lambda b=backup: verify_copy(dest, b),  # type: ignore[misc]
            policy,
            _log(),
        )
        checks.append(check)
    return checks


@task(name="offsite-verify-destination", cache_policy=NO_CACHE)
def verify_offsite_sample(
    settings: Settings, destination: str | None, sample: int | None
) -> VerifyReport:
    """`offsite-verify` at one destination: oldest-verified first, the record kept there."""
    dest = open_destination(settings, destination)
    return verify_destination(dest, sample, policy_from_settings(settings), _log())


@task(name="offsite-lifecycle", cache_policy=NO_CACHE)
def apply_offsite_lifecycle(
    settings: Settings, glacier_days: int, expire_days: int, destination: str | None = None
) -> list[dict[str, Any]]:
    dest = open_destination(settings, destination)
    rules, _ = remote_call(
        dest,
        f"lifecycle policy of {dest}",
        lambda: apply_lifecycle(dest, glacier_days, expire_days),
        policy_from_settings(settings),
        _log(),
    )
    return rules


@task(name="offsite-lock-check", cache_policy=NO_CACHE)
def check_bucket_lock(settings: Settings, destination: str | None) -> tuple[str, str | None]:
    """(versioning status, Object Lock default or None) of an S3 destination's bucket."""
    dest = open_destination(settings, destination)
    state, _ = remote_call(
        dest,
        f"Object Lock of {dest}",
        lambda: bucket_lock_state(dest.fs, str(dest.options["bucket"])),
        policy_from_settings(settings),
        _log(),
    )
    return state
