"""Failure notifications: what every flow's on_failure / on_crashed hook sends.

`flows.hooks` calls `notify_flow_failure(job, message)` when a run fails or crashes. It
alerts every configured channel (naming the job, the phase that failed and the error,
all redacted) and records the failure in the metrics file. It never raises: a broken
alert channel must not mask the failure it reports.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.core.redact import redact
from tasks.monitor.alerts import Alert, send_alert
from tasks.monitor.metrics import record_backup_failure, record_job_failure

log = logging.getLogger("chatbot_backup")

BACKUP_KIND = {"db-backup": "db", "backup-all": "full"}

# When no task failed, the error's type says which phase of the run went wrong.
_PHASE_BY_ERROR = {
    "ConfigError": "configuration",
    "SourceError": "reading the data",
    "LockError": "locking the backup folder",
    "VerifyError": "verification",
    "RestoreError": "restore",
    "AbortedByOperator": "confirmation",
    "DestinationError": "writing to the destination",
}


def _settings() -> Any:
    """The settings, or — when they are the very thing that is broken — a copy that
    overrides the fields the alert does not need, so the alert still goes out."""
    from pydantic import ValidationError

    from tasks.core.settings import Settings, application_root, load_settings

    try:
        return load_settings()
    except Exception:
        pass
    try:  # overlapping folders (tasks.core.folder_rules) do not stop an alert about them
        return load_settings(check_folders=False)
    except Exception:
        pass
    # Replace each invalid field by its default (the alert fields themselves included:
    # a bad ALERT_TIMEOUT must not silence the alert), then load as usual so that the
    # secrets are registered for redaction.
    overrides: dict[str, object] = {"admin_db_type": "sqlite"}
    env_file = application_root() / ".env"
    for _ in range(len(Settings.model_fields)):
        try:
            Settings(
                _env_file=env_file if env_file.is_file() else None,  # type: ignore[call-arg]
                app_root=application_root(),
                **overrides,  # type: ignore[arg-type]
            )
            break
        except ValidationError as exc:
            names = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
            fresh = {
                n: Settings.model_fields[n].default for n in names if n in Settings.model_fields
            }
            if not fresh or all(n in overrides for n in fresh):
                raise
            overrides.update(fresh)
    return load_settings(check_folders=False, **overrides)


def failed_task_names() -> list[str]:
    """Names of the failed task runs of the current flow run, when Prefect can tell us."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[context.flow_run.id])),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(
                    type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
                )
            ),
        )
    # "dump-database-3f2" -> "dump-database"
    return [run.name.rsplit("-", 1)[0] if "-" in run.name else run.name for run in runs]


def failure_phase(message: str) -> str:
    """The phase of the run that failed: the failed task, else the error's domain."""
    try:
        tasks = failed_task_names()
    except Exception:  # the server may be the thing that is down
        tasks = []
    if tasks:
        return ", ".join(dict.fromkeys(tasks))
    error_type = message.split(":", 1)[0].strip()
    return _PHASE_BY_ERROR.get(error_type, "flow run")


def notify_flow_failure(job_name: str, message: str, phase: str | None = None) -> None:
    """Alert and record a failed or crashed run of `job_name`. Never raises. `phase`,
    when the caller knows it (the CLI's settings check), spares asking Prefect."""
    try:
        settings = _settings()
    except Exception as exc:
        log.error(
            "failure alert for %s not sent: settings unreadable (%s)", job_name, redact(str(exc))
        )
        return
    message = redact(message)
    try:
        phase = phase or failure_phase(message)
        alert = Alert(
            status="failed",
            job=job_name,
            message=f"{job_name} failed during {phase}: {message}",
            checks=[{"name": phase, "severity": "critical", "reason": message}],
        )
        for outcome in send_alert(settings, alert):
            if not outcome.delivered:
                log.error("failure alert via %s not delivered: %s", outcome.channel, outcome.detail)
    except Exception as exc:
        log.error(
            "failure alert for %s not sent: %s", job_name, redact(f"{type(exc).__name__}: {exc}")
        )
    try:
        from tasks.core.folder_rules import folder_problem

        if folder_problem(settings) is not None:
            # The metrics file would land in a folder that is backed up: the alert says why.
            log.error("failure metrics for %s not recorded: the folders overlap", job_name)
            return
        kind = BACKUP_KIND.get(job_name)
        if kind is not None:
            record_backup_failure(settings, kind)
        else:
            record_job_failure(settings, job_name)
    except Exception as exc:
        log.error("failure metrics for %s not recorded: %s", job_name, redact(str(exc)))
