"""`chatbot-backup monitor`: every scenario of the issue, through the real command.

Backups are real gzip files (a SQLite header inside the database ones, a real tar inside
the full ones) with sha256 sidecars, named by `tasks.core.naming` with chosen timestamps.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.core.naming import db_backup_name, full_backup_name
from tasks.monitor.checks import Thresholds, check_rotation, inspect_backups
from tasks.monitor.host_checks import DiskUsage, check_free_disk, deployments_finding
from tasks.monitor.metrics import key, parse_metrics
from tasks.sources.sqlite import SQLITE_HEADER
from tasks.stream.checksum import sha256_file, write_sidecar
from tasks.verify.finding import Finding, exit_code_for, worst
from tests.conftest import Platform
from tests.support.services import http_receiver

NOW = datetime.now(UTC).replace(microsecond=0)


def make_backup(
    folder: Path,
    kind: str = "db",
    age_hours: float = 1.0,
    size: int = 20_000,
    tier: str | None = None,
    now: datetime | None = None,
) -> Path:
    """A real, valid backup of `kind` dated `age_hours` ago, about `size` bytes on disk."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    # The real clock, not NOW: a long suite reaches these tests minutes after import.
    moment = (now or datetime.now(UTC).replace(microsecond=0)) - timedelta(hours=age_hours)
    payload = os.urandom(size)  # incompressible, so the file is about `size` bytes
    if kind == "db":
        path = folder / db_backup_name("sqlite", moment)
        content = SQLITE_HEADER + payload
    else:
        path = folder / full_backup_name(moment)
        stem = path.name.split(".", 1)[0]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for member, data in (("MANIFEST.txt", b"manifest\n"), ("data/blob.bin", payload)):
                info = tarfile.TarInfo(f"{stem}/{member}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        content = buffer.getvalue()
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(content)
    write_sidecar(path, sha256_file(path))
    if tier is not None:
        path.with_name(path.name + ".meta.json").write_text(json.dumps({"tier": tier}))
    stamp = moment.timestamp()
    os.utime(path, (stamp, stamp))
    return path


def fresh_set(folder: Path) -> None:
    """What a healthy installation holds: db every 6 h, full daily, all recent."""
    for age in (1, 7, 13, 19):
        make_backup(folder, "db", age)
    for age in (2, 26, 50):
        make_backup(folder, "full", age)


def run_monitor(platform: Platform, **env: str) -> tuple[int, str, str]:
    # Isolated from deployments that other test files may register on the shared server.
    done = platform.run("monitor", extra_env={"MONITOR_CHECK_DEPLOYMENTS": "false", **env})
    return done.returncode, done.stdout, done.stderr


def finding_line(stdout: str, name: str) -> str:
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return line
    raise AssertionError(f"no {name} row in:\n{stdout}")


# -- the scenarios, through the CLI ---------------------------------------------


def test_no_backup_folder_is_critical_and_not_created(platform: Platform) -> None:
    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    assert "critical" in finding_line(out, "backup-dir")
    assert "does not exist" in finding_line(out, "backup-dir")
    assert not platform.backups.exists()  # the monitor must not hide its own finding


def test_empty_folder_is_critical(platform: Platform) -> None:
    platform.backups.mkdir()
    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    assert "no backups" in finding_line(out, "backup-dir")


def test_fresh_backups_pass_every_check(platform: Platform) -> None:
    fresh_set(platform.backups)
    code, out, err = run_monitor(platform)
    assert code == 0, out + err
    assert out.startswith("Backup monitor: OK (exit 0)")
    for name in (
        "backup-dir",
        "latest-age",
        "latest-size",
        "integrity",
        "backup-count",
        "rotation",
        "disk-space",
        "rpo-database",
        "rpo-configuration",
        "rpo-uploads",
    ):
        assert finding_line(out, name).split()[1] == "ok", out
    assert "7 backups (4 database-only, 3 full)" in finding_line(out, "backup-dir")


def test_restore_proof_judges_only_backups_in_the_folder(
    platform: Platform, tmp_path: Path
) -> None:
    """A failed test-restore of a file elsewhere proves nothing about BACKUP_DIR; of an
    older backup still there, a warning; of one since rotated, nothing; of the newest,
    critical. (The full backups of fresh_set have no MANIFEST.json: each test fails.)"""
    import gzip

    fresh_set(platform.backups)
    make_backup(platform.backups, "full", 74)  # one to spare: 3 remain when one is rotated
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    garbage = elsewhere / "full_backup_20200101_000000.tar.gz"
    garbage.write_bytes(gzip.compress(b"garbage\n"))
    done = platform.run("test-restore", "--backup-file", str(garbage))
    assert done.returncode == 1, done.stdout + done.stderr
    code, out, err = run_monitor(platform)
    assert code == 0, out + err
    assert finding_line(out, "restore-proof").split()[1] == "ok"
    assert finding_line(out, "integrity").split()[1] == "ok"

    fulls = sorted(platform.backups.glob("full_backup_*.tar.gz"))  # oldest first
    done = platform.run("test-restore", "--backup-file", str(fulls[1]))
    assert done.returncode == 1, done.stdout + done.stderr
    code, out, err = run_monitor(platform)
    assert code == 1, out + err
    line = finding_line(out, "restore-proof")
    assert line.split()[1] == "warning" and "older full backup" in line, line

    for path in (fulls[1], Path(f"{fulls[1]}.sha256")):
        path.unlink()  # as rotation removes it
    code, out, err = run_monitor(platform)
    assert code == 0, out + err
    assert "no longer in the folder" in finding_line(out, "restore-proof")

    done = platform.run("test-restore", "--backup-file", str(fulls[-1]))
    assert done.returncode == 1, done.stdout + done.stderr
    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    assert "the newest backup may not restore" in finding_line(out, "restore-proof")


def test_only_one_backup_is_a_warning(platform: Platform) -> None:
    make_backup(platform.backups, "db", 1)
    code, out, err = run_monitor(platform)
    assert code == 1, out + err
    line = finding_line(out, "backup-count")
    assert "warning" in line and "minimum of 3" in line


def test_newest_30_hours_old_is_critical(platform: Platform) -> None:
    for age in (30, 54, 78):
        make_backup(platform.backups, "full", age)
    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    line = finding_line(out, "latest-age")
    # The age is read when the monitor runs, seconds to minutes after the files were made.
    assert "critical" in line and re.search(r"is 30\.\d h old \(limit 25 h\)", line), line
    assert "warning" in finding_line(out, "rpo-database")


def test_fresh_db_backup_does_not_hide_a_stale_full_backup(platform: Platform) -> None:
    """The age is judged per kind: db-backup every 6 h still running says nothing about
    the uploads and configuration that only the (stopped) daily backup-all holds."""
    for age in (1, 7, 13):
        make_backup(platform.backups, "db", age)
    for age in (30, 54, 78):
        make_backup(platform.backups, "full", age)
    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    line = finding_line(out, "latest-age")
    assert "critical" in line, line
    assert re.search(r"newest full backup full_backup_\S+ is 30\.\d h old \(limit 25 h\)", line)
    assert re.search(r"newest database-only backup \S+ is 1\.\d h old", line), line


def test_fresh_full_backup_does_not_hide_stale_db_backups(platform: Platform) -> None:
    for age in (30, 36, 42):
        make_backup(platform.backups, "db", age)
    for age in (1, 26, 50):
        make_backup(platform.backups, "full", age)
    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    line = finding_line(out, "latest-age")
    assert "critical" in line, line
    assert re.search(r"newest database-only backup \S+ is 30\.\d h old \(limit 25 h\)", line)
    # the metric the ChatbotBackupMissing rule reads is per kind too
    samples = parse_metrics((platform.backups / "metrics" / "chatbot_backup.prom").read_text())
    db_newest = max(platform.backups.glob("admin_sqlite_*.db.gz"))
    full_newest = max(platform.backups.glob("full_backup_*.tar.gz"))
    assert samples[key("chatbot_last_backup_timestamp_seconds", kind="db")] == pytest.approx(
        db_newest.stat().st_mtime
    )
    assert samples[key("chatbot_last_backup_timestamp_seconds", kind="full")] == pytest.approx(
        full_newest.stat().st_mtime
    )


def test_truncated_newest_is_critical(platform: Platform) -> None:
    for age in (30, 20, 10):
        make_backup(platform.backups, "full", age)
    newest = make_backup(platform.backups, "full", 1)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a copy that stopped halfway
    code, out, err = run_monitor(platform)
    assert code == 2, out + err
    line = finding_line(out, "integrity")
    assert "critical" in line and newest.name in line


def test_corrupt_middle_of_newest_is_critical(platform: Platform) -> None:
    for age in (13, 7):
        make_backup(platform.backups, "db", age)
    newest = make_backup(platform.backups, "db", 1)
    with open(newest, "r+b") as handle:  # flip bytes in the middle, size unchanged
        handle.seek(newest.stat().st_size // 2)
        chunk = handle.read(16)
        handle.seek(-16, os.SEEK_CUR)
        handle.write(bytes(b ^ 0xFF for b in chunk))
    code, out, _ = run_monitor(platform)
    assert code == 2
    assert newest.name in finding_line(out, "integrity")


def test_newest_half_the_usual_size_is_a_warning(platform: Platform) -> None:
    for age in (25, 19, 13, 7):
        make_backup(platform.backups, "db", age, size=40_000)
    newest = make_backup(platform.backups, "db", 1, size=15_000)
    code, out, err = run_monitor(platform)
    assert code == 1, out + err
    line = finding_line(out, "latest-size")
    assert "warning" in line and newest.name in line and "median" in line


def test_rotation_not_working_is_a_warning(platform: Platform) -> None:
    make_backup(platform.backups, "full", 1)
    for days in (1, 2, 12, 13, 14):  # daily tier, 7 days' retention: 12-14 should be gone
        make_backup(platform.backups, "full", 24 * days + 1)
    code, out, err = run_monitor(platform)
    assert code == 1, out + err
    line = finding_line(out, "rotation")
    assert "warning" in line and "3 backup(s)" in line


def test_missed_database_rpo_is_a_warning(platform: Platform) -> None:
    for age in (8, 14, 20):
        make_backup(platform.backups, "db", age)
    for age in (10, 34, 58):
        make_backup(platform.backups, "full", age)
    code, out, _ = run_monitor(platform)
    assert code == 1, out
    assert "RPO missed" in finding_line(out, "rpo-database")
    assert re.search(r"8\.\d h old \(objective 6 h\)", finding_line(out, "rpo-database"))
    assert finding_line(out, "rpo-uploads").split()[1] == "ok"


def test_thresholds_come_from_settings(platform: Platform) -> None:
    fresh_set(platform.backups)
    code, out, _ = run_monitor(
        platform,
        MONITOR_MAX_AGE_HOURS="0.5",
        MONITOR_MIN_COUNT="5",
        MONITOR_MIN_FREE_PERCENT="100",
    )
    assert code == 2, out
    assert "limit 0.5 h" in finding_line(out, "latest-age")
    assert "minimum of 5" in finding_line(out, "backup-count")
    assert "below 100%" in finding_line(out, "disk-space")


def test_bad_threshold_is_one_clear_line(platform: Platform) -> None:
    code, out, err = run_monitor(platform, MONITOR_MIN_COUNT="lots")
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "MONITOR_MIN_COUNT" in err


# -- the flow from Python: result, artifact, metrics, alerts ------------------------------


def test_python_api_result_and_artifact(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows import MonitorResult, monitor_backups

    monkeypatch.setenv("MONITOR_CHECK_DEPLOYMENTS", "false")
    make_backup(platform.backups, "db", 1)
    state = monitor_backups(return_state=True)
    result = state.result()
    assert isinstance(result, MonitorResult)
    assert (result.status, result.exit_code) == ("warning", 1)
    count = result.finding("backup-count")
    assert count is not None and count.severity == "warning"
    assert result.metrics_written and Path(result.metrics_file).is_file()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    [table] = [a for a in artifacts if a.key == "monitor-backups-summary"]
    rows = table.data if isinstance(table.data, list) else json.loads(str(table.data))
    by_check = {row["check"]: row for row in rows}
    assert by_check["backup-count"]["status"] == "warning"
    assert by_check["integrity"]["status"] == "ok"


def test_warnings_alert_every_channel(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import monitor_backups
    from tests.support.services import smtp_server

    make_backup(platform.backups, "db", 1)
    with http_receiver() as hooks, smtp_server() as smtp:
        monkeypatch.setenv("MONITOR_CHECK_DEPLOYMENTS", "false")
        monkeypatch.setenv("ALERT_WEBHOOK", hooks.url + "/generic/tok-9f8e7d6c")
        monkeypatch.setenv("ALERT_SLACK_WEBHOOK", hooks.url + "/services/T000/B000/slacksecret123")
        monkeypatch.setenv("ALERT_EMAIL", "ops@example.com")
        monkeypatch.setenv("SMTP_HOST", smtp.host)
        monkeypatch.setenv("SMTP_PORT", str(smtp.port))
        result = monitor_backups()
        posts = hooks.wait_for(2)
        mails = smtp.wait_for(1)
    assert result.exit_code == 1
    assert sorted(a.channel for a in result.alerts if a.delivered) == ["email", "slack", "webhook"]
    by_path = {p.path.rsplit("/", 1)[-1]: json.loads(p.body) for p in posts}
    generic = by_path["tok-9f8e7d6c"]
    assert generic["status"] == "warning" and generic["job"] == "monitor-backups"
    assert generic["host"] and "backup-count" in generic["message"]
    assert {"name": "backup-count", "severity": "warning"}.items() <= next(
        c for c in generic["checks"] if c["name"] == "backup-count"
    ).items()
    slack = by_path["slacksecret123"]
    assert set(slack) == {"text"} and "WARNING" in slack["text"] and "backup-count" in slack["text"]
    mail = mails[0].message
    assert mail["To"] == "ops@example.com" and "WARNING" in mail["Subject"]
    assert "backup-count" in mail.get_content()
    everything = b"".join(p.body for p in posts) + mails[0].data
    for secret in (b"tok-9f8e7d6c", b"slacksecret123"):
        assert secret not in everything


def test_healthy_run_sends_no_alert(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import monitor_backups

    fresh_set(platform.backups)
    with http_receiver() as hooks:
        monkeypatch.setenv("MONITOR_CHECK_DEPLOYMENTS", "false")
        monkeypatch.setenv("ALERT_WEBHOOK", hooks.url + "/hook")
        result = monitor_backups()
        assert result.exit_code == 0 and result.alerts == []
        assert hooks.requests == []


def test_deployment_check_against_the_server(platform: Platform) -> None:
    """A paused scheduled deployment is a warning (the check runs: PREFECT_API_URL is set)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows import monitor_backups
    from tasks.steps.monitor import check_deployments

    name = "monitor-backups/hourly"
    with get_client(sync_client=True) as client:
        try:
            before = client.read_deployment_by_name(name)
        except ObjectNotFound:
            before = None
        deployment_id = monitor_backups.to_deployment(name="hourly", cron="0 * * * *").apply()  # type: ignore[union-attr]
        client.pause_deployment(deployment_id)
        try:
            finding = check_deployments.fn(True)
        finally:
            if before is None:
                client.delete_deployment(deployment_id)
            elif not before.paused:
                client.resume_deployment(deployment_id)
    assert finding.severity == "warning"
    assert f"paused: {name}" in finding.reason


def test_scheduled_offsite_tier_without_a_destination_is_a_warning(platform: Platform) -> None:
    """SPEC: a scheduled off-site tier with no OFFSITE_DESTINATION is reported by the monitor."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows import backup_all

    fresh_set(platform.backups)
    name = "backup-all/weekly-offsite"
    with get_client(sync_client=True) as client:
        try:
            before = client.read_deployment_by_name(name)
        except ObjectNotFound:
            before = None
        deployment_id = backup_all.to_deployment(  # type: ignore[union-attr]
            name="weekly-offsite", cron="0 3 * * 0", parameters={"offsite": True}
        ).apply()
        if before is not None and before.paused:
            client.resume_deployment(deployment_id)
        try:
            code, out, err = run_monitor(platform, MONITOR_CHECK_DEPLOYMENTS="true")
            client.pause_deployment(deployment_id)
            _, paused_out, _ = run_monitor(platform, MONITOR_CHECK_DEPLOYMENTS="true")
        finally:
            if before is None:
                client.delete_deployment(deployment_id)
            elif before.paused:
                client.pause_deployment(deployment_id)
            else:
                client.resume_deployment(deployment_id)
    line = finding_line(out, "offsite")
    assert "warning" in line and "weekly (backup-all/weekly-offsite)" in line, out + err
    assert "OFFSITE_DESTINATION is not set" in line
    assert code >= 1
    # Paused, it is not scheduled: nothing to warn about.
    assert "ok" in finding_line(paused_out, "offsite").split()[1], paused_out


# -- pure checks -------------------------------------------------------------------------


def test_disk_rules() -> None:
    latest = inspect_latest_of(size=1000)
    assert check_free_disk(DiskUsage(100_000, 50_000), latest, 10, 2).severity == "ok"
    assert check_free_disk(DiskUsage(100_000, 5_000), latest, 10, 2).severity == "warning"
    big = inspect_latest_of(size=30_000)
    low = check_free_disk(DiskUsage(100_000, 50_000), big, 10, 2)
    assert low.severity == "warning" and "2× the latest backup" in low.reason


def inspect_latest_of(size: int) -> dict:  # type: ignore[type-arg]
    from tasks.catalog.records import BackupRecord
    from tasks.core.naming import parse_backup_name

    name = parse_backup_name(full_backup_name(NOW))
    assert name is not None
    return {"full": BackupRecord(Path("/x") / name.name, name, "daily", size, False)}


def test_rotation_respects_tiers_and_the_kept_minimum(tmp_path: Path) -> None:
    from tasks.catalog.records import list_backups

    for days in (0, 20, 40, 60):  # monthly tier: all within 365 days
        make_backup(tmp_path, "full", 24 * days + 1, size=100, now=NOW, tier="monthly")
    for days in (30, 31, 32):  # daily tier: old, but they are the newest 3 of their tier
        make_backup(tmp_path, "full", 24 * days + 1, size=100, now=NOW)
    assert check_rotation(list_backups(tmp_path), NOW, 7).severity == "ok"


def test_future_dated_backup_does_not_count_as_fresh(tmp_path: Path) -> None:
    for age in (40, 64, 88):
        make_backup(tmp_path, "db", age, size=100, now=NOW)
    make_backup(tmp_path, "db", -24 * 365, size=100, now=NOW)  # a year ahead: wrong clock
    inspection = inspect_backups(tmp_path, Thresholds(), NOW)
    age = next(f for f in inspection.findings if f.name == "latest-age")
    assert age.severity == "critical" and "40.0 h" in age.reason


def test_deployments_finding_and_rollup() -> None:
    names = ("a/x", "b/y")
    assert deployments_finding(dict.fromkeys(names, "missing")).severity == "ok"
    partial = deployments_finding({"a/x": "active", "b/y": "missing"})
    assert partial.severity == "warning" and "missing: b/y" in partial.reason
    assert deployments_finding(dict.fromkeys(names, "active")).severity == "ok"
    findings = [Finding("a", "ok", ""), Finding("b", "warning", ""), Finding("c", "critical", "")]
    assert worst(findings[:1]) == "ok" and worst(findings[:2]) == "warning"
    assert exit_code_for(worst(findings)) == 2


def test_integrity_reads_only_the_newest_of_each_kind(tmp_path: Path) -> None:
    for age in range(1, 30):
        make_backup(tmp_path, "db", age, size=100, now=NOW)
    make_backup(tmp_path, "full", 2, size=100, now=NOW)
    read: list[str] = []
    inspect_backups(tmp_path, Thresholds(), NOW, verify=lambda p: read.append(p.name))
    assert len(read) == 2 and any(n.startswith("full_backup_") for n in read)
