"""`chatbot-backup dr-drill` through the real CLI: both scenarios, local and off-site
(an encrypted copy on the moto S3 server), a backup that does not restore, RTO/RPO misses.

Every drill must leave the live platform byte-identical: the whole application root is
hashed before and after. The report files, the metrics and the alert are read back.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Platform, make_sqlite_db
from tests.support.destinations import BackendSet, new_prefix, offsite_backends
from tests.support.services import http_receiver

pytestmark = pytest.mark.timeout(600)


def fill(platform: Platform) -> None:
    make_sqlite_db(platform.db_path, agents=20, messages=200)
    uploads = platform.root / "data" / "uploads"
    (uploads / "docs").mkdir(parents=True, exist_ok=True)
    (uploads / "docs" / "manual.pdf").write_bytes(os.urandom(4096))
    (uploads / "logo.png").write_bytes(b"\x89PNG" + os.urandom(512))
    (platform.root / "data" / "logs").mkdir(exist_ok=True)
    (platform.root / "data" / "logs" / "app.log").write_text("started\n")
    (platform.root / ".env").write_text("OPENAI_API_KEY=sk-test\n")
    (platform.root / "config.php").write_text("<?php return ['debug' => false];\n")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under the application root with its sha256 (and every folder)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def reports(platform: Platform) -> list[dict[str, object]]:
    folder = platform.backups / "reports"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("dr_drill_*.json"))]


def metric(platform: Platform, name: str, scenario: str) -> float | None:
    path = platform.backups / "metrics" / "chatbot_backup.prom"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(f'{name}{{scenario="{scenario}"}}'):
            return float(line.split()[-1])
    return None


def drill(platform: Platform, *args: str, **env: str) -> tuple[int, str, str, dict[str, object]]:
    before = tree_digest(platform.root)
    done = platform.run("dr-drill", *args, extra_env=env)
    assert tree_digest(platform.root) == before, "the drill changed the live platform"
    [*_, report] = reports(platform)
    return done.returncode, done.stdout, done.stderr, report


def drill_api(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, **env: str
) -> tuple[int, str, str, dict[str, object]]:
    """The same drill through the Python API (no CLI start-up): exit code, "", reasons."""
    from flows import dr_drill

    args = {k: env.pop(k) for k in ("scenario",) if k in env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = tree_digest(platform.root)
    result = dr_drill(**args)
    assert tree_digest(platform.root) == before, "the drill changed the live platform"
    [*_, report] = reports(platform)
    return result.exit_code, "", " ".join(result.reasons), report


def backup(kind: str) -> None:
    from flows import backup_all, db_backup

    (backup_all if kind == "full" else db_backup)()


def steps_of(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {str(s["step"]): s for s in report["steps"]}  # type: ignore[attr-defined,index]


STEPS = ["fetch", "verify", "extract", "database restore", "files", "checks"]


def test_complete_failure_drill_restores_proves_and_reports(platform: Platform) -> None:
    fill(platform)
    assert platform.run("backup-all").returncode == 0
    code, out, err, report = drill(platform)
    assert code == 0, out + err
    assert report["passed"] is True and report["scenario"] == "complete-failure"
    steps = steps_of(report)
    assert list(steps) == STEPS and all(s["result"] == "pass" for s in steps.values())
    assert "row counts match" in str(steps["checks"]["detail"])
    assert "integrity_check ok" in str(steps["checks"]["detail"])
    assert "220 rows" in str(steps["checks"]["detail"])  # 20 agents + 200 messages
    assert "sizes and sha256 match" in str(steps["files"]["detail"])
    assert report["rto"]["met"] is True and report["rto"]["limit_minutes"] == 240  # type: ignore[index]
    classes = {r["data_class"]: r for r in report["rpo"]}  # type: ignore[attr-defined]
    assert sorted(classes) == ["Configuration", "Database", "Logs", "Uploaded Files"]
    assert classes["Database"]["limit_hours"] == 6 and classes["Database"]["met"]
    md = Path(str(report["backup"]))
    assert md.name.startswith("full_backup_")
    [md_file] = (platform.backups / "reports").glob("dr_drill_*.md")
    assert "PASSED" in md_file.read_text() and md_file.stat().st_mode & 0o777 == 0o600
    assert metric(platform, "chatbot_dr_drill_success", "complete-failure") == 1
    assert (metric(platform, "chatbot_dr_drill_timestamp_seconds", "complete-failure") or 0) > 0
    assert metric(platform, "chatbot_dr_drill_seconds", "complete-failure") is not None
    # Nothing left behind: no scratch folder in TMPDIR-like places, no staging files.
    assert not list(platform.backups.glob(".offsite-staging/*/*"))


def test_database_corruption_drill_uses_the_newest_database_backup(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(platform)
    backup("full")
    backup("db")
    [db_backup] = platform.backup_files("admin_sqlite_*.db.gz")
    code, out, err, report = drill_api(platform, monkeypatch, scenario="database-corruption")
    assert code == 0, out + err
    assert report["backup"] == db_backup.name
    assert report["rto"]["limit_minutes"] == 120  # type: ignore[index]
    assert [r["data_class"] for r in report["rpo"]] == ["Database"]  # type: ignore[attr-defined]
    assert "row counts match" in str(steps_of(report)["checks"]["detail"])


def test_a_backup_that_does_not_restore_fails_with_the_reason(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(platform)
    backup("db")
    [artifact] = platform.backup_files("admin_sqlite_*.db.gz")
    # A well-formed gzip stream (and sidecar) of something that is not the database.
    data = gzip.compress(b"SQLite format 3\x00" + os.urandom(8192))
    artifact.write_bytes(data)
    sidecar = artifact.with_name(artifact.name + ".sha256")
    sidecar.write_text(f"{hashlib.sha256(data).hexdigest()}  {artifact.name}\n")
    with http_receiver() as hooks:
        code, out, err, report = drill_api(
            platform, monkeypatch, scenario="database-corruption", ALERT_WEBHOOK=hooks.url + "/h"
        )
        [post] = hooks.wait_for(1)
    assert code == 1
    assert report["passed"] is False and report["restored"] is False
    reasons = " ".join(report["reasons"])  # type: ignore[arg-type]
    assert "checks:" in reasons or "database restore:" in reasons, reasons
    alert = json.loads(post.body)
    assert alert["job"] == "dr-drill" and alert["status"] == "failed"
    assert metric(platform, "chatbot_dr_drill_success", "database-corruption") == 0
    # No successful drill yet: the overdue alert's clock starts at 0.
    assert metric(platform, "chatbot_dr_drill_timestamp_seconds", "database-corruption") == 0


def test_a_truncated_archive_fails_at_verify(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(platform)
    backup("full")
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code, _, err, report = drill_api(platform, monkeypatch)
    assert code == 1
    steps = steps_of(report)
    assert steps["fetch"]["result"] == "pass" and steps["verify"]["result"] == "FAIL"
    assert steps["checks"]["result"] == "not run"
    assert "verify:" in report["reasons"][0]  # type: ignore[index]


def test_no_backup_fails(platform: Platform) -> None:
    platform.backups.mkdir(mode=0o700)
    code, _, err, report = drill(platform)
    assert code == 1 and "no full backup" in err and len(err.strip().splitlines()) == 1
    assert steps_of(report)["fetch"]["result"] == "FAIL"


def test_missed_rto_and_rpo_fail_the_drill(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(platform)
    backup("full")
    code, _, err, report = drill_api(
        platform,
        monkeypatch,
        RTO_COMPLETE_FAILURE_MINUTES="0.0001",
        MONITOR_RPO_FILES_HOURS="0.0000001",
    )
    assert code == 1
    assert report["restored"] is True and report["passed"] is False
    reasons = " ".join(report["reasons"])  # type: ignore[arg-type]
    assert "RTO missed" in reasons and "RPO missed for Configuration" in reasons
    assert "RPO missed for Database" not in reasons


# --------------------------------------------------------------------------- off-site


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> BackendSet:
    with offsite_backends(tmp_path_factory.mktemp("drill-offsite"), ("s3",)) as found:
        yield found  # type: ignore[misc]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["complete-failure", "database-corruption"])
def test_drill_from_an_encrypted_s3_copy_only(
    platform: Platform, s3: BackendSet, tmp_path: Path, scenario: str
) -> None:
    import subprocess

    fill(platform)
    identity = tmp_path / "backup.agekey"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    env = {**s3.settings_env("s3", new_prefix()), "BACKUP_ENCRYPTION_RECIPIENTS": public}
    job = "backup-all" if scenario == "complete-failure" else "db-backup"
    done = platform.run(job, "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    # The disaster: no local backup at all.
    for path in platform.backup_files():
        path.unlink()
    code, out, err, report = drill(
        platform,
        "--scenario",
        scenario,
        "--from-offsite",
        **env,
        BACKUP_ENCRYPTION_IDENTITY=str(identity),
    )
    assert code == 0, out + err
    assert report["from_offsite"] is True and str(report["source"]).startswith("s3://")
    fetch = str(steps_of(report)["fetch"]["detail"])
    assert "decrypted" in fetch
    assert "row counts match" in str(steps_of(report)["checks"]["detail"])
    assert not platform.backup_files("*.gz")  # nothing landed beside the backups
    assert not list(platform.backups.glob(".offsite-staging/*/*"))
    # Without the identity the encrypted copy cannot be read: the drill fails, clearly.
    code, _, err, report = drill(platform, "--scenario", scenario, "--from-offsite", **env)
    assert code == 1 and "BACKUP_ENCRYPTION_IDENTITY" in err


def test_restored_sqlite_matches_the_live_database(platform: Platform) -> None:
    """The drill's scratch restore is a real copy: prove the proof with sqlite3 itself."""
    fill(platform)
    backup("db")
    [artifact] = platform.backup_files("admin_sqlite_*.db.gz")
    from tasks.drill.scratch_db import prove, restore_scratch

    work = platform.root.parent / "work"
    scratch = restore_scratch(artifact, None, work, None)
    assert scratch.path is not None
    live = sqlite3.connect(platform.db_path)
    copy = sqlite3.connect(scratch.path)
    for table in ("agents", "messages"):
        query = f"SELECT * FROM {table} ORDER BY id"
        assert live.execute(query).fetchall() == copy.execute(query).fetchall()
    assert "row counts match" in prove(scratch, {"agents": 20, "messages": 200}, None)
    with pytest.raises(Exception, match="row counts differ"):
        prove(scratch, {"agents": 21, "messages": 200}, None)


def test_postgres_drill_uses_a_scratch_database_on_restore_test_database_url(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, pg_database: str
) -> None:
    from tests.conftest import fill_postgres, pg_admin, pg_dump_text, pg_url

    fill_postgres(pg_database, rows=300)
    platform.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(pg_database))
    backup("db")
    before = pg_dump_text(pg_database)
    code, _, reasons, report = drill_api(
        platform,
        monkeypatch,
        scenario="database-corruption",
        RESTORE_TEST_DATABASE_URL=pg_url("postgres"),
    )
    assert code == 0, reasons
    steps = steps_of(report)
    assert "scratch PostgreSQL database chatbot_dr_drill_" in str(
        steps["database restore"]["detail"]
    )
    assert "370 rows" in str(steps["checks"]["detail"])  # 50 agents, 300 messages, 20 events
    assert "row counts match" in str(steps["checks"]["detail"])
    assert pg_dump_text(pg_database) == before  # the live database untouched
    with pg_admin() as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'chatbot_dr_drill_%'"
        ).fetchall()
    assert left == []  # the scratch database was dropped
