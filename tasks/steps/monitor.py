"""Prefect `@task` wrappers for monitoring, alerts and metrics, and the deployment check.

The deployment check is the one monitoring step that talks to Prefect itself, so it
lives here beside the wrappers rather than in the plain `tasks.monitor.checks`. Every
task here has side effects or reads live state, hence `cache_policy=NO_CACHE`; none is
retried by Prefect, because alerts and pushes retry on their own and a repeated
integrity check would only read the same bytes again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.catalog.records import list_backups
from tasks.core.redact import redact
from tasks.monitor.alerts import Alert, ChannelResult, send_alert
from tasks.monitor.checks import SCHEDULED_DEPLOYMENTS, Inspection, Thresholds, inspect_backups
from tasks.monitor.exposition import read_metrics_file
from tasks.monitor.host_checks import deployments_finding, unset_offsite_finding
from tasks.monitor.metrics import KindSnapshot, record_backup_success, record_monitor_run
from tasks.monitor.proof_checks import check_restore_proofs
from tasks.pitr.monitor_checks import PitrInspection, inspect_pitr
from tasks.verify.finding import Finding, Severity


@task(name="inspect-backups", cache_policy=NO_CACHE)
def inspect_backup_folder(settings: Any, now: datetime) -> Inspection:
    return inspect_backups(settings.backups, Thresholds.from_settings(settings), now)


def prefect_api_url() -> str | None:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def deployment_states(names: tuple[str, ...] = SCHEDULED_DEPLOYMENTS) -> dict[str, str]:
    """Each deployment's state on the Prefect server: active, paused or missing."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    states: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                deployment = client.read_deployment_by_name(name)
            except ObjectNotFound:
                states[name] = "missing"
                continue
            schedules = list(getattr(deployment, "schedules", None) or [])
            inactive = bool(schedules) and not any(getattr(s, "active", True) for s in schedules)
            states[name] = "paused" if deployment.paused or inactive else "active"
    return states


@task(name="check-restore-proofs", cache_policy=NO_CACHE)
def check_restore_proof(settings: Any, inspection: Inspection) -> Finding:
    """The last test-restore of each kind, as the metrics file recorded it, judged against
    the backups in BACKUP_DIR (the newest good one of each kind, and the names of all):
    a failed proof of an older backup, or of one since rotated, does not make the newest
    critical."""
    present: dict[str, set[float]] = {}
    for backup in list_backups(settings.backups, judge=False):  # names only
        present.setdefault(backup.kind, set()).add(backup.created_at.timestamp())
    newest = {kind: b.created_at.timestamp() for kind, b in inspection.latest.items()}
    return check_restore_proofs(read_metrics_file(settings.metrics_path), newest, present)


@task(name="check-pitr", cache_policy=NO_CACHE)
def check_pitr(settings: Any, now: datetime) -> PitrInspection:
    """pg_stat_archiver, the WAL archive's continuity, the base backups (PITR_ENABLED)."""
    return inspect_pitr(settings, now)


@task(name="check-deployments", cache_policy=NO_CACHE)
def check_deployments(
    enabled: bool = True, names: tuple[str, ...] = SCHEDULED_DEPLOYMENTS
) -> Finding:
    """SPEC: the scheduled deployments are present and not paused (only with a server)."""
    if not enabled:
        return Finding("deployments", "ok", "not checked: MONITOR_CHECK_DEPLOYMENTS is off")
    if prefect_api_url() is None:
        return Finding("deployments", "ok", "not checked: PREFECT_API_URL is not set")
    try:
        return deployments_finding(deployment_states(names))
    except Exception as exc:  # an unreachable server is a finding, not a crash
        return Finding(
            "deployments",
            "warning",
            redact(f"cannot read deployments from the Prefect server ({type(exc).__name__})"),
        )


@task(name="check-offsite-copies", cache_policy=NO_CACHE)
def check_offsite_copies(settings: Any, now: datetime) -> Finding:
    """Each off-site destination: newest copy within its tier's age, last verification passed."""
    from tasks.core.errors import BackupError
    from tasks.offsite.health import Judgment, judge_destination
    from tasks.storage.destination import open_destinations

    if not settings.offsite_destination:
        return _unset_offsite(settings)
    judgments: list[Judgment] = []
    destinations = open_destinations(settings)
    for dest in destinations:
        try:
            judgments += judge_destination(dest, now)
        except BackupError as exc:
            judgments.append(Judgment("warning", redact(f"{dest.display}: {exc}")))
        except Exception as exc:  # an unreachable destination is a finding, not a crash
            judgments.append(
                Judgment(
                    "warning", redact(f"{dest.display}: cannot be read ({type(exc).__name__})")
                )
            )
    if not judgments:
        return Finding(
            "offsite", "ok", f"{len(destinations)} destination(s): recent copies, verified"
        )
    severity: Severity = (
        "critical" if any(j.severity == "critical" for j in judgments) else "warning"
    )
    return Finding("offsite", severity, "; ".join(j.reason for j in judgments))


def _unset_offsite(settings: Any) -> Finding:
    """No destination: a warning when the Prefect server has an off-site tier scheduled.

    Read under the same conditions as the deployments check (MONITOR_CHECK_DEPLOYMENTS,
    PREFECT_API_URL); only the off-site tiers' deployments, a few small reads.
    """
    from tasks.core.tiers import active_tiers

    tiers = {t.full_name: t.name for t in active_tiers(settings.pitr_enabled) if t.offsite}
    if not (tiers and settings.monitor_check_deployments and prefect_api_url()):
        return unset_offsite_finding({}, tiers)
    try:
        states = deployment_states(tuple(tiers))
    except Exception as exc:  # an unreachable server is the deployments check's finding
        return Finding(
            "offsite",
            "ok",
            redact(
                "not checked: OFFSITE_DESTINATION is not set (scheduled off-site tiers "
                f"unknown: {type(exc).__name__})"
            ),
        )
    return unset_offsite_finding(states, tiers)


@task(name="send-alert", cache_policy=NO_CACHE)
def send_alert_task(settings: Any, alert: Alert) -> list[ChannelResult]:
    return send_alert(settings, alert)


@task(name="record-monitor-metrics", cache_policy=NO_CACHE)
def record_monitor_metrics(
    settings: Any, inspection: Inspection, status_code: int, pitr: PitrInspection | None = None
) -> bool:
    kinds = {
        kind: KindSnapshot(
            count=count,
            total_bytes=inspection.total_bytes.get(kind, 0),
            newest_timestamp=(
                inspection.latest[kind].created_at.timestamp()
                if kind in inspection.latest
                else None
            ),
            newest_size=inspection.latest[kind].size if kind in inspection.latest else None,
            damaged=kind in inspection.damaged,
        )
        for kind, count in inspection.counts.items()
    }
    wal_last = None
    if pitr is not None:
        newest = max(pitr.bases, key=lambda b: b.end_time, default=None)
        kinds["base"] = KindSnapshot(
            count=len(pitr.bases),
            total_bytes=sum(b.size for b in pitr.bases),
            newest_timestamp=newest.end_time.timestamp() if newest else None,
            newest_size=newest.size if newest else None,
        )
        if pitr.last_archived_at is not None:
            wal_last = pitr.last_archived_at.timestamp()
    return record_monitor_run(settings, kinds, status_code, wal_last_archived=wal_last)


@task(name="record-backup-metrics", cache_policy=NO_CACHE)
def record_backup_metrics(
    settings: Any, kind: str, path: Any, size: int, seconds: float, count: int | None = None
) -> bool:
    """Success metrics of a backup run; never fails the run (see tasks.monitor.metrics)."""
    return record_backup_success(settings, kind, path, size, seconds, count)
