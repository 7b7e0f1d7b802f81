"""Prometheus metrics: the textfile written by real runs, the Pushgateway push, and the
alert rules — checked with the real `promtool`."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.core.naming import parse_backup_name
from tasks.core.settings import Settings
from tasks.monitor.metrics import (
    key,
    offsite_scheme,
    parse_metrics,
    record_backup_success,
    record_offsite_status,
    render_metrics,
)
from tests.conftest import Platform
from tests.support.services import HttpReceiver, http_receiver
from tests.test_monitor import fresh_set, make_backup

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "docs" / "ops" / "monitoring" / "alerts.yml"
RULE_TESTS = REPO / "docs" / "ops" / "monitoring" / "alerts_test.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool missing: install Debian package `prometheus` (.ci/setup-system.sh)",
)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as service:
        yield service


def promtool_metrics(path: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    with open(path) as handle:
        return subprocess.run(
            [PROMTOOL, "check", "metrics"], stdin=handle, capture_output=True, text=True
        )


def samples_of(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return parse_metrics(path.read_text())


def metrics_file(platform: Platform) -> Path:
    return platform.backups / "metrics" / "chatbot_backup.prom"


# -- written by real runs ----------------------------------------------------------------


@needs_promtool
def test_db_backup_writes_valid_metrics(sqlite_platform: Platform) -> None:
    done = sqlite_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    [backup] = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    path = metrics_file(sqlite_platform)
    check = promtool_metrics(path)
    assert check.returncode == 0, check.stdout + check.stderr
    samples = samples_of(path)
    name = parse_backup_name(backup.name)
    assert name is not None
    assert samples[key("chatbot_backup_status", kind="db")] == 1
    assert (
        samples[key("chatbot_last_backup_timestamp_seconds", kind="db")]
        == name.created_at.timestamp()
    )
    assert samples[key("chatbot_last_backup_size_bytes", kind="db")] == backup.stat().st_size
    assert samples[key("chatbot_backup_count", kind="db")] == 1
    assert samples[key("chatbot_backup_sum", kind="db")] == backup.stat().st_size
    assert samples[key("chatbot_last_backup_duration_seconds", kind="db")] > 0
    # Inside BACKUP_DIR, as private as the backups.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "# TYPE chatbot_backup summary" in text
    assert 'chatbot_backup_count{kind="db"} 1' in text


def test_a_db_backup_keeps_the_full_backup_series(sqlite_platform: Platform) -> None:
    full = make_backup(sqlite_platform.backups, "full", 3)
    settings = Settings(app_root=sqlite_platform.root, backup_dir=sqlite_platform.backups)
    assert record_backup_success(settings, "full", full, full.stat().st_size, 12.5)
    done = sqlite_platform.run("db-backup")
    assert done.returncode == 0, done.stderr
    samples = samples_of(metrics_file(sqlite_platform))
    assert samples[key("chatbot_last_backup_duration_seconds", kind="full")] == 12.5
    assert samples[key("chatbot_backup_count", kind="full")] == 1
    assert samples[key("chatbot_backup_status", kind="db")] == 1


def test_metrics_file_setting_is_honoured(sqlite_platform: Platform) -> None:
    textfile_dir = sqlite_platform.root / "textfile"
    textfile_dir.mkdir()
    done = sqlite_platform.run("db-backup", extra_env={"METRICS_FILE": "textfile/backup.prom"})
    assert done.returncode == 0, done.stderr
    written = textfile_dir / "backup.prom"
    assert key("chatbot_backup_status", kind="db") in samples_of(written)
    # node_exporter's textfile folder: readable by node_exporter's user, no secret inside.
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert not metrics_file(sqlite_platform).exists()


def test_unwritable_metrics_do_not_fail_the_backup(sqlite_platform: Platform) -> None:
    done = sqlite_platform.run(
        "db-backup", extra_env={"METRICS_FILE": "/nonexistent-dir/sub/chatbot.prom"}
    )
    assert done.returncode == 0, done.stderr
    assert sqlite_platform.backup_files("admin_sqlite_*.db.gz")


@needs_promtool
def test_monitor_publishes_what_the_folder_holds(platform: Platform) -> None:
    """Backups made by the shell scripts have no metrics yet: the monitor fills them in."""
    fresh_set(platform.backups)
    done = platform.run("monitor", extra_env={"MONITOR_CHECK_DEPLOYMENTS": "false"})
    assert done.returncode == 0, done.stdout + done.stderr
    path = metrics_file(platform)
    check = promtool_metrics(path)
    assert check.returncode == 0, check.stdout + check.stderr
    samples = samples_of(path)
    assert samples[key("chatbot_backup_count", kind="db")] == 4
    assert samples[key("chatbot_backup_count", kind="full")] == 3
    assert samples[key("chatbot_backup_status", kind="full")] == 1
    assert samples[key("chatbot_backup_monitor_status")] == 0
    newest_full = max(platform.backups.glob("full_backup_*.tar.gz"))
    assert samples[key("chatbot_last_backup_size_bytes", kind="full")] == newest_full.stat().st_size


def test_monitor_marks_a_damaged_newest_backup_failed(platform: Platform) -> None:
    for age in (13, 7):
        make_backup(platform.backups, "db", age)
    newest = make_backup(platform.backups, "db", 1)
    newest.write_bytes(newest.read_bytes()[:-100])
    done = platform.run("monitor", extra_env={"MONITOR_CHECK_DEPLOYMENTS": "false"})
    assert done.returncode == 2
    samples = samples_of(metrics_file(platform))
    assert samples[key("chatbot_backup_status", kind="db")] == 0
    assert samples[key("chatbot_backup_monitor_status")] == 2


def test_counts_drop_to_zero_when_backups_vanish(platform: Platform) -> None:
    fresh_set(platform.backups)
    assert platform.run("monitor", extra_env={"MONITOR_CHECK_DEPLOYMENTS": "false"}).returncode == 0
    for backup in platform.backups.glob("full_backup_*"):
        backup.unlink()
    platform.run("monitor", extra_env={"MONITOR_CHECK_DEPLOYMENTS": "false"})
    samples = samples_of(metrics_file(platform))
    assert samples[key("chatbot_backup_count", kind="full")] == 0
    assert samples[key("chatbot_backup_count", kind="db")] == 4


# -- the Pushgateway -----------------------------------------------------------------


def test_pushgateway_receives_the_metrics(
    sqlite_platform: Platform, receiver: HttpReceiver
) -> None:
    done = sqlite_platform.run("db-backup", extra_env={"PROMETHEUS_PUSHGATEWAY": receiver.url})
    assert done.returncode == 0, done.stderr
    [push] = receiver.wait_for(1)
    assert push.path == f"/metrics/job/chatbot_backup/instance/{socket.gethostname()}"
    assert push.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert push.body.decode() == metrics_file(sqlite_platform).read_text()


def test_unreachable_pushgateway_does_not_fail_the_backup(sqlite_platform: Platform) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    done = sqlite_platform.run(
        "db-backup",
        extra_env={"PROMETHEUS_PUSHGATEWAY": f"http://user:pushpw-77@127.0.0.1:{dead}"},
    )
    assert done.returncode == 0, done.stderr
    assert "pushpw-77" not in done.stdout + done.stderr
    assert metrics_file(sqlite_platform).is_file()


# -- the format and the merge -----------------------------------------------------------


def test_render_and_parse_round_trip() -> None:
    samples = {
        key("chatbot_offsite_backup_status", kind="full", scheme='we"ird\\scheme'): 1.0,
        key("chatbot_last_backup_size_bytes", kind="db"): 123456789.0,
        key("chatbot_last_backup_duration_seconds", kind="db"): 0.125,
        key("chatbot_backup_monitor_status"): 2.0,
    }
    text = render_metrics(samples)
    assert parse_metrics(text) == samples
    assert (
        parse_metrics(text + 'other_metric 5\ngarbage line\nchatbot_backup_status{kind="db"} x\n')
        == samples
    )


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    settings = Settings(app_root=tmp_path, backup_dir=tmp_path, metrics_file=tmp_path / "m.prom")
    schemes = [f"s{i}" for i in range(16)]
    threads = [
        threading.Thread(target=record_offsite_status, args=(settings, "full", s, True))
        for s in schemes
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = samples_of(tmp_path / "m.prom")
    assert all(
        samples[key("chatbot_offsite_backup_status", kind="full", scheme=s)] == 1 for s in schemes
    )
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


def test_a_killed_writers_partial_file_is_swept_by_the_next_write(tmp_path: Path) -> None:
    """A run killed while it wrote the metrics file left `.m.prom.partial-*`; the next
    writer (holding the file's lock) removes it, and nothing else in the folder."""
    settings = Settings(app_root=tmp_path, backup_dir=tmp_path, metrics_file=tmp_path / "m.prom")
    stale = tmp_path / ".m.prom.partial-12345-deadbeef"
    stale.write_text('chatbot_backup_last_success_timestamp_seconds{kind="db"} 1\n')
    other = tmp_path / ".other.prom.partial-1-aa"  # another file's partial: not ours to touch
    other.write_text("")
    record_offsite_status(settings, "full", "s3", True)
    assert not stale.exists() and other.exists()
    assert (
        samples_of(tmp_path / "m.prom")[
            key("chatbot_offsite_backup_status", kind="full", scheme="s3")
        ]
        == 1
    )


def test_offsite_scheme_labels_carry_no_destination() -> None:
    assert offsite_scheme("s3://bucket/prefix") == "s3"
    assert offsite_scheme("gs://b/p") == "gs"
    assert offsite_scheme("az://container/p") == "az"
    assert offsite_scheme("backup@backup-server:/backups/chatbot") == "ssh"
    assert offsite_scheme("/mnt/backup-nas/chatbot") == "file"


# -- the alert rules ---------------------------------------------------------------------


@needs_promtool
def test_alert_rules_are_valid() -> None:
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)  # type: ignore[list-item]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 15 rules found" in done.stdout  # 12 + the two DR-drill rules + the restore proof


@needs_promtool
def test_no_backup_and_backup_failed_rules_fire() -> None:
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,  # type: ignore[list-item]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tests = RULE_TESTS.read_text()
    for rule in (
        "ChatbotBackupMissing",
        "ChatbotBackupFailed",
        "ChatbotOffsiteBackupFailing",
        "ChatbotWalArchiveStale",
        "ChatbotWalArchiveStopped",
        "ChatbotBaseBackupMissing",
        "ChatbotDrDrillFailed",
        "ChatbotDrDrillOverdue",
        "ChatbotRestoreProofFailed",
    ):
        assert f"alertname: {rule}" in tests
