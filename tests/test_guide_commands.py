"""The guide's own commands: scripts/*.sh, scripts/backup.crontab, the systemd units, and
every line of the guide's Quick Reference run exactly as written.

SPEC.md, "The guide's own commands". The Quick Reference names /data/backups; the test
gives it its own /data in a private mount namespace (root and `unshare` needed), so the
lines run verbatim without touching the machine's /data.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployments.tiers import tier_by_name
from deployments.timetable import next_runs
from tests.conftest import BIN, Platform, make_sqlite_db

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"

# script -> the job it runs (SPEC.md, Jobs: the seed script column)
WRAPPERS = {
    "backup_all.sh": "backup-all",
    "db_backup.sh": "db-backup",
    "restore_all.sh": "restore-all",
    "db_restore.sh": "db-restore",
    "monitor_backups.sh": "monitor",
    "test_restore.sh": "test-restore",
    "dr_drill.sh": "dr-drill",
}

# The guide's Quick Reference, copied verbatim (comments dropped).
QUICK_REFERENCE = """\
./scripts/backup_all.sh
./scripts/db_backup.sh
./scripts/backup_all.sh --retention-days 30
./scripts/backup_all.sh --offsite
./scripts/restore_all.sh /data/backups/full_backup_20251104_120000.tar.gz
./scripts/db_restore.sh /data/backups/admin_sqlite_20251104_120000.db.gz
./scripts/monitor_backups.sh
./scripts/test_restore.sh
""".splitlines()


@pytest.mark.parametrize("script", sorted(WRAPPERS))
def test_each_script_runs_its_job_with_the_same_arguments(script: str, tmp_path: Path) -> None:
    """Arguments, stdin (the restore prompt's answer) and the exit status pass through."""
    record = tmp_path / "argv"
    fake = tmp_path / "chatbot-backup"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {shlex.quote(str(record))}\n'
        'read answer; echo "answer=$answer"\n'
        "exit 3\n"
    )
    fake.chmod(0o755)
    path = SCRIPTS / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    done = subprocess.run(
        [str(path), "--flag", "a value with spaces", "*"],
        env={**os.environ, "CHATBOT_BACKUP": str(fake)},
        input="yes\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert "answer=yes" in done.stdout
    assert record.read_text().splitlines() == [
        WRAPPERS[script],
        "--flag",
        "a value with spaces",
        "*",
    ]


def test_a_missing_installation_is_one_clear_line(tmp_path: Path) -> None:
    lonely = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, lonely, ignore=shutil.ignore_patterns("demo", "test", "*.py"))
    done = subprocess.run(
        [str(lonely / "db_backup.sh")],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 127
    assert done.stderr.strip().splitlines() == [
        "db_backup.sh: chatbot-backup is not installed (pip install . in the application "
        "root, or set CHATBOT_BACKUP)"
    ]


# --------------------------------------------------------------------------- crontab

# crontab script+flags -> the tier deployment whose schedule and retention it must have
CRON_TIERS = {
    ("backup_all.sh", "--retention-days 7"): "backup-all/daily",
    ("backup_all.sh", "--retention-days 30 --offsite --tier weekly"): "backup-all/weekly-offsite",
    ("db_backup.sh", "--retention-days 2"): "db-backup/every-6h",
    ("monitor_backups.sh", ""): "monitor-backups/hourly",
}


def crontab_lines() -> list[tuple[str, str, list[str]]]:
    out = []
    for line in (SCRIPTS / "backup.crontab").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 5)
        command = fields[5]
        match = re.fullmatch(r"cd (\S+) && \./scripts/(\S+)((?: [^>]+?)?) >> (\S+) 2>&1", command)
        assert match, line
        out.append((" ".join(fields[:5]), match.group(2), shlex.split(match.group(3))))
    return out


def test_crontab_is_the_guides_four_lines_on_the_tier_table() -> None:
    from flows.cli import build_parser

    lines = crontab_lines()
    assert len(lines) == 4
    parser = build_parser()
    for cron, script, args in lines:
        tier = tier_by_name(CRON_TIERS[(script, " ".join(args))])
        assert cron == tier.cron, (script, args)
        assert os.access(SCRIPTS / script, os.X_OK)
        parsed = parser.parse_args([WRAPPERS[script], *args])  # the CLI accepts them
        if tier.retention_days is not None:
            assert parsed.retention_days == tier.retention_days
            assert bool(parsed.offsite) == tier.offsite


# --------------------------------------------------------------------------- systemd

UNITS = ("chatbot-backup", "chatbot-backup-monitor")
TIMER_TIERS = {
    "chatbot-backup": "backup-all/daily",
    "chatbot-backup-monitor": "monitor-backups/hourly",
}


def _unit_value(text: str, key: str) -> str:
    [value] = re.findall(rf"^{key}=(.*)$", text, re.M)
    return value.strip()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify_and_timers_follow_the_tier_table(tmp_path: Path) -> None:
    # The units name the guide's /var/www/chatbot; verify copies that point at a real root.
    root = tmp_path / "chatbot"
    shutil.copytree(SCRIPTS, root / "scripts", ignore=shutil.ignore_patterns("demo", "test"))
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        for suffix in (".service", ".timer"):
            text = (SCRIPTS / f"{name}{suffix}").read_text()
            (units / f"{name}{suffix}").write_text(text.replace("/var/www/chatbot", str(root)))
    verify = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in units.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        if line.strip() and "chatbot" in line  # systemd's own units on this host are not ours
    ]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
    after = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    for name, deployment in TIMER_TIERS.items():
        timer = (SCRIPTS / f"{name}.timer").read_text()
        calendar = _unit_value(timer, "OnCalendar")
        shown = subprocess.run(
            [
                "systemd-analyze",
                "calendar",
                "--iterations=5",
                f"--base-time={after:%Y-%m-%d %H:%M:%S} UTC",
                calendar,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        )
        assert shown.returncode == 0, shown.stderr
        elapses = re.findall(
            r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", shown.stdout
        )
        want = [
            f"{d:%Y-%m-%d %H:%M:%S}"
            for d in next_runs(tier_by_name(deployment).cron, "UTC", after, 5)
        ]
        assert elapses == want, (name, shown.stdout)
        service = (SCRIPTS / f"{name}.service").read_text()
        assert _unit_value(timer, "Unit") == f"{name}.service"
        assert "/scripts/" in _unit_value(service, "ExecStart")


# --------------------------------------------------------------------------- Quick Reference


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m for a private /data")
def test_every_quick_reference_line_runs_as_written(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows import backup_all, db_backup
    from tasks.core import clock

    make_sqlite_db(platform.db_path)
    (platform.root / "data" / "uploads" / "a.txt").write_text("upload\n")
    (platform.root / ".env").write_text("APP_NAME=chatbot\n")
    shutil.copytree(SCRIPTS, platform.root / "scripts")
    fake_data = tmp_path / "data"
    backups = fake_data / "backups"
    made_mount_point = not Path("/data").exists()
    if made_mount_point:
        Path("/data").mkdir(mode=0o755)  # an empty mount point; nothing is written to it
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("BACKUP_DIR", "APP_ROOT")},
        **{k: v for k, v in platform.env.items() if k not in ("BACKUP_DIR", "APP_ROOT")},
        "PATH": f"{BIN}:{os.environ['PATH']}",  # the installed chatbot-backup
        "OFFSITE_DESTINATION": str(tmp_path / "offsite"),
        "MONITOR_CHECK_DEPLOYMENTS": "false",
        "BACKUP_LOCK_TIMEOUT": "30",
    }
    (tmp_path / "offsite").mkdir()
    outcomes = {}

    def run(line: str) -> None:
        inner = (
            f"mount --bind {shlex.quote(str(fake_data))} /data && "
            f"cd {shlex.quote(str(platform.root))} && {line}"
        )
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
            env=env,
            input="yes\n",
            capture_output=True,
            text=True,
            timeout=300,
        )
        outcomes[line] = (done.returncode, done.stdout[-2000:] + done.stderr[-2000:])

    backups.mkdir(parents=True, mode=0o700)
    for line in QUICK_REFERENCE[:4]:  # the backups (they rotate with 7 days' retention)
        run(line)
    # The two backups the guide's restore lines name, made at the guide's moment (after
    # the backup lines, whose rotation would otherwise remove a 2025 backup).
    monkeypatch.setenv("BACKUP_DIR", str(backups))
    moment = datetime(2025, 11, 4, 12, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(clock, "utc_now", lambda: moment)
    backup_all()
    db_backup()
    monkeypatch.undo()
    assert (backups / "full_backup_20251104_120000.tar.gz").is_file()
    assert (backups / "admin_sqlite_20251104_120000.db.gz").is_file()
    for line in QUICK_REFERENCE[4:]:
        run(line)
    # monitor: warnings (e.g. the guide's 2025 backups are old) are exit 1, not a failure.
    for line, (code, output) in outcomes.items():
        allowed = (0, 1) if "monitor_backups" in line else (0,)
        assert code in allowed, f"{line}: exit {code}\n{output}"
    assert "Are you sure you want to continue? (yes/no)" in outcomes[QUICK_REFERENCE[5]][1]
    assert list((tmp_path / "offsite").glob("full_backup_*.tar.gz"))
    assert not any(Path("/data").iterdir()), "the machine's /data was written to"
    if made_mount_point:
        Path("/data").rmdir()
    assert sys.executable  # the same interpreter's installation ran every line
