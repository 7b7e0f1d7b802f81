"""Alerts against real receivers on loopback: aiosmtpd for e-mail, an HTTP server for
Slack and the generic webhook; retries, a failing channel, and failure notifications
from real flow runs — with no secret in any message."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tasks.core.redact import register_secret
from tasks.core.settings import Settings
from tasks.monitor.alerts import Alert, send_alert, slack_text, webhook_payload
from tests.conftest import Platform
from tests.support.services import HttpReceiver, SmtpService, http_receiver, smtp_server

CHECKS = [
    {"name": "latest-age", "severity": "critical", "reason": "newest backup is 30.0 h old"},
    {"name": "integrity", "severity": "ok", "reason": "readable"},
]


def closed_port() -> int:
    """A port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as service:
        yield service


@pytest.fixture
def smtp() -> Iterator[SmtpService]:
    with smtp_server() as service:
        yield service


def settings_for(**values: object) -> Settings:
    return Settings(app_root=Path("/nonexistent"), **values)  # type: ignore[arg-type]


def alert(message: str = "Backup monitor found 1 problem(s)") -> Alert:
    return Alert(status="critical", job="monitor-backups", message=message, checks=CHECKS)


def test_email_is_delivered_with_login(smtp: SmtpService) -> None:
    register_secret("smtp-pw-7c1e2")
    settings = settings_for(
        alert_email="ops@example.com, oncall@example.com",
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_user="backup",
        smtp_password=SecretStr("smtp-pw-7c1e2"),
        alert_from="backups@example.com",
    )
    [result] = send_alert(settings, alert())
    assert result.delivered and result.channel == "email", result
    [mail] = smtp.wait_for(1)
    assert sorted(mail.rcpt_tos) == ["oncall@example.com", "ops@example.com"]
    assert mail.mail_from == "backups@example.com"
    message = mail.message
    assert message["Subject"].startswith("[chatbot-backup] CRITICAL: monitor-backups on ")
    body = message.get_content()
    assert "latest-age" in body and "critical" in body and "30.0 h old" in body
    assert smtp.logins == [("backup", "smtp-pw-7c1e2")]  # the login, and only there
    assert b"smtp-pw-7c1e2" not in mail.data


def test_slack_and_webhook_bodies(receiver: HttpReceiver) -> None:
    settings = settings_for(
        alert_slack_webhook=SecretStr(receiver.url + "/services/T1/B2/xoxsecret42"),
        alert_webhook=SecretStr(receiver.url + "/hook/abcsecret99"),
    )
    results = send_alert(settings, alert())
    assert all(r.delivered for r in results) and {r.channel for r in results} == {
        "slack",
        "webhook",
    }
    posts = {r.path: r for r in receiver.wait_for(2)}
    slack = json.loads(posts["/services/T1/B2/xoxsecret42"].body)
    assert list(slack) == ["text"]
    text = slack["text"]
    assert "CRITICAL" in text and "monitor-backups" in text
    assert "latest-age" in text and "30.0 h old" in text
    assert "integrity" not in text  # a readable message lists the problems, not every pass
    hook = posts["/hook/abcsecret99"]
    assert hook.headers["Content-Type"].startswith("application/json")
    payload = json.loads(hook.body)
    assert {"status", "job", "host", "checks", "message"} <= set(payload)
    assert payload["status"] == "critical" and payload["job"] == "monitor-backups"
    assert payload["host"] == socket.gethostname()
    assert payload["checks"] == CHECKS
    for post in posts.values():
        assert b"xoxsecret42" not in post.body and b"abcsecret99" not in post.body


def test_secrets_are_redacted_from_every_channel(receiver: HttpReceiver, smtp: SmtpService) -> None:
    register_secret("pg-Pa55word-x1")
    settings = settings_for(
        alert_email="ops@example.com",
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        alert_slack_webhook=SecretStr(receiver.url + "/slack"),
        alert_webhook=SecretStr(receiver.url + "/hook"),
    )
    leaky = Alert(
        status="failed",
        job="db-backup",
        message="pg_dump failed: postgresql://admin:pg-Pa55word-x1@db:5432/chatbot refused",
        checks=[{"name": "dump-database", "severity": "critical", "reason": "pg-Pa55word-x1"}],
    )
    assert all(r.delivered for r in send_alert(settings, leaky))
    everything = b"".join(r.body for r in receiver.wait_for(2)) + smtp.wait_for(1)[0].data
    assert b"pg-Pa55word-x1" not in everything
    assert b"admin:***@db" in everything


def test_transient_error_is_retried(receiver: HttpReceiver) -> None:
    receiver.status = 503

    def recover() -> None:  # the receiver comes back after the first refusal
        receiver.wait_for(1)
        receiver.status = 200

    helper = threading.Thread(target=recover)
    helper.start()
    [result] = send_alert(
        settings_for(alert_webhook=SecretStr(receiver.url + "/hook")), alert(), backoff=0.3
    )
    helper.join()
    assert result.delivered and result.attempts == 2
    assert len(receiver.requests) == 2


def test_permanent_error_is_not_retried(receiver: HttpReceiver) -> None:
    receiver.status = 404
    [result] = send_alert(
        settings_for(alert_webhook=SecretStr(receiver.url + "/gone")), alert(), backoff=0.05
    )
    assert not result.delivered and result.attempts == 1 and result.detail == "HTTP 404"


def test_failing_channels_do_not_stop_the_others(receiver: HttpReceiver, smtp: SmtpService) -> None:
    dead = closed_port()
    settings = settings_for(
        alert_email="ops@example.com",
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        alert_slack_webhook=SecretStr(f"http://127.0.0.1:{dead}/services/deadsecret"),
        alert_webhook=SecretStr(receiver.url + "/hook"),
    )
    started = time.monotonic()
    results = {r.channel: r for r in send_alert(settings, alert(), backoff=0.05)}
    assert time.monotonic() - started < 10
    assert results["email"].delivered and results["webhook"].delivered
    slack = results["slack"]
    assert not slack.delivered and slack.attempts == 3
    assert "deadsecret" not in slack.detail and str(dead) not in slack.detail
    assert smtp.wait_for(1) and receiver.wait_for(1)


def test_unreachable_smtp_does_not_stop_webhooks(receiver: HttpReceiver) -> None:
    settings = settings_for(
        alert_email="ops@example.com",
        smtp_host="127.0.0.1",
        smtp_port=closed_port(),
        alert_webhook=SecretStr(receiver.url + "/hook"),
    )
    results = {r.channel: r for r in send_alert(settings, alert(), backoff=0.05)}
    assert not results["email"].delivered and "cannot connect" in results["email"].detail
    assert results["webhook"].delivered


def test_no_channel_configured_sends_nothing() -> None:
    assert send_alert(settings_for(), alert()) == []


def test_message_formats_without_a_server() -> None:
    payload = webhook_payload(alert())
    assert json.loads(json.dumps(payload))["checks"][0]["name"] == "latest-age"
    assert slack_text(alert()).startswith(":red_circle: *chatbot-backup monitor-backups: CRITICAL*")


# -- failure notifications from real flow runs --------------------------------------------


def test_failed_db_backup_sends_its_failure_alert(
    platform: Platform, receiver: HttpReceiver, smtp: SmtpService
) -> None:
    """The SQLite file is missing: refused before the run starts (a configuration error,
    within 2 s), and every channel still hears about it, with the phase."""
    # An installation that has backed up before: the failure metrics go beside them (a
    # missing BACKUP_DIR is never created by a failure record: the monitor reports it).
    platform.backups.mkdir(parents=True, exist_ok=True)
    done = platform.run(
        "db-backup",
        extra_env={
            "ALERT_WEBHOOK": receiver.url + "/hook/whsecret-5d",
            "ALERT_SLACK_WEBHOOK": receiver.url + "/slack/slsecret-6e",
            "ALERT_EMAIL": "ops@example.com",
            "SMTP_HOST": smtp.host,
            "SMTP_PORT": str(smtp.port),
        },
    )
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    posts = {r.path.split("/")[1]: r for r in receiver.wait_for(2)}
    payload = json.loads(posts["hook"].body)
    assert payload["status"] == "failed" and payload["job"] == "db-backup"
    assert "failed during configuration" in payload["message"]  # the phase that failed
    assert "does not exist" in payload["message"]  # and the error
    assert payload["checks"][0]["severity"] == "critical"
    assert "db-backup" in json.loads(posts["slack"].body)["text"]
    mail = smtp.wait_for(1)[0].message
    assert "FAILED: db-backup" in mail["Subject"]
    metrics = (platform.backups / "metrics" / "chatbot_backup.prom").read_text()
    assert 'chatbot_backup_status{kind="db"} 0' in metrics
    assert 'chatbot_last_backup_failure_timestamp_seconds{kind="db"}' in metrics
    for post in posts.values():
        assert b"whsecret-5d" not in post.body and b"slsecret-6e" not in post.body


def test_failure_alert_never_carries_the_database_password(
    platform: Platform, receiver: HttpReceiver
) -> None:
    done = platform.run(
        "db-backup",
        extra_env={
            "ADMIN_DB_TYPE": "postgres",
            "ADMIN_DATABASE_URL": f"postgresql://postgres:Sup3r-Secret-pw@127.0.0.1:{closed_port()}/x",
            "ALERT_WEBHOOK": receiver.url + "/hook",
        },
    )
    assert done.returncode != 0
    [post] = receiver.wait_for(1)
    payload = json.loads(post.body)
    assert payload["job"] == "db-backup" and payload["status"] == "failed"
    assert b"Sup3r-Secret-pw" not in post.body
    assert "Sup3r-Secret-pw" not in done.stderr + done.stdout


def test_bad_settings_still_alert(platform: Platform, receiver: HttpReceiver) -> None:
    """ADMIN_DB_TYPE is wrong, so the settings do not load; the alert goes out anyway."""
    done = platform.run(
        "db-backup", extra_env={"ADMIN_DB_TYPE": "mysql", "ALERT_WEBHOOK": receiver.url + "/hook"}
    )
    assert done.returncode == 3 and "ADMIN_DB_TYPE" in done.stderr
    payload = json.loads(receiver.wait_for(1)[0].body)
    assert payload["job"] == "db-backup" and "configuration" in payload["message"]


def test_unreachable_channel_does_not_mask_the_failure(platform: Platform) -> None:
    done = platform.run(
        "db-backup",
        extra_env={"ALERT_WEBHOOK": f"http://127.0.0.1:{closed_port()}/hook", "ALERT_TIMEOUT": "2"},
    )
    assert done.returncode == 3  # the original error's exit code, not the alert's
    assert "ADMIN_DB_PATH" in done.stderr


def test_failed_monitor_run_alerts(platform: Platform, receiver: HttpReceiver) -> None:
    done = platform.run(
        "monitor",
        extra_env={"MONITOR_MAX_AGE_HOURS": "-1", "ALERT_WEBHOOK": receiver.url + "/hook"},
    )
    assert done.returncode == 3 and "MONITOR_MAX_AGE_HOURS" in done.stderr
    payload = json.loads(receiver.wait_for(1)[0].body)
    assert payload["job"] == "monitor-backups" and payload["status"] == "failed"


def test_successful_backup_sends_nothing(sqlite_platform: Platform, receiver: HttpReceiver) -> None:
    done = sqlite_platform.run("db-backup", extra_env={"ALERT_WEBHOOK": receiver.url + "/hook"})
    assert done.returncode == 0, done.stderr
    time.sleep(0.5)
    assert receiver.requests == []
