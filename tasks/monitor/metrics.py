"""Prometheus metrics: what each job records (names, families, the file and the push are
`tasks.monitor.exposition`'s).

Each writer (a backup run, the monitor, a failure hook, an off-site copy) updates only
its own series, so a db-backup run never erases the full-backup series. Recording never
raises; a metrics problem is logged and reported as `False`, because it must not fail
the backup it describes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.catalog.records import list_backups, list_base_backups
from tasks.core.naming import parse_backup_name, parse_base_backup_name
from tasks.core.redact import redact, strip_url_password
from tasks.monitor.exposition import (
    SampleKey,
    key,
    parse_metrics,
    push_metrics,
    read_metrics_file,
    render_metrics,
    update_metrics_file,
)

__all__ = [
    "KindSnapshot",
    "key",
    "offsite_scheme",
    "parse_metrics",
    "publish",
    "record_backup_failure",
    "record_backup_success",
    "record_dr_drill",
    "record_job_failure",
    "record_monitor_run",
    "record_offsite_status",
    "record_restore_proof",
    "render_metrics",
]

log = logging.getLogger("chatbot_backup")


# -- what the jobs call ------------------------------------------------------------------


def publish(
    settings: Any,
    updates: Mapping[SampleKey, float | None],
    defaults: Mapping[SampleKey, float] | None = None,
) -> bool:
    """Write `updates` to METRICS_FILE and push the result when a Pushgateway is set.

    Never raises; returns False (and logs why) when either step failed.
    """
    ok = True
    path: Path = settings.metrics_path
    try:
        private = path.is_relative_to(settings.backups)
        samples = update_metrics_file(path, updates, defaults, private)
    except OSError as exc:
        log.warning("metrics not written to %s: %s", path, redact(str(exc)))
        return False
    gateway = settings.prometheus_pushgateway
    if gateway:
        try:
            push_metrics(gateway, samples, getattr(settings, "alert_timeout", 10.0))
        except OSError as exc:
            log.warning(
                "metrics not pushed to %s: %s",
                strip_url_password(redact(gateway)),
                redact(str(exc)),
            )
            ok = False
    return ok


def _count_and_bytes(folder: Path, kind: str) -> tuple[int, int]:
    listed = list_base_backups(folder) if kind == "base" else list_backups(folder)
    mine = [b for b in listed if b.kind == kind and b.good]  # as the monitor counts
    return len(mine), sum(b.size for b in mine)


def record_backup_success(
    settings: Any,
    kind: str,
    path: Path,
    size: int,
    seconds: float,
    count: int | None = None,
) -> bool:
    """After a successful backup run of `kind` ("db" or "full") that wrote `path`.

    `count` defaults to the number of backups of that kind now in the folder.
    """
    parsed = parse_backup_name(Path(path).name) or parse_base_backup_name(Path(path).name)
    stamp = parsed.created_at.timestamp() if parsed else time.time()
    counted, total = _count_and_bytes(Path(path).parent, kind)
    return publish(
        settings,
        {
            key("chatbot_last_backup_timestamp_seconds", kind=kind): stamp,
            key("chatbot_backup_status", kind=kind): 1,
            key("chatbot_last_backup_size_bytes", kind=kind): size,
            key("chatbot_backup_count", kind=kind): counted if count is None else count,
            key("chatbot_backup_sum", kind=kind): total,
            key("chatbot_last_backup_duration_seconds", kind=kind): round(seconds, 3),
        },
    )


def record_backup_failure(settings: Any, kind: str, when: float | None = None) -> bool:
    """A backup run of `kind` failed: status 0 and the failure time."""
    return publish(
        settings,
        {
            key("chatbot_backup_status", kind=kind): 0,
            key("chatbot_last_backup_failure_timestamp_seconds", kind=kind): when or time.time(),
        },
    )


def record_job_failure(settings: Any, job: str, when: float | None = None) -> bool:
    """A non-backup job (restore, monitor, test-restore) failed."""
    return publish(
        settings, {key("chatbot_job_last_failure_timestamp_seconds", job=job): when or time.time()}
    )


def record_restore_proof(
    settings: Any,
    kind: str,
    passed: bool,
    when: float | None = None,
    backup_time: float | None = None,
) -> bool:
    """A test-restore of a `kind` backup ended: every check passed (1) or not (0).
    `backup_time`: when the tested backup was made (from its name), so that the monitor
    can tell a proof of the newest backup from one of an older backup."""
    return publish(
        settings,
        {
            key("chatbot_restore_proof_status", kind=kind): 1 if passed else 0,
            key("chatbot_last_restore_proof_timestamp_seconds", kind=kind): when or time.time(),
            key("chatbot_last_restore_proof_backup_timestamp_seconds", kind=kind): backup_time,
        },
    )


def record_offsite_status(
    settings: Any, kind: str, scheme: str, ok: bool, destination: str | None = None
) -> bool:
    """The outcome of an off-site copy of a `kind` backup to one destination.

    `scheme` is the destination's scheme (s3, gs, az, ssh, file); `destination` its
    display form (`s3://bucket/prefix`, `user@host:/path`), which never carries a secret.
    """
    labels = {"kind": kind, "scheme": scheme}
    updates: dict[SampleKey, float | None] = {}
    if destination:
        labels["destination"] = strip_url_password(destination)
        # The series of the single-destination days, without the label, would stay forever.
        updates[key("chatbot_offsite_backup_status", kind=kind, scheme=scheme)] = None
    updates[key("chatbot_offsite_backup_status", **labels)] = 1 if ok else 0
    return publish(settings, updates)


def record_dr_drill(
    settings: Any, scenario: str, passed: bool, seconds: float, when: float | None = None
) -> bool:
    """A DR drill's outcome; the timestamp moves only on success (the overdue alert's clock)."""
    stamp = key("chatbot_dr_drill_timestamp_seconds", scenario=scenario)
    updates: dict[SampleKey, float | None] = {
        key("chatbot_dr_drill_success", scenario=scenario): 1 if passed else 0,
        key("chatbot_dr_drill_seconds", scenario=scenario): round(seconds, 3),
    }
    if passed:
        updates[stamp] = when or time.time()
    return publish(settings, updates, {stamp: 0})


def offsite_scheme(destination: str) -> str:
    """The label value for a destination: its scheme, `ssh` for user@host:/path, else `file`."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", destination)
    if match:
        return match.group(1).lower()
    if re.match(r"^[^/\s:]+@[^/\s:]+:", destination):
        return "ssh"
    return "file"


@dataclass(frozen=True)
class KindSnapshot:
    """What the monitor saw of one kind of backup in the folder."""

    count: int
    total_bytes: int
    newest_timestamp: float | None = None
    newest_size: int | None = None
    damaged: bool = False


def record_monitor_run(
    settings: Any,
    kinds: Mapping[str, KindSnapshot],
    status_code: int,
    when: float | None = None,
    wal_last_archived: float | None = None,
) -> bool:
    """The monitor's view of the folder (the catalog is the truth, whoever made the files).

    A damaged newest backup sets `chatbot_backup_status` to 0; otherwise the status the
    last backup run recorded is kept (1 when none was recorded, e.g. for backups made by
    the guide's shell scripts).
    """
    updates: dict[SampleKey, float | None] = {
        key("chatbot_backup_monitor_status"): status_code,
        key("chatbot_backup_monitor_last_run_timestamp_seconds"): when or time.time(),
    }
    if wal_last_archived is not None:
        updates[key("chatbot_wal_last_archived_timestamp_seconds")] = wal_last_archived
    defaults: dict[SampleKey, float] = {}
    kinds = {**{k: KindSnapshot(0, 0) for k in _recorded_kinds(settings.metrics_path)}, **kinds}
    for kind, seen in kinds.items():
        updates[key("chatbot_backup_count", kind=kind)] = seen.count
        updates[key("chatbot_backup_sum", kind=kind)] = seen.total_bytes
        if seen.newest_timestamp is not None:
            updates[key("chatbot_last_backup_timestamp_seconds", kind=kind)] = seen.newest_timestamp
        if seen.newest_size is not None:
            updates[key("chatbot_last_backup_size_bytes", kind=kind)] = seen.newest_size
        if seen.damaged:
            updates[key("chatbot_backup_status", kind=kind)] = 0
        elif seen.newest_timestamp is not None:
            defaults[key("chatbot_backup_status", kind=kind)] = 1
    return publish(settings, updates, defaults)


def _recorded_kinds(path: Path) -> set[str]:
    """Kinds the file already counts: when their backups vanish, their count drops to 0."""
    try:
        samples = read_metrics_file(path)
    except OSError:
        return set()
    return {
        dict(labels).get("kind", "")
        for name, labels in samples
        if name == "chatbot_backup_count" and dict(labels).get("kind")
    }
