"""Restores from the Prefect UI: the real `chatbot-backup serve` registers the on-demand
deployments; runs are started and resumed through the Prefect API exactly as the UI's
"Run" and "Resume" forms do, and the live database is checked after each answer.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from deployments.tiers import ON_DEMAND_NAMES
from tests.conftest import BIN, Platform, sqlite_dump
from tests.support.services import HttpReceiver, http_receiver
from tests.test_db_restore import change_sqlite, make_backup
from tests.test_restore_deployment import _description, _wait_for_no_children, _wait_for_state

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as service:
        yield service


@pytest.fixture
def served(
    sqlite_platform: Platform, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[subprocess.Popen[bytes]]:
    sqlite_platform.set(monkeypatch, ALERT_WEBHOOK=receiver.url + "/hook")
    env = {**os.environ, **sqlite_platform.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log_path = sqlite_platform.root.parent / "serve.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [str(BIN / "chatbot-backup"), "serve"],
        cwd=sqlite_platform.root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_deployments(process, log_path)
        yield process
    finally:
        _wait_for_no_children(process.pid)
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_for_deployments(process: subprocess.Popen[bytes], log: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 180
    with get_client(sync_client=True) as client:
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                for name in ON_DEMAND_NAMES:
                    client.read_deployment_by_name(name)
                time.sleep(3)  # the runner starts polling once every deployment is applied
                return
            except ObjectNotFound:
                assert time.monotonic() < deadline, "the on-demand deployments never appeared"
                time.sleep(0.5)


def _logs(run_id: UUID) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return "\n".join(log.message for log in logs)


def _wait_for_log(run_id: UUID, text: str, timeout: float = 30) -> str:
    """The run's log once it holds `text` (the runner ships logs in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        log = _logs(run_id)
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.5)


def _start(name: str, **parameters: Any) -> UUID:
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters=parameters, timeout=0)
    return run.id  # type: ignore[union-attr]


def test_on_demand_restore_from_the_ui(
    sqlite_platform: Platform, receiver: HttpReceiver, served: subprocess.Popen[bytes]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    # Every on-demand deployment is there, with no schedule; the restore forms start
    # with the latest backup.
    with get_client(sync_client=True) as client:
        for name in ON_DEMAND_NAMES:
            deployment = client.read_deployment_by_name(name)
            assert deployment.schedules == [], name
            assert "on-demand" in deployment.tags
        for name in ("db-restore/on-demand", "restore-all/on-demand", "test-restore/on-demand"):
            deployment = client.read_deployment_by_name(name)
            assert deployment.parameters == {"backup_file": "latest"}
            schema = deployment.parameter_openapi_schema["properties"]
            assert schema["backup_file"]["default"] == "latest"

    db_path = sqlite_platform.db_path
    make_backup(sqlite_platform)
    backed_up = sqlite_dump(db_path)
    change_sqlite(db_path)
    changed = sqlite_dump(db_path)

    # The operator says no: Cancelled, nothing changed, no failure alert.
    refused = _start("db-restore/on-demand")  # the form as it opens: backup_file=latest
    assert _wait_for_state(refused, {"PAUSED", "FAILED", "COMPLETED", "CRASHED"}) == "PAUSED"
    log = _wait_for_log(refused, "waiting for the operator's confirmation")
    assert "waiting for the operator's confirmation" in log and "Resume" in log, log
    assert "chose admin_sqlite_" in log, log
    assert "OVERWRITE the current database" in _description(refused)
    resume_flow_run(refused, run_input={"confirm": False})
    final = _wait_for_state(refused, {"CANCELLED", "FAILED", "COMPLETED", "CRASHED"})
    assert final == "CANCELLED"
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(refused).state
    assert state is not None and "did not confirm" in str(state.message)
    # Not Failed with our traceback: the only traceback in the log is Prefect's own note
    # that the run ended Cancelled (its engine logs any non-Completed returned state).
    log = _logs(refused)
    assert "DeclinedInUI" not in log and "AbortedByOperator" not in log, log
    assert "Traceback" not in log or "CancelledRun" in log, log
    assert sqlite_dump(db_path) == changed
    assert not list(db_path.parent.glob("admin.db.before_restore.*"))
    time.sleep(2)
    assert receiver.requests == []  # no failure alert went out

    # The operator confirms: Completed, the database is the backup's.
    confirmed = _start("db-restore/on-demand")
    assert _wait_for_state(confirmed, {"PAUSED", "FAILED", "COMPLETED", "CRASHED"}) == "PAUSED"
    assert sqlite_dump(db_path) == changed  # nothing happens while it waits
    resume_flow_run(confirmed, run_input={"confirm": True})
    assert (
        _wait_for_state(confirmed, {"FAILED", "COMPLETED", "CRASHED", "CANCELLED"}) == "COMPLETED"
    )
    assert sqlite_dump(db_path) == backed_up
    assert receiver.requests == []
