"""A restore started from a deployment (as from the Prefect UI) pauses for the operator.

The flow is served as a real deployment by a `serve` process against the session's
Prefect test server; runs are started with `run_deployment` and resumed with the
confirmation input, exactly as the UI's "Resume" form does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from tests.conftest import Platform, sqlite_dump
from tests.test_db_restore import change_sqlite, make_backup, tree_state

DEPLOYMENT = "db-restore/operator"
SERVE = (
    "from prefect import serve\n"
    "from flows import db_restore\n"
    "serve(db_restore.to_deployment(name='operator'), print_starting_message=False)\n"
)


@pytest.fixture
def served(sqlite_platform: Platform) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **sqlite_platform.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = open(sqlite_platform.root.parent / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_deployment(process, sqlite_platform.root.parent / "serve.log")
        yield process
    finally:
        _wait_for_no_children(process.pid)  # SIGTERM would mark a finished run Cancelled
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_for_deployment(process: subprocess.Popen[bytes], log: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                client.read_deployment_by_name(DEPLOYMENT)
                return
            except ObjectNotFound:
                assert time.monotonic() < deadline, "the deployment never appeared"
                time.sleep(0.5)


def _wait_for_no_children(pid: int, timeout: float = 30) -> None:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not children.read_text().strip():
                return
        except OSError:
            return
        time.sleep(0.2)


def _wait_for_state(run_id: UUID, wanted: set[str], timeout: float = 120) -> str:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            state = run.state.type.value if run.state else "NONE"
            if state in wanted:
                return state
            assert time.monotonic() < deadline, f"run stuck in {state}"
            time.sleep(0.5)


def _start(artifact: Path) -> UUID:
    from prefect.deployments import run_deployment

    run = run_deployment(DEPLOYMENT, parameters={"backup_file": artifact.name}, timeout=0)
    return run.id  # type: ignore[union-attr]


def _description(run_id: UUID) -> str:
    """What the UI shows above the resume form."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        inputs = client.filter_flow_run_input(
            flow_run_id=run_id, key_prefix="paused-", limit=10, exclude_keys=set()
        )
    return " ".join(str(i.value) for i in inputs if i.key.endswith("-description"))


def test_served_restore_pauses_for_the_operator(
    sqlite_platform: Platform, served: subprocess.Popen[bytes]
) -> None:
    from prefect.artifacts import Artifact
    from prefect.flow_runs import resume_flow_run

    db_path = sqlite_platform.db_path
    artifact = make_backup(sqlite_platform)
    backed_up = sqlite_dump(db_path)
    change_sqlite(db_path)
    changed = sqlite_dump(db_path)

    # The operator says no: the run ends Cancelled and nothing changes.
    refused = _start(artifact)
    assert _wait_for_state(refused, {"PAUSED", "FAILED", "COMPLETED"}) == "PAUSED"
    assert "OVERWRITE the current database" in _description(refused)
    before = tree_state(sqlite_platform.root, sqlite_platform.backups)
    resume_flow_run(refused, run_input={"confirm": False})
    assert _wait_for_state(refused, {"FAILED", "COMPLETED", "CRASHED", "CANCELLED"}) == "CANCELLED"
    assert tree_state(sqlite_platform.root, sqlite_platform.backups) == before

    # The operator confirms: the run resumes and restores.
    confirmed = _start(artifact)
    assert _wait_for_state(confirmed, {"PAUSED", "FAILED", "COMPLETED"}) == "PAUSED"
    assert sqlite_dump(db_path) == changed  # nothing happens while it waits
    resume_flow_run(confirmed, run_input={"confirm": True})
    assert _wait_for_state(confirmed, {"FAILED", "COMPLETED", "CRASHED"}) == "COMPLETED"
    assert sqlite_dump(db_path) == backed_up
    summary = Artifact.get("db-restore-summary")
    assert summary is not None and "operator, in the Prefect UI" in str(summary.data)
    snapshots = list(db_path.parent.glob("admin.db.before_restore.*"))
    assert len(snapshots) == 1 and sqlite_dump(snapshots[0]) == changed
