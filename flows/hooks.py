"""State hooks shared by every flow: what happens when a run fails or crashes."""

from __future__ import annotations

import logging
from typing import Any

from tasks.core.redact import redact
from tasks.core.settings import add_secret_source

log = logging.getLogger("chatbot_backup")


def _from_secret_blocks(fields: list[str]) -> dict[str, str]:
    """Credentials from Prefect Secret blocks (flows/secret_blocks.py, imported on use)."""
    from flows.secret_blocks import from_secret_blocks

    return from_secret_blocks(fields)


# Every flow imports this module: their settings may come from Secret blocks too (the
# environment wins).
add_secret_source(_from_secret_blocks)


def failure_message(state: Any) -> str:
    """The one-line reason of a failed state, without secrets."""
    try:
        state.result()
    except BaseException as exc:  # the failure we are reporting
        return redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
    return redact(str(getattr(state, "message", "") or "failed"))


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Record a failed or crashed run (alerts and metrics: `flows.notify`)."""
    message = failure_message(state)
    log.error("%s failed: %s", getattr(flow, "name", "flow"), message)
    from flows.events import emit_job_event

    emit_job_event(getattr(flow, "name", "flow"), False, flow_run, message=message)
    try:
        from flows.notify import notify_flow_failure
    except ImportError:  # notifications not installed in this build
        return
    notify_flow_failure(getattr(flow, "name", "flow"), message)


def on_flow_completion(flow: Any, flow_run: Any, state: Any) -> None:
    """Emit `chatbot-backup.<job>.completed` (or `.failed` when a restore proof failed)."""
    from flows.events import emit_job_event

    try:
        result = state.result(raise_on_failure=False)
    except Exception:  # a result that cannot be read still ends in an event
        result = None
    passed = getattr(result, "passed", None)
    ok = passed if isinstance(passed, bool) else True
    emit_job_event(getattr(flow, "name", "flow"), ok, flow_run, result=result)


FAILURE_HOOKS: dict[str, list[Any]] = {
    "on_failure": [on_flow_failure],
    "on_crashed": [on_flow_failure],
    "on_completion": [on_flow_completion],
}
"""Every flow's state hooks: failure alerts and the end-of-job Prefect event."""
