"""`offsite-setup`: the guide's S3 lifecycle policy, and the check that copies can be locked.

For every S3 destination in OFFSITE_DESTINATION it puts the lifecycle rule (Glacier after
OFFSITE_GLACIER_DAYS, expiry after OFFSITE_EXPIRE_DAYS) and reads the bucket's versioning
and Object Lock state back. With OFFSITE_OBJECT_LOCK_DAYS set, a bucket that cannot lock
(Object Lock is only enabled when a bucket is created) is an error naming what to do.
GCS and Azure destinations are immutable through a bucket retention policy / container
immutability policy set by their owner (docs/ops/offsite.md); they are listed, not changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.reporting import publish_table, run_logger
from tasks.core.errors import ConfigError
from tasks.core.settings import load_settings
from tasks.steps.offsite import apply_offsite_lifecycle, check_bucket_lock
from tasks.storage.destination import open_destinations
from tasks.storage.s3 import check_lock_mode


@dataclass(frozen=True)
class OffsiteSetupResult:
    bucket: str
    prefix: str
    glacier_days: int
    expire_days: int
    rule_ids: list[str] = field(default_factory=list)
    versioning: str = "Disabled"
    object_lock: str | None = None  # the bucket's default retention ("none"), None: cannot lock
    lock_days: int | None = None  # OFFSITE_OBJECT_LOCK_DAYS
    lock_mode: str | None = None
    others: list[str] = field(default_factory=list)  # non-S3 destinations, left alone

    def summary_lines(self) -> list[str]:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if self.object_lock is None:
            lock = "not enabled on this bucket — copies there can be deleted or overwritten"
        else:
            lock = f"enabled (bucket default retention: {self.object_lock})"
        lines = [
            "Off-site lifecycle policy applied",
            f"  bucket:  {where}",
            f"  to GLACIER after {self.glacier_days} days, expire after {self.expire_days} days",
            f"  rules on the bucket: {', '.join(self.rule_ids)}",
            f"  versioning: {self.versioning}",
            f"  Object Lock: {lock}",
        ]
        if self.lock_days:
            lines.append(
                f"  every copy uploaded is locked {self.lock_days} days ({self.lock_mode})"
            )
        for other in self.others:
            lines.append(f"  {other}: not S3, left alone (see its retention/immutability policy)")
        return lines


@flow(name="offsite-setup", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def offsite_setup(
    glacier_days: int | None = None, expire_days: int | None = None
) -> OffsiteSetupResult:
    """Apply the guide's S3 lifecycle policy (Glacier after 30 days, expire after 365) and
    check versioning and Object Lock, at every S3 destination; returns the first's result."""
    settings = load_settings()
    destinations = open_destinations(settings)
    s3 = [d for d in destinations if d.scheme == "s3"]
    if not s3:
        raise ConfigError(
            f"offsite-setup is for S3 destinations; {destinations[0].display} is not s3://"
        )
    glacier = settings.offsite_glacier_days if glacier_days is None else glacier_days
    expire = settings.offsite_expire_days if expire_days is None else expire_days
    if glacier < 0 or expire < 1:
        raise ConfigError("--glacier-days must be 0 or more and --expire-days 1 or more")
    lock_days = settings.offsite_object_lock_days
    mode = check_lock_mode(settings.offsite_object_lock_mode) if lock_days else None
    others = [d.display for d in destinations if d.scheme != "s3"]
    results = []
    for dest in s3:
        text = dest.source_text
        rules = apply_offsite_lifecycle(settings, glacier, expire, destination=text)
        versioning, lock = check_bucket_lock(settings, text)
        result = OffsiteSetupResult(
            bucket=str(dest.options["bucket"]),
            prefix=str(dest.options.get("prefix", "")),
            glacier_days=glacier,
            expire_days=expire,
            rule_ids=[str(r.get("ID", "?")) for r in rules],
            versioning=versioning,
            object_lock=lock,
            lock_days=lock_days,
            lock_mode=mode,
            others=others,
        )
        results.append(result)
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
                {"item": "versioning", "value": versioning},
                {"item": "object_lock", "value": lock or "cannot lock"},
            ],
            f"S3 lifecycle policy on {dest.display}",
        )
    unlockable = [r for r in results if r.object_lock is None or r.versioning != "Enabled"]
    if lock_days and unlockable:
        first = unlockable[0]
        raise ConfigError(
            f"OFFSITE_OBJECT_LOCK_DAYS={lock_days} but bucket {first.bucket!r} cannot lock "
            f"objects (versioning {first.versioning}, Object Lock "
            f"{'not enabled' if first.object_lock is None else 'enabled'}): Object Lock can "
            "only be turned on when a bucket is created — create a new bucket with Object "
            "Lock enabled, or unset OFFSITE_OBJECT_LOCK_DAYS"
        )
    return results[0]
