"""Prefect `@task` wrappers for off-site copies (upload, prune, verify, lifecycle).

All have side effects or read live remote state, hence `cache_policy=NO_CACHE`. None
uses Prefect retries: each network step already retries transient errors with
exponential backoff inside a bounded window (`tasks.offsite.copy.remote_call`), reconnecting
between attempts, and a second layer would multiply the waiting.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.settings import Settings
from tasks.offsite.copy import (
    OffsiteCopy,
    RemoteCheck,
    RemotePrune,
    copy_backup,
    policy_from_settings,
    prune_remote,
    remote_call,
    remote_catalog,
    staging_dir,
    verify_copy,
)
from tasks.offsite.encryption import encryption_from_settings
from tasks.offsite.s3_lifecycle import apply_lifecycle
from tasks.storage.destination import open_destination


def _log() -> Any:
    """Where retry notices go: the task run's log (the Prefect UI), else ours."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger().warning
    except Exception:  # called outside a run
        return logging.getLogger("chatbot_backup").warning


@task(name="offsite-upload", cache_policy=NO_CACHE)
def upload_offsite(settings: Settings, local: Path, known_sha256: str | None = None) -> OffsiteCopy:
    """Copy one backup off-site (encrypted when configured), verified; skip an identical copy."""
    return copy_backup(
        open_destination(settings),
        local,
        policy=policy_from_settings(settings),
        staging=staging_dir(settings.backups),
        encryption=encryption_from_settings(settings),
        known_sha256=known_sha256,
        log=_log(),
    )


@task(name="offsite-prune", cache_policy=NO_CACHE)
def prune_offsite(settings: Settings, now: datetime) -> RemotePrune:
    """Off-site retention: OFFSITE_RETENTION_DAYS, newest 3 of each kind and tier kept."""
    dest = open_destination(settings)
    pruned, _ = remote_call(
        dest,
        f"off-site retention at {dest}",
        lambda: prune_remote(dest, settings.offsite_retention_days, now),
        policy_from_settings(settings),
        _log(),
    )
    return pruned


@task(name="offsite-verify", cache_policy=NO_CACHE)
def verify_offsite(settings: Settings) -> list[RemoteCheck]:
    """Read every finished off-site copy back and compare it with its sidecar."""
    dest = open_destination(settings)
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


@task(name="offsite-lifecycle", cache_policy=NO_CACHE)
def apply_offsite_lifecycle(
    settings: Settings, glacier_days: int, expire_days: int
) -> list[dict[str, Any]]:
    dest = open_destination(settings)
    rules, _ = remote_call(
        dest,
        f"lifecycle policy of {dest}",
        lambda: apply_lifecycle(dest, glacier_days, expire_days),
        policy_from_settings(settings),
        _log(),
    )
    return rules
