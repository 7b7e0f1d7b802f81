"""The tier deployments, against SPEC.md's schedule table written out by hand.

A real `prefect server start` (scheduler service off, so the only runs are the ones a
test makes), the real `chatbot-backup serve` in a subprocess, the real `prefect deploy
--all` and a real process worker. Everything read back through the Prefect API.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from deployments.build import build_deployments
from deployments.render_prefect_yaml import render
from deployments.tiers import ON_DEMAND, TIER_TABLE, Tier
from deployments.timetable import next_runs
from tasks.catalog.records import read_meta
from tasks.core.errors import ConfigError
from tasks.core.lock import backup_dir_lock
from tests.conftest import make_sqlite_db, sqlite_dump
from tests.support.services import PrefectService, prefect_server

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# SPEC.md, "Schedules (retention tiers)", copied by hand: deployment -> (cron, parameters).
SPEC_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "db-backup/every-6h": (
        "0 */6 * * *",
        {"retention_days": 2, "offsite": False, "tier": "every-6h"},
    ),
    "backup-all/daily": ("0 2 * * *", {"retention_days": 7, "offsite": False, "tier": "daily"}),
    "backup-all/weekly-offsite": (
        "0 3 * * 0",
        {"retention_days": 30, "offsite": True, "tier": "weekly"},
    ),
    "backup-all/monthly-offsite": (
        "0 4 1 * *",
        {"retention_days": 365, "offsite": True, "tier": "monthly"},
    ),
    "monitor-backups/hourly": ("0 * * * *", {}),
    "dr-drill/quarterly": ("0 5 1 1,4,7,10 *", {}),
    "offsite-verify/weekly": ("0 6 * * 0", {}),
}


# -- the table, without a server ----------------------------------------------------


def test_tier_table_is_the_spec_table() -> None:
    assert {t.full_name: (t.cron, t.parameters) for t in TIER_TABLE} == SPEC_TABLE


def test_the_monitor_checks_the_same_deployments_and_retentions() -> None:
    # tasks/ cannot import deployments/ (layers only look down), so it keeps a copy.
    from tasks.monitor.checks import SCHEDULED_DEPLOYMENTS, TIER_RETENTION_DAYS

    assert sorted(SCHEDULED_DEPLOYMENTS) == sorted(SPEC_TABLE)
    assert TIER_RETENTION_DAYS == {t.tier: t.retention_days for t in TIER_TABLE if t.tier}


def test_committed_prefect_yaml_is_generated_from_the_table(tmp_path: Path) -> None:
    check = subprocess.run(
        [sys.executable, "-m", "deployments.render_prefect_yaml", "--check", "--timezone", "UTC"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    document = yaml.safe_load((REPO / "prefect.yaml").read_text())
    scheduled = [d for d in document["deployments"] if d["schedules"]]
    from_yaml = {
        f"{t.flow}/{d['name']}": (d["schedules"][0]["cron"], d["parameters"])
        for d, t in zip(scheduled, TIER_TABLE, strict=True)
    }
    assert from_yaml == SPEC_TABLE
    # The on-demand ones follow, unscheduled, each with its flow's entrypoint.
    on_demand = [d for d in document["deployments"] if not d["schedules"]]
    assert [(d["name"], d["entrypoint"]) for d in on_demand] == [
        (t.deployment, t.entrypoint) for t in ON_DEMAND
    ]
    assert {t.flow for t in ON_DEMAND} >= {
        "db-restore",
        "restore-all",
        "test-restore",
        "offsite-sync",
        "migrate-sqlite-to-postgres",
        "pitr-restore",
    }
    # A hand edit (or a table change without rendering) is caught.
    drifted = tmp_path / "prefect.yaml"
    drifted.write_text((REPO / "prefect.yaml").read_text().replace("0 2 * * *", "30 2 * * *"))
    check = subprocess.run(
        [sys.executable, "-m", "deployments.render_prefect_yaml", "--check"]
        + ["--timezone", "UTC", "--output", str(drifted)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1 and "differs from deployments/tiers.py" in check.stderr


def test_render_uses_the_timezone_it_is_given() -> None:
    document = yaml.safe_load(render("Europe/Berlin"))
    zones = {d["schedules"][0]["timezone"] for d in document["deployments"] if d["schedules"]}
    assert zones == {"Europe/Berlin"}
    assert all(d["work_pool"]["name"] == "chatbot-backup" for d in document["deployments"])


def test_a_tier_whose_flow_is_missing_is_reported_not_fatal() -> None:
    missing = Tier("x", "no-such-flow", "flows.no_such_module.no_such_flow", "0 * * * *", "test")
    built = build_deployments("UTC", (missing, TIER_TABLE[0]))
    assert [d.full_name for d in built.deployments] == ["db-backup/every-6h"]
    assert "flows.no_such_module cannot be imported" in built.unavailable["no-such-flow/x"]


def test_unknown_timezone_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="BACKUP_TIMEZONE: unknown timezone 'Mars/Olympus'"):
        build_deployments("Mars/Olympus")


def test_next_runs_follow_the_timezone_through_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 02:00 does not exist on 2026-03-29 in Berlin: that day's daily run is at 03:00 CEST.
    spring = next_runs("0 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=berlin), 4)
    assert [d.isoformat() for d in spring] == [
        "2026-03-28T02:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
        "2026-03-31T02:00:00+02:00",
    ]
    # 02:00 happens twice on 2026-10-25: the daily run happens once.
    autumn = next_runs("0 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=berlin), 3)
    assert [d.astimezone(UTC).strftime("%m-%d %H:%M") for d in autumn] == [
        "10-25 00:00",
        "10-26 01:00",
        "10-27 01:00",
    ]
    weekly = next_runs("0 3 * * 0", "UTC", datetime(2026, 11, 26, tzinfo=UTC), 2)
    assert [d.strftime("%a %Y-%m-%d %H:%M") for d in weekly] == [
        "Sun 2026-11-29 03:00",
        "Sun 2026-12-06 03:00",
    ]


def test_schedule_command_prints_every_tier_with_next_runs(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    name = "full_backup_20260101_020000.tar.gz"
    (backups / name).write_bytes(b"x")
    (backups / f"{name}.meta.json").write_text('{"tier": "weekly"}')
    env = {**os.environ, "BACKUP_DIR": str(backups), "BACKUP_TIMEZONE": "Asia/Tokyo"}
    env.pop("PREFECT_API_URL", None)  # works without a server
    before = datetime.now(UTC)
    done = subprocess.run(
        [str(BIN / "chatbot-backup"), "schedule", "--count", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Tier schedules in Asia/Tokyo")
    table = lines[lines.index(next(x for x in lines if x.startswith("DEPLOYMENT"))) + 1 :]
    table = table[: table.index("")]
    rows = {line.split()[0]: line for line in table}
    assert set(rows) == set(SPEC_TABLE)
    for full_name, (cron, _) in SPEC_TABLE.items():
        row = rows[full_name]
        assert cron in row and "JST" in row
        expected = next_runs(cron, "Asia/Tokyo", before, 1)[0]
        assert expected.strftime("%a %Y-%m-%d %H:%M JST") in row, row
    assert "Thu 2026-01-01 11:00 JST" in rows["backup-all/weekly-offsite"]  # its last backup
    assert "never" in rows["backup-all/daily"]
    assert "Following runs:" in lines


def test_schedule_and_serve_refuse_bad_settings_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "BACKUP_TIMEZONE": "Mars/Olympus", "BACKUP_DIR": str(tmp_path)}
    env.pop("PREFECT_API_URL", None)
    for command in ("schedule", "serve"):
        done = subprocess.run(
            [str(BIN / "chatbot-backup"), command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 3
        assert done.stderr.strip().splitlines() == [
            "chatbot-backup: error: BACKUP_TIMEZONE: unknown timezone 'Mars/Olympus'; "
            "use an IANA name such as UTC or Europe/Berlin"
        ]
    env["BACKUP_TIMEZONE"] = "UTC"
    done = subprocess.run(
        [str(BIN / "chatbot-backup"), "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3 and "PREFECT_API_URL is not set" in done.stderr


def test_systemd_unit_runs_serve_in_the_app_root(tmp_path: Path) -> None:
    text = (REPO / "deployments" / "chatbot-backup.service").read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["ExecStart"].endswith("/chatbot-backup serve")
    assert settings["Restart"] == "on-failure"
    assert settings["WorkingDirectory"] == "/var/www/chatbot"
    assert "EnvironmentFile" in settings and "APP_ROOT=/var/www/chatbot" in text
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "chatbot-backup.service"
    unit.write_text(text.replace(settings["ExecStart"], f"{BIN / 'chatbot-backup'} serve"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr


# -- against a real Prefect server ------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[PrefectService]:
    """A Prefect server of this module's own, with its scheduler off: runs come from tests."""
    saved = os.environ.get("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED")
    os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "false"
    try:
        with prefect_server() as service:
            yield service
    finally:
        if saved is None:
            os.environ.pop("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", None)
        else:
            os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = saved


@pytest.fixture
def client(prefect_api: PrefectService) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api.api_url}):
        with get_client(sync_client=True) as c:
            yield c


def read_back(client: Any, full_name: str) -> dict[str, Any]:
    """What the Prefect API says about a deployment, in the shape of SPEC_TABLE."""
    deployment = client.read_deployment_by_name(full_name)
    assert len(deployment.schedules) == 1
    schedule = deployment.schedules[0]
    return {
        "name": f"{client.read_flow(deployment.flow_id).name}/{deployment.name}",
        "cron": schedule.schedule.cron,
        "timezone": schedule.schedule.timezone,
        "active": schedule.active,
        "parameters": deployment.parameters,
        "paused": deployment.paused,
        "limit": deployment.global_concurrency_limit.limit,
        "collision": str(deployment.concurrency_options.collision_strategy.value),
        "entrypoint": deployment.entrypoint,
        "work_pool": deployment.work_pool_name,
        "tags": sorted(deployment.tags),
    }


def expected(full_name: str, timezone: str, work_pool: str | None) -> dict[str, Any]:
    cron, parameters = SPEC_TABLE[full_name]
    tier = next(t for t in TIER_TABLE if t.full_name == full_name)
    return {
        "name": full_name,
        "cron": cron,
        "timezone": timezone,
        "active": True,
        "parameters": parameters,
        "paused": False,
        "limit": 1,
        "collision": "CANCEL_NEW",
        "entrypoint": tier.entrypoint,
        "work_pool": work_pool,
        "tags": sorted(["chatbot-backup", f"tier:{full_name.split('/')[1]}"]),
    }


def test_registered_deployments_read_back_as_the_spec_table(client: Any) -> None:
    built = build_deployments("UTC")
    assert built.unavailable == {}
    for deployment in built.deployments:
        deployment.apply()
    for full_name in SPEC_TABLE:
        assert read_back(client, full_name) == expected(full_name, "UTC", None)


@pytest.fixture
def app(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "app"
    make_sqlite_db(root / "data" / "admin.db")
    (root / "data" / "uploads" / "2026").mkdir(parents=True)
    (root / "data" / "uploads" / "2026" / "logo.png").write_bytes(os.urandom(2048))
    (root / ".env").write_text("ADMIN_DB_TYPE=sqlite\nSOME_SETTING=1\n")
    (root / "config.php").write_text("<?php return ['x' => 1];\n")
    return {"root": root, "backups": tmp_path / "backups", "home": tmp_path / "prefect-home"}


def app_env(app: dict[str, Path], prefect_api: PrefectService, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(prefect_api.env())
    env.update(
        APP_ROOT=str(app["root"]),
        BACKUP_DIR=str(app["backups"]),
        BACKUP_LOCK_TIMEOUT="30",
        PREFECT_HOME=str(app["home"]),
    )
    env.update(extra)
    return env


def wait_for(what: str, check: Any, timeout: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def assert_db_backup_round_trips(artifact: Path, live_db: Path, scratch: Path) -> None:
    with gzip.open(artifact, "rb") as src, open(scratch, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert sqlite_dump(scratch) == sqlite_dump(live_db)


def test_serve_catches_up_once_and_runs_the_daily_and_weekly_tiers(
    client: Any, app: dict[str, Path], prefect_api: PrefectService, tmp_path: Path
) -> None:
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.states import Scheduled

    # serve was down for a day: four every-6h runs were due and never ran.
    every_6h = build_deployments("UTC", (TIER_TABLE[0],)).deployments[0]
    deployment_id = every_6h.apply()
    now = datetime.now(UTC)
    missed = [
        client.create_flow_run_from_deployment(
            deployment_id, state=Scheduled(scheduled_time=now - timedelta(hours=h))
        )
        for h in (24, 18, 12, 6)
    ]

    log = tmp_path / "serve.log"
    offsite = tmp_path / "offsite"  # a mounted path, the simplest OFFSITE_DESTINATION
    offsite.mkdir()
    env = app_env(
        app,
        prefect_api,
        BACKUP_TIMEZONE="America/New_York",
        BACKUP_LOCK_TIMEOUT="120",
        OFFSITE_DESTINATION=str(offsite),
    )
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    with log.open("w") as out:
        serve = subprocess.Popen(
            [str(BIN / "chatbot-backup"), "serve"],
            cwd=app["root"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # One catch-up: the newest missed run runs, the three older ones are cancelled.
        def catch_up_done() -> bool:
            state = client.read_flow_run(missed[-1].id).state
            return state is not None and state.is_final()

        wait_for("the catch-up run", catch_up_done, 120, log)
        assert client.read_flow_run(missed[-1].id).state.type == StateType.COMPLETED
        for run in missed[:-1]:
            state = client.read_flow_run(run.id).state
            assert state.type == StateType.CANCELLED
            assert "missed while no `chatbot-backup serve` was running" in state.message
        assert "4 run(s) missed while nothing served it" in log.read_text()
        time.sleep(3)  # three more polls: nothing else runs
        db_backups = sorted(app["backups"].glob("admin_sqlite_*.db.gz"))
        assert len(db_backups) == 1
        assert read_meta(db_backups[0])["tier"] == "every-6h"
        assert_db_backup_round_trips(
            db_backups[0], app["root"] / "data" / "admin.db", tmp_path / "r.db"
        )

        # serve registered every tier, with the schedules in BACKUP_TIMEZONE.
        for full_name in SPEC_TABLE:
            assert read_back(client, full_name) == expected(full_name, "America/New_York", None)

        # Trigger the daily tier by hand (as `prefect deployment run backup-all/daily` does)
        # while another job, a CLI run say, holds BACKUP_DIR: the run waits for the lock...
        def state_of(run_id: Any) -> Any:
            return client.read_flow_run(run_id).state

        with backup_dir_lock(app["backups"], "a CLI run", timeout=5):
            run = run_deployment("backup-all/daily", timeout=0)
            wait_for("the daily run", lambda: state_of(run.id).type == StateType.RUNNING, 90, log)
            # ...and a second daily run meanwhile is cancelled by the deployment's limit.
            second = run_deployment("backup-all/daily", timeout=0)
            wait_for("the second daily run", lambda: state_of(second.id).is_final(), 90, log)
            assert state_of(second.id).type == StateType.CANCELLED
            assert "concurrency limit" in state_of(second.id).message
            assert state_of(run.id).type == StateType.RUNNING
            assert not list(app["backups"].glob("full_backup_*"))
        wait_for("the daily run to finish", lambda: state_of(run.id).is_final(), 300, log)
        run = client.read_flow_run(run.id)
        assert run.state.type == StateType.COMPLETED, run.state
        assert run.parameters == SPEC_TABLE["backup-all/daily"][1]
        (archive,) = app["backups"].glob("full_backup_*.tar.gz")
        assert read_meta(archive)["tier"] == "daily"
        with tarfile.open(archive) as tar:
            manifest_member = next(m for m in tar.getmembers() if m.name.endswith("/MANIFEST.json"))
            manifest_file = tar.extractfile(manifest_member)
            assert manifest_file is not None
            manifest = json.load(manifest_file)
            assert manifest["tier"] == "daily"
            db_member = next(m for m in tar.getmembers() if "/database/" in m.name)
            tar.extract(db_member, tmp_path / "x", filter="data")
        assert_db_backup_round_trips(
            tmp_path / "x" / db_member.name, app["root"] / "data" / "admin.db", tmp_path / "d.db"
        )
        check = subprocess.run(
            ["sha256sum", "-c", f"{archive.name}.sha256"], cwd=archive.parent, capture_output=True
        )
        assert check.returncode == 0
        artifacts = client.read_artifacts()
        assert any(a.flow_run_id == run.id and a.type == "table" for a in artifacts)

        # The weekly tier is a full backup of its own tier, copied off-site.
        weekly = run_deployment("backup-all/weekly-offsite", timeout=300)
        assert weekly.state is not None and weekly.state.type == StateType.COMPLETED, weekly.state
        (weekly_archive,) = set(app["backups"].glob("full_backup_*.tar.gz")) - {archive}
        assert read_meta(weekly_archive)["tier"] == "weekly"
        (remote,) = offsite.rglob(weekly_archive.name)
        assert remote.read_bytes() == weekly_archive.read_bytes()
        assert not list(offsite.rglob(archive.name))  # the daily tier stays local

        # A finished run's process needs a moment of teardown; stopping serve sooner would
        # cancel it (Prefect marks runs a stopping runner still tracks as Cancelled).
        wait_for("the run processes to exit", lambda: not children(serve.pid), 60, log)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    assert client.read_flow_run(run.id).state.type == StateType.COMPLETED


def test_prefect_deploy_all_creates_the_same_deployments_in_a_process_pool(
    client: Any, app: dict[str, Path], prefect_api: PrefectService, tmp_path: Path
) -> None:
    env = app_env(app, prefect_api)
    prefect = str(BIN / "prefect")
    workdir = tmp_path / "deploy-from-here"
    workdir.mkdir()
    yaml_before = (REPO / "prefect.yaml").read_text()

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [prefect, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    run("work-pool", "create", "chatbot-backup", "--type", "process", "--overwrite")
    run("--no-prompt", "deploy", "--all", "--prefect-file", str(REPO / "prefect.yaml"))
    assert (REPO / "prefect.yaml").read_text() == yaml_before  # deploy did not rewrite it

    served = {d.full_name: d.entrypoint for d in build_deployments("UTC").deployments}
    for full_name in SPEC_TABLE:
        got = read_back(client, full_name)
        assert got == expected(full_name, "UTC", "chatbot-backup")
        assert got["entrypoint"] == served[full_name]  # the same flow code as `serve` runs

    # And the worker path runs: a process worker executes one db-backup run.
    run("deployment", "run", "db-backup/every-6h")
    run("worker", "start", "--pool", "chatbot-backup", "--run-once", timeout=300)
    (artifact,) = app["backups"].glob("admin_sqlite_*.db.gz")
    assert read_meta(artifact)["tier"] == "every-6h"
    assert_db_backup_round_trips(artifact, app["root"] / "data" / "admin.db", tmp_path / "w.db")
