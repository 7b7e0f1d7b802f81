"""Prefect events: every job says when it ends (SPEC.md "Prefect events").

`chatbot-backup.<job>.completed` or `chatbot-backup.<job>.failed`, about the resource
`chatbot-backup.<host>`, related to the flow run (and its deployment), with a payload of
kind, tier, file, size, sha256 and duration. Every text is redacted first: no secret ever
reaches an event. The automations (`flows.automations`) are built on these names and on
the resource's labels (`chatbot-backup.scheduled` tells a tier deployment's run from a
CLI run). Emitting never raises: an event is a report about the run, not part of it.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import asdict, is_dataclass
from typing import Any

from tasks.core.redact import redact

log = logging.getLogger("chatbot_backup")

PREFIX = "chatbot-backup"
BACKUP_JOBS = {"db-backup": "db", "backup-all": "full", "base-backup": "base"}
PAYLOAD_KEYS = ("kind", "tier", "file", "size", "sha256", "duration")


def event_name(job: str, ok: bool) -> str:
    return f"{PREFIX}.{job}.{'completed' if ok else 'failed'}"


def resource_id(host: str | None = None) -> str:
    return f"{PREFIX}.{host or socket.gethostname()}"


def _field(result: Any, *names: str) -> Any:
    for name in names:
        if isinstance(result, dict) and result.get(name) is not None:
            return result[name]
        value = getattr(result, name, None)
        if value is not None:
            return value
    return None


def job_payload(
    job: str, result: Any, parameters: dict[str, Any], duration: float | None
) -> dict[str, Any]:
    """What the event says about the run: kind, tier, file, size, sha256, duration.

    Taken from the flow's typed result when there is one (a completed run), else from
    its parameters (a failed run). Never a secret: strings are redacted.
    """
    if result is not None and is_dataclass(result) and not isinstance(result, type):
        values: Any = asdict(result)
    else:
        values = result if isinstance(result, dict) else {}
    tier = _field(values, "tier") or parameters.get("tier")
    file = _field(values, "path", "backup_file", "file") or parameters.get("backup_file")
    seconds = _field(values, "seconds")
    payload: dict[str, Any] = {
        "kind": BACKUP_JOBS.get(job) or _field(values, "kind"),
        "tier": tier,
        "file": file,
        "size": _field(values, "size"),
        "sha256": _field(values, "sha256"),
        "duration": round(float(seconds if seconds is not None else duration or 0.0), 3),
    }
    passed = getattr(result, "passed", None)
    if isinstance(passed, bool):  # test-restore, offsite-verify: the verdict
        payload["passed"] = passed
    return {k: redact(v) if isinstance(v, str) else v for k, v in payload.items()}


def _run_duration(flow_run: Any) -> float | None:
    total = getattr(flow_run, "total_run_time", None)
    if total is not None and total.total_seconds() > 0:
        return float(total.total_seconds())
    start = getattr(flow_run, "start_time", None)
    if start is None:
        return None
    from datetime import UTC, datetime

    return max(0.0, (datetime.now(UTC) - start).total_seconds())


def emit_job_event(
    job: str, ok: bool, flow_run: Any, result: Any = None, message: str | None = None
) -> Any:
    """Emit the job's end event; returns the event (None when Prefect sends none)."""
    try:
        from prefect.events import emit_event

        parameters = dict(getattr(flow_run, "parameters", None) or {})
        payload = job_payload(job, result, parameters, _run_duration(flow_run))
        if message is not None:
            payload["message"] = redact(message)
        host = socket.gethostname()
        deployment_id = getattr(flow_run, "deployment_id", None)
        resource = {
            "prefect.resource.id": resource_id(host),
            "prefect.resource.name": redact(host),
            f"{PREFIX}.job": job,
            f"{PREFIX}.kind": str(payload.get("kind") or ""),
            f"{PREFIX}.tier": str(payload.get("tier") or ""),
            # A run of a tier deployment (the schedules), not one started by hand.
            f"{PREFIX}.scheduled": "true" if deployment_id and payload.get("tier") else "false",
        }
        related = []
        if flow_run is not None and getattr(flow_run, "id", None):
            related.append(
                {
                    "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                    "prefect.resource.role": "flow-run",
                    "prefect.resource.name": str(getattr(flow_run, "name", "")),
                }
            )
        if deployment_id:
            related.append(
                {
                    "prefect.resource.id": f"prefect.deployment.{deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            )
        return emit_event(event_name(job, ok), resource=resource, related=related, payload=payload)
    except Exception as exc:  # the run's outcome stands whatever happens here
        log.warning("event for %s not emitted: %s", job, redact(f"{type(exc).__name__}: {exc}"))
        return None
