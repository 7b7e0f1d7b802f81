"""Issue 23: every job ends with a Prefect event, read back through the API."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import Platform
from tests.support.prefect_api import read_events, related_flow_run, wait_for

SECRET = "Ev3ntPassw0rdXyz"


def _for_run(name: str, run_id: str) -> list[object]:
    return [e for e in read_events([name]) if related_flow_run(e) == run_id]


def test_good_and_failing_runs_emit_their_events(sqlite_platform: Platform) -> None:
    from prefect.client.orchestration import get_client

    done = sqlite_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    (backup,) = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    sidecar = Path(f"{backup}.sha256").read_text().split()[0]

    def completed() -> list[object]:
        return [
            e
            for e in read_events(["chatbot-backup.db-backup.completed"])
            if e.payload.get("file") == str(backup)
        ]

    (event,) = wait_for(completed, what="the db-backup.completed event")
    assert event.resource.id == f"chatbot-backup.{socket.gethostname()}"
    assert event.resource["chatbot-backup.job"] == "db-backup"
    assert event.payload["kind"] == "db"
    assert event.payload["size"] == backup.stat().st_size
    assert len(event.payload["sha256"]) == 64
    assert event.payload["sha256"] == sidecar
    assert event.payload["duration"] > 0
    run_id = related_flow_run(event)
    assert run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.state is not None and run.state.is_completed()
    assert event.resource["chatbot-backup.scheduled"] == "false"  # started by hand

    # A run that fails inside Prefect: the database server refuses the connection.
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/chatbot"
    # The session's server holds the events of every earlier test of this worker too.
    since = datetime.now(UTC) - timedelta(seconds=1)
    failed = sqlite_platform.run(
        "db-backup", extra_env={"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": url}
    )
    assert failed.returncode != 0
    assert SECRET not in failed.stderr + failed.stdout

    def failures() -> list[object]:
        return [e for e in read_events(["chatbot-backup.db-backup.failed"]) if e.occurred >= since]

    (bad,) = wait_for(failures, what="the db-backup.failed event")
    assert bad.payload["kind"] == "db"
    assert bad.payload["message"]
    assert related_flow_run(bad) is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(related_flow_run(bad))
    assert run.state is not None and run.state.is_failed()
    for every in read_events(prefix="chatbot-backup."):
        assert SECRET not in every.model_dump_json()


def test_offsite_copies_are_link_artifacts(sqlite_platform: Platform, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    offsite = tmp_path / "offsite"
    offsite.mkdir()
    done = sqlite_platform.run(
        "db-backup", "--offsite", extra_env={"OFFSITE_DESTINATION": str(offsite)}
    )
    assert done.returncode == 0, done.stderr
    (backup,) = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    copied = offsite / backup.name
    assert copied.read_bytes() == backup.read_bytes()  # the copy the link names is there
    with get_client(sync_client=True) as client:
        links = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["offsite-copy-link"]))
        )
    mine = [a for a in links if backup.name in str(a.data)]
    assert mine, [a.data for a in links]
    assert mine[0].type == "markdown" and f"[{backup.name}](" in str(mine[0].data)


def test_credentials_from_secret_blocks_and_the_environment_wins(
    platform: Platform, monkeypatch: object
) -> None:
    from prefect.blocks.system import Secret

    import flows.hooks  # noqa: F401  (installs the Secret block source)
    from flows import secret_blocks
    from tasks.core.redact import redact
    from tasks.core.settings import load_settings

    hook = f"https://hooks.example.invalid/{SECRET}"
    Secret(value=hook).save("chatbot-backup-alert-webhook", overwrite=True)
    Secret(value="SmtpFromBlock9").save("chatbot-backup-smtp-password", overwrite=True)
    secret_blocks._cache.clear()
    settings = load_settings(check_folders=False)
    assert settings.alert_webhook is not None
    assert settings.alert_webhook.get_secret_value() == hook
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "SmtpFromBlock9"
    assert SECRET not in redact(f"posting to {hook} failed")  # redacted like any secret
    # The environment wins over the block.
    platform.set(monkeypatch, SMTP_PASSWORD="FromTheEnvironment")  # type: ignore[arg-type]
    secret_blocks._cache.clear()
    assert load_settings(check_folders=False).smtp_password.get_secret_value() == (  # type: ignore[union-attr]
        "FromTheEnvironment"
    )


def test_automations_without_a_server_is_one_clear_line(platform: Platform) -> None:
    done = platform.run("automations", extra_env={"PREFECT_API_URL": ""})
    assert done.returncode == 3  # a configuration error
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("chatbot-backup: error: automations: PREFECT_API_URL is not set")


def test_restore_proof_verdict_in_its_event_and_the_metrics(sqlite_platform: Platform) -> None:
    from tasks.monitor.metrics import key, parse_metrics

    assert sqlite_platform.run("db-backup").returncode == 0
    (backup,) = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    metrics = sqlite_platform.backups / "metrics" / "chatbot_backup.prom"

    def verdicts() -> list[object]:
        names = ["chatbot-backup.test-restore.completed", "chatbot-backup.test-restore.failed"]
        return [e for e in read_events(names) if e.payload.get("file") == str(backup)]

    good = sqlite_platform.run("test-restore", "--backup-file", str(backup))
    assert good.returncode == 0, good.stderr
    (event,) = wait_for(verdicts, what="the passing proof's event")
    assert event.event == "chatbot-backup.test-restore.completed"  # type: ignore[attr-defined]
    assert event.payload["passed"] is True  # type: ignore[attr-defined]
    samples = parse_metrics(metrics.read_text())
    assert samples[key("chatbot_restore_proof_status", kind="db")] == 1
    # The same file, damaged: the proof fails, and says so in its event and the metrics.
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.write_bytes(bytes(data))
    bad = sqlite_platform.run("test-restore", "--backup-file", str(backup))
    assert bad.returncode == 1
    both = wait_for(lambda: [*verdicts()][1:] and verdicts(), what="the failing proof's event")
    failed = both[-1]
    assert failed.event == "chatbot-backup.test-restore.failed"  # type: ignore[attr-defined]
    assert failed.payload["passed"] is False  # type: ignore[attr-defined]
    samples = parse_metrics(metrics.read_text())
    assert samples[key("chatbot_restore_proof_status", kind="db")] == 0
    # The monitor sees the failed proof too, even once the file is whole again (the
    # integrity check then passes): restore-proof is critical until a proof passes.
    data[len(data) // 2] ^= 0xFF
    backup.write_bytes(bytes(data))
    seen = sqlite_platform.run("monitor")
    assert seen.returncode == 2, seen.stdout
    (line,) = [x for x in seen.stdout.splitlines() if x.strip().startswith("restore-proof")]
    assert "critical" in line and "db" in line, line
    again = sqlite_platform.run("test-restore", "--backup-file", str(backup))
    assert again.returncode == 0, again.stderr
    seen = sqlite_platform.run("monitor")
    (line,) = [x for x in seen.stdout.splitlines() if x.strip().startswith("restore-proof")]
    assert " ok " in f" {' '.join(line.split())} ", line
