"""Issue 23: automations over the jobs' events, on a real Prefect server with `serve`.

One `chatbot-backup serve` process (the real command) registers the deployments, the
notification blocks and the automations; the tests then drive it through the API:
`automations` twice -> one set; the proactive automation fires when the window passes
(no db backup within MONITOR_MAX_AGE_HOURS=0.003 h, ~11 s) and its webhook notification
arrives; a run of the scheduled `backup-all/daily` tier is followed by a
`test-restore/on-demand` run on that file whose verdict is in its event; no secret in any
event, block document, automation or artifact.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from tests.conftest import BIN, Platform
from tests.support.prefect_api import read_events, related_flow_run, wait_for

pytestmark = pytest.mark.slow

HOOK_SECRET = "HookT0kenSecretAbc"
SLACK_SECRET = "SlackT0kenSecretXyz"
PREFIX = "chatbot-backup: "


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Hook.received.append({"path": self.path, "body": json.loads(body or b"{}")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook/{HOOK_SECRET}"
    finally:
        server.shutdown()


@pytest.fixture
def served(sqlite_platform: Platform, hook: str) -> Iterator[Platform]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    platform = sqlite_platform
    platform.env.update(
        {
            "ALERT_WEBHOOK": hook,
            # Slack's own URL: the block is saved (its URL a secret) but never called here.
            "ALERT_SLACK_WEBHOOK": f"https://hooks.slack.com/services/T0/B0/{SLACK_SECRET}",
            "MONITOR_MAX_AGE_HOURS": "0.003",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
    )
    log_path = platform.root.parent / "serve.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [str(BIN / "chatbot-backup"), "serve"],
        cwd=platform.root,
        env={**os.environ, **platform.env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
        with get_client(sync_client=True) as client:
            try:
                client.read_deployment_by_name("test-restore/on-demand")
            except ObjectNotFound:
                return False
            return len(_ours(client)) == 3

    try:
        wait_for(ready, timeout=180, what="serve's deployments and automations")
        yield platform
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ours(client: Any) -> list[Any]:
    return [a for a in client.read_automations() if a.name.startswith(PREFIX)]


def _run_of(client: Any, deployment: str, **parameters: object) -> Any:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    flow, name = deployment.split("/")
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
    )
    return [
        r
        for r in runs
        if all(r.parameters.get(k) == v for k, v in parameters.items())
        and (r.created_by is not None and r.created_by.type == "AUTOMATION")
    ]


def test_automations_fire_and_prove_every_scheduled_backup(served: Platform) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    platform = served
    # Someone else's automation is never touched.
    from prefect.events.actions import DoNothing
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    with get_client(sync_client=True) as client:
        other = client.create_automation(
            AutomationCore(
                name="someone else's",
                trigger=EventTrigger(expect={"x.y"}, threshold=1),
                actions=[DoNothing()],
            )
        )
    # Twice more by hand: still one set of three, updated in place.
    for _ in range(2):
        done = platform.run("automations")
        assert done.returncode == 0, done.stderr
        assert "updated: chatbot-backup: restore proof" in done.stdout
    with get_client(sync_client=True) as client:
        automations = _ours(client)
        assert sorted(a.name for a in automations) == sorted({a.name for a in automations}), (
            "duplicates"
        )
        assert len(automations) == 3
        assert client.read_automation(other) is not None
        # An operator pauses one: applying again keeps it paused.
        (full,) = [a for a in automations if "no full backup" in a.name]
        client.pause_automation(full.id)
    again = platform.run("automations")
    assert again.returncode == 0, again.stderr
    assert f"still paused (resume in the UI): {full.name}" in again.stdout
    with get_client(sync_client=True) as client:
        assert client.read_automation(full.id).enabled is False
        assert len(_ours(client)) == 3

    # Proactive: no db backup within ~11 s -> monitor-backups run by the automation, and
    # the webhook block's notification reaches the webhook.
    def monitor_runs() -> list[Any]:
        with get_client(sync_client=True) as client:
            return _run_of(client, "monitor-backups/hourly")

    wait_for(monitor_runs, timeout=120, what="the proactive automation's monitor run")
    wait_for(
        lambda: [h for h in _Hook.received if "no db backup" in json.dumps(h["body"])],
        timeout=60,
        what="the proactive automation's webhook notification",
    )

    # Reactive: a run of the scheduled daily tier, then its restore proof on that file.
    backup = run_deployment("backup-all/daily", timeout=240)
    assert backup.state is not None and backup.state.is_completed(), backup.state
    (archive,) = platform.backup_files("full_backup_*.tar.gz")

    def proof() -> list[Any]:
        with get_client(sync_client=True) as client:
            return [
                r
                for r in _run_of(client, "test-restore/on-demand", backup_file=str(archive))
                if r.state is not None and r.state.is_final()
            ]

    (restore_run,) = wait_for(proof, timeout=240, what="the test-restore run on the new backup")
    assert restore_run.state.is_completed()

    def verdicts() -> list[Any]:
        names = ["chatbot-backup.test-restore.completed", "chatbot-backup.test-restore.failed"]
        return [e for e in read_events(names) if related_flow_run(e) == str(restore_run.id)]

    (verdict,) = wait_for(verdicts, timeout=60, what="the restore proof's event")
    assert verdict.event == "chatbot-backup.test-restore.completed"
    assert verdict.payload["passed"] is True
    assert verdict.payload["file"] == str(archive)

    def made_events() -> list[Any]:
        names = ["chatbot-backup.backup-all.completed"]
        return [e for e in read_events(names) if related_flow_run(e) == str(backup.id)]

    (made,) = wait_for(made_events, timeout=60, what="the scheduled backup's event")
    assert made.resource["chatbot-backup.scheduled"] == "true"
    assert made.payload["tier"] == "daily"

    # No secret anywhere the server keeps.
    with get_client(sync_client=True) as client:
        kept = [
            *(e.model_dump_json() for e in read_events(prefix="")),
            *(b.model_dump_json() for b in client.read_block_documents(include_secrets=False)),
            *(a.model_dump_json() for a in client.read_automations()),
            *(a.model_dump_json() for a in client.read_artifacts()),
            *(r.model_dump_json() for r in client.read_flow_runs()),
        ]
        webhook = client.read_block_document_by_name(
            "chatbot-backup-webhook", "custom-webhook", include_secrets=False
        )
    assert webhook.data["url"] == "{{webhook_url}}"  # the plain field holds no secret
    for text in kept:
        assert HOOK_SECRET not in text and SLACK_SECRET not in text
