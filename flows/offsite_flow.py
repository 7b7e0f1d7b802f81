"""Off-site copies: the `--offsite` step of the backup jobs, `offsite-sync` and `offsite-setup`.

`check_offsite` runs before a backup job does any work (a bad destination, missing
credentials or impossible encryption stop it there); `copy_offsite` is the task group the
backup flows call once their local backup is safe. `offsite-sync` is the guide's "manual
sync": every local backup missing off-site is copied and verified, then off-site
retention runs. `offsite-setup` puts the guide's S3 lifecycle policy on the bucket.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.reporting import human_size, publish_links, publish_table, run_logger
from tasks.catalog.records import list_backups
from tasks.core.errors import BackupError, ConfigError, DestinationError, SourceError, VerifyError
from tasks.core.redact import redact
from tasks.core.settings import Settings, load_settings
from tasks.monitor.metrics import record_offsite_status
from tasks.offsite.copy import STAGING_DIR, OffsiteCopy, RemoteCheck, RemotePrune, fetch_backup
from tasks.offsite.encryption import encryption_from_settings
from tasks.steps.offsite import (
    apply_offsite_lifecycle,
    prune_offsite,
    upload_offsite,
    verify_offsite,
)
from tasks.storage.destination import Destination, open_destination


def check_offsite(settings: Settings) -> Destination:
    """Everything that can be checked without the network, before any work starts."""
    dest = open_destination(settings)
    encryption_from_settings(settings)
    return dest


def _copy_rows(copies: list[OffsiteCopy]) -> list[dict[str, Any]]:
    return [
        {
            "backup": c.name,
            "remote": c.url,
            "size_bytes": c.size,
            "sha256": c.sha256,
            "action": "uploaded" if c.uploaded else "already there",
            "encrypted": "age" if c.encrypted else "no",
            "attempts": c.attempts,
            "duration_s": f"{c.seconds:.2f}",
        }
        for c in copies
    ]


@dataclass(frozen=True)
class OffsiteResult:
    """The off-site step of a backup run."""

    destination: str
    scheme: str
    copies: list[OffsiteCopy] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    prune_error: str | None = None

    @property
    def uploaded(self) -> int:
        return sum(1 for c in self.copies if c.uploaded)

    def summary_lines(self) -> list[str]:
        lines = [f"  off-site: {self.destination}"]
        for c in self.copies:
            action = "uploaded and verified" if c.uploaded else "already there, identical"
            lines.append(f"    {c.remote_name}: {action} ({human_size(c.size)}, sha256 {c.sha256})")
        lines.append(f"    off-site backups removed by retention: {len(self.removed)}")
        if self.prune_error:
            lines.append(f"    off-site retention not applied: {self.prune_error}")
        return lines


def copy_offsite(
    settings: Settings,
    paths: list[Path],
    kind: str,
    known_sha256: Mapping[str, str] | None = None,
) -> OffsiteResult:
    """Copy new backups off-site (verified), then apply off-site retention.

    Called by the backup flows after their local backup is safe. A failed copy raises
    (the run fails and alerts) and sets `chatbot_offsite_backup_status` to 0.
    """
    started = time.monotonic()
    dest = open_destination(settings)
    logger = run_logger()
    try:
        copies = [
            upload_offsite(settings, path, (known_sha256 or {}).get(path.name)) for path in paths
        ]
    except Exception as exc:
        record_offsite_status(settings, kind, dest.scheme, False)
        if isinstance(exc, VerifyError | ConfigError):
            raise
        names = ", ".join(p.name for p in paths)
        detail = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        raise DestinationError(
            f"{redact(detail)} (the local backup {names} is kept)",
            transient=getattr(exc, "transient", False),
        ) from exc
    record_offsite_status(settings, kind, dest.scheme, True)
    pruned, prune_error = RemotePrune(), None
    try:
        pruned = prune_offsite(settings, datetime.now(UTC))
    except BackupError as exc:  # the copies are verified; retention can wait for next time
        prune_error = redact(str(exc))
        logger.warning("off-site retention not applied: %s", prune_error)
    result = OffsiteResult(
        destination=dest.display,
        scheme=dest.scheme,
        copies=copies,
        removed=pruned.removed,
        seconds=time.monotonic() - started,
        prune_error=prune_error,
    )
    for line in result.summary_lines():
        logger.info(line)
    publish_table("offsite-copy", _copy_rows(copies), f"Off-site copy to {dest.display}")
    publish_links(
        "offsite-copy-link",
        [(c.url, c.remote_name) for c in copies],
        f"Verified off-site copy at {dest.display}",
    )
    return result


# --------------------------------------------------------------------------- offsite-sync


@dataclass(frozen=True)
class OffsiteSyncResult:
    destination: str
    scheme: str
    copies: list[OffsiteCopy] = field(default_factory=list)
    skipped_local: list[str] = field(default_factory=list)  # vanished during the sync
    removed: list[str] = field(default_factory=list)
    checks: list[RemoteCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def uploaded(self) -> int:
        return sum(1 for c in self.copies if c.uploaded)

    @property
    def already_there(self) -> int:
        return sum(1 for c in self.copies if not c.uploaded)

    def summary_lines(self) -> list[str]:
        lines = [
            "Off-site sync completed",
            f"  destination:   {self.destination}",
            f"  uploaded:      {self.uploaded}",
            f"  already there: {self.already_there}",
            f"  removed by off-site retention: {len(self.removed)}",
            f"  duration:      {self.seconds:.1f} s",
        ]
        for c in self.copies:
            if c.uploaded:
                lines.append(f"    uploaded {c.remote_name} ({human_size(c.size)})")
        for name in self.removed:
            lines.append(f"    removed {name}")
        if self.checks:
            ok = sum(1 for c in self.checks if c.status in ("ok", "archived"))
            lines.append(
                f"  verified:      {ok} of {len(self.checks)} copies read back and matched"
            )
        return lines


@flow(name="offsite-sync", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def offsite_sync(verify: bool = False) -> OffsiteSyncResult:
    """Copy every local backup that is missing off-site (verified), then off-site retention.

    With `verify`, every finished off-site copy is also read back and compared with its
    sidecar; a copy that was altered fails the run (and is left in place for inspection).
    """
    started = time.monotonic()
    settings = load_settings()
    dest = check_offsite(settings)
    logger = run_logger()
    copies: list[OffsiteCopy] = []
    failures: list[tuple[str, BackupError]] = []
    skipped: list[str] = []
    kinds: dict[str, bool] = {}
    # Newest first: if the destination goes away midway, the most recent are across.
    for record in reversed(list_backups(settings.backups)):
        try:
            copies.append(upload_offsite(settings, record.path))
            kinds.setdefault(record.kind, True)
        except SourceError:
            skipped.append(record.path.name)
        except BackupError as exc:
            failures.append((record.path.name, exc))
            kinds[record.kind] = False
            if exc.transient:  # unreachable for a whole window: the rest would wait too
                break
    checks: list[RemoteCheck] = []
    removed: list[str] = []
    if not failures:
        if verify:
            checks = verify_offsite(settings)
        removed = prune_offsite(settings, datetime.now(UTC)).removed
    for kind, ok in kinds.items():
        record_offsite_status(settings, kind, dest.scheme, ok)
    result = OffsiteSyncResult(
        dest.display, dest.scheme, copies, skipped, removed, checks, time.monotonic() - started
    )
    for line in result.summary_lines():
        logger.info(line)
    rows = _copy_rows(copies) + [
        {"backup": c.remote_name, "action": f"verify: {c.status}", "remote": c.detail}
        for c in checks
    ]
    publish_table("offsite-sync", rows, f"Off-site sync to {dest.display}")
    publish_links(
        "offsite-copy-link",
        [(c.url, c.remote_name) for c in copies if c.uploaded],
        f"Verified off-site copy at {dest.display}",
    )
    _raise_for(failures, checks, dest)
    return result


def _raise_for(
    failures: list[tuple[str, BackupError]], checks: list[RemoteCheck], dest: Destination
) -> None:
    bad = [c for c in checks if c.status not in ("ok", "archived")]
    if bad:
        first = bad[0]
        raise VerifyError(
            f"off-site verification at {dest.display}: {len(bad)} of {len(checks)} copies "
            f"failed — {first.remote_name}: {first.detail}"
        )
    if failures:
        name, first_error = failures[0]
        kind = VerifyError if isinstance(first_error, VerifyError) else DestinationError
        raise kind(
            f"off-site sync to {dest.display}: {len(failures)} backup(s) not copied — "
            f"{name}: {first_error}"
        )


# --------------------------------------------------------------------------- restores


def fetch_for_restore(url: str, settings: Settings) -> Path:
    """A remote backup (`s3://...`, `user@host:/...`), downloaded, verified and decrypted
    into `BACKUP_DIR/.offsite-staging`, for db-restore, restore-all and test-restore.

    Hand the path to `release_fetched` when done; a run that dies leaves it to the next
    run's sweep of that folder.
    """
    run_logger().info("fetching %s", redact(url))
    return fetch_backup(url, settings)


def release_fetched(path: Path, settings: Settings) -> None:
    """Remove a file `fetch_for_restore` made (and only such a file)."""
    if path.parent.parent == settings.backups / STAGING_DIR:
        shutil.rmtree(path.parent, ignore_errors=True)


# --------------------------------------------------------------------------- offsite-setup


@dataclass(frozen=True)
class OffsiteSetupResult:
    bucket: str
    prefix: str
    glacier_days: int
    expire_days: int
    rule_ids: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return [
            "Off-site lifecycle policy applied",
            f"  bucket:  {where}",
            f"  to GLACIER after {self.glacier_days} days, expire after {self.expire_days} days",
            f"  rules on the bucket: {', '.join(self.rule_ids)}",
        ]


@flow(name="offsite-setup", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def offsite_setup(
    glacier_days: int | None = None, expire_days: int | None = None
) -> OffsiteSetupResult:
    """Apply the guide's S3 lifecycle policy (Glacier after 30 days, expire after 365)."""
    settings = load_settings()
    dest = open_destination(settings)
    if dest.scheme != "s3":
        raise ConfigError(f"offsite-setup is for S3 destinations; {dest.display} is not s3://")
    glacier = settings.offsite_glacier_days if glacier_days is None else glacier_days
    expire = settings.offsite_expire_days if expire_days is None else expire_days
    if glacier < 0 or expire < 1:
        raise ConfigError("--glacier-days must be 0 or more and --expire-days 1 or more")
    rules = apply_offsite_lifecycle(settings, glacier, expire)
    result = OffsiteSetupResult(
        bucket=str(dest.options["bucket"]),
        prefix=str(dest.options.get("prefix", "")),
        glacier_days=glacier,
        expire_days=expire,
        rule_ids=[str(r.get("ID", "?")) for r in rules],
    )
    for line in result.summary_lines():
        run_logger().info(line)
    publish_table(
        "offsite-setup",
        [
            {"item": "bucket", "value": result.bucket},
            {"item": "prefix", "value": result.prefix or "(whole bucket)"},
            {"item": "glacier_days", "value": glacier},
            {"item": "expire_days", "value": expire},
            {"item": "rules", "value": ", ".join(result.rule_ids)},
        ],
        f"S3 lifecycle policy on {dest.display}",
    )
    return result
