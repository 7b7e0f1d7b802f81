"""Run summaries: a table artifact in the Prefect UI, and the same rows for the terminal."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext

from tasks.core.redact import redact
from tasks.stream.progress import Meter, metering
from tasks.stream.progress import current as _current_meter

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("chatbot_backup")


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def publish_table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """A table artifact for the current flow run; nothing outside a run."""
    if FlowRunContext.get() is None:
        return
    clean = [{k: redact(str(v)) for k, v in row.items()} for row in rows]
    create_table_artifact(key=key, table=clean, description=redact(description))


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # outside a run context
        return log


def with_progress(job: str) -> Callable[[F], F]:
    """Under `@flow`: the run's bytes and rate on a terminal (stderr a TTY only) and as a
    Prefect progress artifact `<job>-progress` (tasks/stream/progress.py)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with metering(Meter(job, on_update=_progress_artifact(job))):
                result = fn(*args, **kwargs)
                current = _current_meter()
                if current is not None:
                    current.finish()
                return result

        return run  # type: ignore[return-value]

    return decorate


def _progress_artifact(job: str) -> Callable[[float, str], None] | None:
    if FlowRunContext.get() is None:
        return None
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    made: list[Any] = []

    def update(percent: float, text: str) -> None:
        if not made:
            made.append(
                create_progress_artifact(
                    progress=percent, key=f"{job}-progress", description=redact(text)
                )
            )
        else:
            update_progress_artifact(made[0], progress=percent, description=redact(text))

    return update
