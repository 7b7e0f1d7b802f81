"""Asking before a restore overwrites anything: at the terminal, in the UI, or from Python.

The CLI prints the guide's warning and reads one answer from stdin before it calls a
restore flow. From Python, `confirm=True` is the answer. A run started from a Prefect
deployment (the UI) with `confirm=False` pauses and waits for the operator to resume it
with `confirm: true`; a plain Python call never waits for a UI that may not exist.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TextIO, TypeVar, cast

from prefect.context import FlowRunContext
from prefect.input import RunInput
from pydantic import Field

from tasks.core.errors import AbortedByOperator

# The guide's words, exactly (seed/backup-restore-guide.md, "Interactive Confirmation").
WARNING = "⚠️  WARNING: This will OVERWRITE the current database!"
QUESTION = "Are you sure you want to continue? (yes/no): "
FULL_RESTORE_NOTE = "Uploaded files, configuration files and application data will be replaced too."

P = ParamSpec("P")
R = TypeVar("R")

# How long a paused deployment run waits for the operator, and how often it looks.
CONFIRM_TIMEOUT_SECONDS = 3600
CONFIRM_POLL_SECONDS = 2


class RestoreConfirmation(RunInput):
    """The form the Prefect UI shows when a restore run pauses."""

    confirm: bool = Field(
        default=False,
        description="Tick to overwrite the live data with this backup. Leave unticked to abort.",
    )


def is_yes(answer: str) -> bool:
    """`yes` in any case, surrounding blanks ignored; anything else is a no."""
    return answer.strip().lower() == "yes"


def ask_operator(full: bool, stdin: TextIO | None = None, stdout: TextIO | None = None) -> bool:
    """Print the guide's warning, read one line; True only for `yes`. End of input is a no."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    lines = [WARNING] + ([FULL_RESTORE_NOTE] if full else []) + [""]
    stdout.write("\n".join(lines) + "\n" + QUESTION)
    stdout.flush()
    try:
        answer = stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):
        stdout.write("\n")  # keep the next line off the prompt's line
        stdout.flush()
    return is_yes(answer)


def started_by_deployment() -> bool:
    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


class DeclinedInUI(AbortedByOperator):
    """The operator resumed a paused deployment run without confirming (or never came):
    the run ends Cancelled, not Failed, and no failure alert goes out."""


def cancel_when_declined(function: Callable[P, R]) -> Callable[P, R]:
    """Wrap a flow function: a `DeclinedInUI` ends its run Cancelled with the reason.

    A flow that returns a Prefect state ends in that state; Cancelled runs no failure
    hook (`flows.hooks`), so nothing alerts. Outside a deployment nothing changes.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except DeclinedInUI as exc:
            from prefect.states import Cancelled

            from flows.reporting import run_logger

            run_logger().warning(str(exc))
            return cast(R, Cancelled(message=str(exc)))

    return wrapper


def wait_for_operator(form: Any, job: str, nothing: str = "nothing was changed") -> Any:
    """Pause this deployment run until the operator answers `form`; the answer.

    The run's log says what it waits for and how to give it. No answer within
    CONFIRM_TIMEOUT_SECONDS, or an answer without `confirm`, raises DeclinedInUI.
    """
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from flows.reporting import run_logger

    context = FlowRunContext.get()
    run_id = context.flow_run.id if context and context.flow_run else "<this run>"
    run_logger().warning(
        "%s is waiting for the operator's confirmation (up to %d minutes). In the Prefect UI "
        "open this flow run and press Resume, tick `confirm` and submit to go ahead; submit "
        "without it to abort (the run ends Cancelled, %s). From Python: "
        "prefect.flow_runs.resume_flow_run('%s', run_input={'confirm': True}).",
        job,
        CONFIRM_TIMEOUT_SECONDS // 60,
        nothing,
        run_id,
    )
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=CONFIRM_TIMEOUT_SECONDS, poll_interval=CONFIRM_POLL_SECONDS
        )
    except FlowPauseTimeout:
        raise DeclinedInUI(
            f"{job} aborted: no confirmation within {CONFIRM_TIMEOUT_SECONDS} s, {nothing}"
        ) from None
    if not getattr(answer, "confirm", False):
        raise DeclinedInUI(f"{job} aborted: the operator did not confirm, {nothing}")
    return answer


def not_confirmed(job: str) -> AbortedByOperator:
    return AbortedByOperator(
        f"{job} aborted: not confirmed, nothing was changed "
        "(answer yes, pass --yes, or call it with confirm=True)"
    )


def require_confirmation(confirm: bool, job: str, backup: str, full: bool) -> str:
    """How the restore was confirmed; AbortedByOperator when it was not.

    In a deployment run this pauses (up to CONFIRM_TIMEOUT_SECONDS) for the operator.
    """
    if confirm:
        return "confirm=True"
    if not started_by_deployment():
        raise not_confirmed(job)
    description = "\n\n".join(
        [
            f"**{WARNING}**",
            *([FULL_RESTORE_NOTE] if full else []),
            f"`{job}` is about to restore **{backup}**. A pre-restore snapshot of the "
            "current database is written first.",
            "Tick **confirm** and resume to continue; resume without it to abort.",
        ]
    )
    form = RestoreConfirmation.with_initial_data(description=description, confirm=False)
    wait_for_operator(form, job)
    return "operator, in the Prefect UI"
