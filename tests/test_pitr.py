"""Point-in-time recovery on real, throwaway PostgreSQL 15 clusters (issue 19's list).

Each cluster archives its WAL through the real `chatbot-backup wal-push %p` (run by the
server as the `postgres` user, tests/support/pitr_cluster.py); base-backup, pitr-restore
and pitr-setup run through the real CLI. A restored directory is then started the way an
operator would, and its rows are read back. One cluster (`site`) is shared by the tests
that leave its archive's timelines alone; the timeline-switch and setup tests bring their
own.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.catalog.records import list_base_backups
from tasks.core.errors import VerifyError
from tasks.pitr.archiver_status import check_continuity, judge_archiver, read_archiver
from tasks.pitr.base_catalog import list_bases
from tasks.pitr.base_manifest import read_base_archive
from tasks.pitr.commands import archive_command, wal_env
from tasks.pitr.segments import lsn_segno, parse_lsn, segment_name
from tasks.pitr.wal_catalog import list_archive, read_histories
from tests.support.pitr_cluster import (
    VENV_BIN,
    Cluster,
    postgres_cli,
    postgres_folder,
    run_cli,
    start_restored,
    throwaway_cluster,
    wait_until_primary,
)

pytestmark = pytest.mark.slow


@dataclass
class Site:
    """A platform whose admin database lives on a cluster that archives its WAL."""

    folder: Path
    backups: Path
    wal: Path
    cluster: Cluster
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, **env}, cwd=self.folder)


def platform_env(
    folder: Path, backups: Path, cluster: Cluster, prefect_api_url: str
) -> dict[str, str]:
    app = folder / "app"
    app.mkdir(exist_ok=True)
    return {
        "APP_ROOT": str(app),
        "BACKUP_DIR": str(backups),
        "ADMIN_DB_TYPE": "postgres",
        "ADMIN_DATABASE_URL": cluster.url("appdb"),
        "PITR_ENABLED": "true",
        "PITR_COMMAND": shlex.join(postgres_cli()),
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "BACKUP_LOCK_TIMEOUT": "30",
    }


def backup_folder(folder: Path) -> Path:
    backups = folder / "backups"
    backups.mkdir(mode=0o700)
    shutil.chown(backups, "postgres", "postgres")
    return backups


@contextlib.contextmanager
def archiving_site(prefect_api_url: str, prefix: str) -> Iterator[Site]:
    folder = postgres_folder(prefix)
    try:
        backups = backup_folder(folder)
        wal = backups / "wal"
        command = archive_command(postgres_cli(), wal_env(wal))
        with throwaway_cluster(folder, command) as cluster:
            cluster.execute("CREATE DATABASE appdb")
            yield Site(
                folder,
                backups,
                wal,
                cluster,
                platform_env(folder, backups, cluster, prefect_api_url),
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def take_base(site: Site) -> Path:
    done = site.run("base-backup")
    assert done.returncode == 0, done.stderr + done.stdout
    bases = list_bases(site.backups)
    assert bases, done.stdout
    return bases[-1].path


@pytest.fixture(scope="module")
def site(prefect_api_url: str) -> Iterator[Site]:
    """The shared cluster: a base backup, then a few more archived segments after it."""
    with archiving_site(prefect_api_url, "cbpitr-site-") as shared:
        take_base(shared)
        shared.cluster.execute("CREATE TABLE filler(id serial, pad text)", "appdb")
        for _ in range(2):  # segments after the base's: room for a gap before any T
            shared.cluster.execute("INSERT INTO filler(pad) VALUES ('x')", "appdb")
            shared.cluster.switch_wal()
        yield shared


def batches_around_a_time(cluster: Cluster, table: str) -> datetime:
    """Batch A, then the recorded time T, then batch B; B's WAL archived. Returns T."""
    cluster.execute(f"CREATE TABLE {table}(id int PRIMARY KEY, batch text)", "appdb")
    cluster.execute(f"INSERT INTO {table} SELECT g, 'A' FROM generate_series(1, 50) g", "appdb")
    time.sleep(1.1)
    target = datetime.now(UTC)
    time.sleep(1.1)
    cluster.execute(f"INSERT INTO {table} SELECT g, 'B' FROM generate_series(51, 80) g", "appdb")
    cluster.switch_wal()
    return target


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def batches_in(cluster: Cluster, table: str) -> list[tuple[object, ...]]:
    return cluster.execute(
        f"SELECT batch, count(*) FROM {table} GROUP BY batch ORDER BY batch", "appdb"
    )


def live_state(cluster: Cluster) -> tuple[str, bool]:
    return (
        (cluster.data / "postgresql.auto.conf").read_text(),
        (cluster.data / "recovery.signal").exists(),
    )


# --------------------------------------------------------------------------- recovery


def test_pitr_restore_to_a_time_holds_exactly_the_rows_before_it(site: Site) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    target = batches_around_a_time(site.cluster, table)
    live_before = live_state(site.cluster)
    dest = site.folder / f"restore-{table}"

    done = site.run(
        "pitr-restore", "--target-time", stamp(target), "--data-dir", str(dest), "--verify"
    )

    assert done.returncode == 0, done.stderr + done.stdout
    assert "verified: recovery paused at the target" in done.stdout
    assert f"{table}=50" in done.stdout  # the check read the restored rows itself
    assert (dest / "recovery.signal").is_file()
    conf = (dest / "postgresql.auto.conf").read_text()
    assert "recovery_target_time" in conf and "wal-fetch %f %p" in conf
    assert live_state(site.cluster) == live_before  # the live cluster's directory is untouched
    assert batches_in(site.cluster, table) == [("A", 50), ("B", 30)]

    # Started as the operator would, it recovers to T again and opens: exactly batch A.
    restored = start_restored(dest, site.folder, f"r-{table}", "archive_mode=off")
    try:
        wait_until_primary(restored)
        assert batches_in(restored, table) == [("A", 50)]
    finally:
        restored.stop()


def test_target_outside_the_archive_is_exit_3_before_anything_is_written(site: Site) -> None:
    oldest = list_bases(site.backups)[0]
    dest = site.folder / f"never-{uuid.uuid4().hex[:6]}"
    cases = {
        "before the oldest base backup": oldest.start_time - timedelta(hours=1),
        "after the newest archived WAL": datetime.now(UTC) + timedelta(hours=1),
    }
    for reason, moment in cases.items():
        done = site.run("pitr-restore", "--target-time", stamp(moment), "--data-dir", str(dest))
        assert done.returncode == 3, done.stderr
        assert reason in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not dest.exists()
    done = site.run("pitr-restore", "--target-time", "yesterday", "--data-dir", str(dest))
    assert done.returncode == 3 and "--target-time" in done.stderr
    assert not dest.exists()


def test_only_an_empty_new_folder_never_the_live_cluster(site: Site) -> None:
    moment = stamp(datetime.now(UTC) - timedelta(seconds=1))
    busy = site.folder / f"busy-{uuid.uuid4().hex[:6]}"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    inside = site.cluster.data / f"restore-{uuid.uuid4().hex[:6]}"
    inside.mkdir()
    try:
        for folder, reason in (
            (busy, "is not empty"),
            (site.cluster.data, "the live cluster's data directory"),
            (inside, "inside the live cluster's data directory"),
        ):
            done = site.run("pitr-restore", "--target-time", moment, "--data-dir", str(folder))
            assert done.returncode == 3, done.stderr
            assert reason in done.stderr
        assert [p.name for p in busy.iterdir()] == ["keep.txt"]
        assert not any(inside.iterdir())
    finally:
        inside.rmdir()


def test_a_wal_gap_is_reported_and_makes_pitr_restore_fail_clearly(site: Site) -> None:
    table = f"g_{uuid.uuid4().hex[:8]}"
    target = batches_around_a_time(site.cluster, table)
    base = list_bases(site.backups)[-1]
    archive = list_archive(site.wal)
    assert check_continuity([base], archive, read_histories(archive))[0].severity == "ok"
    # A segment between the base's start and T goes missing from (a copy of) the archive.
    gone = segment_name(base.timeline, lsn_segno(base.start_lsn) + 2)
    broken = site.folder / f"wal-gap-{table}"
    shutil.copytree(site.wal, broken)
    for path in broken.glob(gone + ".*"):
        path.unlink()
    damaged = list_archive(broken)
    finding = check_continuity([base], damaged, read_histories(damaged))[0]
    assert finding.severity == "critical" and gone in finding.reason

    dest = site.folder / f"restore-{table}"
    done = site.run(
        "pitr-restore", "--target-time", stamp(target), "--data-dir", str(dest),
        WAL_ARCHIVE_DIR=str(broken),
    )  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert f"WAL gap: segment {gone} is missing" in done.stderr
    assert not dest.exists()

    # A segment that is there but holds no WAL (zeros, with a matching sidecar: the
    # planner cannot tell) stops recovery early: --verify says so, exit 7.
    empty = gzip_bytes(bytes(16 * 1024 * 1024))
    shutil.copy2(site.wal / (gone + ".gz"), broken / (gone + ".gz"))  # keep its mtime
    (broken / (gone + ".gz")).write_bytes(empty)
    (broken / (gone + ".gz.sha256")).write_text(f"{hashlib.sha256(empty).hexdigest()}  {gone}.gz\n")
    shutil.chown(broken, "postgres", "postgres")
    for path in broken.iterdir():
        shutil.chown(path, "postgres", "postgres")
    done = site.run(
        "pitr-restore", "--target-time", stamp(target), "--data-dir", str(dest), "--verify",
        WAL_ARCHIVE_DIR=str(broken),
    )  # fmt: skip
    assert done.returncode == 7, done.stderr + done.stdout
    assert "recovery did not reach" in done.stderr
    assert "recovery ended before configured recovery target was reached" in done.stderr


def test_the_monitor_checks_the_archiver_reports_a_gap_and_exports_the_wal_metric(
    site: Site,
) -> None:
    site.cluster.execute("INSERT INTO filler(pad) VALUES ('m')", "appdb")
    site.cluster.switch_wal()
    metrics = site.folder / "monitor-metrics.prom"
    env = {"METRICS_FILE": str(metrics), "MONITOR_CHECK_DEPLOYMENTS": "false"}
    done = site.run("monitor", **env)
    out = done.stdout + done.stderr
    assert "wal-continuity" in out and "no gap" in out, out
    assert "wal-archiver-failing" not in out and "archive_mode is" not in out, out
    samples = metrics.read_text()
    wal_line = next(
        line for line in samples.splitlines()
        if line.startswith("chatbot_wal_last_archived_timestamp_seconds ")
    )  # fmt: skip
    [last] = site.cluster.execute(
        "SELECT extract(epoch FROM last_archived_time) FROM pg_stat_archiver"
    )
    assert abs(float(wal_line.split()[1]) - float(last[0])) < 1.0
    base = list_bases(site.backups)[-1]
    base_line = next(
        line for line in samples.splitlines()
        if line.startswith('chatbot_last_backup_timestamp_seconds{kind="base"}')
    )  # fmt: skip
    assert abs(float(base_line.split()[1]) - base.end_time.timestamp()) < 1.0
    promtool = shutil.which("promtool")
    if promtool:
        lint = subprocess.run([promtool, "check", "metrics"], input=samples, text=True,
                              capture_output=True)  # fmt: skip
        assert lint.returncode == 0, lint.stdout + lint.stderr
    # The catalog shows the base backup as kind "base", good.
    [listed] = [r for r in list_base_backups(site.backups) if r.path == base.path]
    assert listed.kind == "base" and listed.good, listed.why

    # A segment after the base deleted from (a copy of) the archive: critical, named.
    gone = segment_name(base.timeline, lsn_segno(base.start_lsn) + 1)
    broken = site.folder / "wal-gap-monitor"
    shutil.copytree(site.wal, broken)
    for path in broken.glob(gone + ".*"):
        path.unlink()
    done = site.run("monitor", WAL_ARCHIVE_DIR=str(broken), **env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"WAL gap: {gone}" in done.stdout + done.stderr


def wait_for_file(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def gzip_bytes(data: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


# --------------------------------------------------------------------------- base backups


def test_base_backup_is_checked_against_its_manifest_and_records_its_wal(site: Site) -> None:
    base = list_bases(site.backups)[-1]
    meta = json.loads(base.path.with_name(base.path.name + ".meta.json").read_text())
    assert meta["kind"] == "base" and meta["tier"] == "weekly"
    assert meta["timeline"] == 1 and meta["start_wal"] == base.start_wal
    assert (
        parse_lsn(meta["start_lsn"]) == base.start_lsn < base.end_lsn == parse_lsn(meta["end_lsn"])
    )
    assert datetime.fromisoformat(meta["start_time"]) <= datetime.fromisoformat(meta["end_time"])
    check = subprocess.run(
        ["sha256sum", "-c", base.path.name + ".sha256"], cwd=site.backups, capture_output=True
    )
    assert check.returncode == 0
    with tarfile.open(base.path) as archive:
        assert {"backup_manifest", "backup_label", "PG_VERSION"} <= set(archive.getnames())
    # One flipped byte in the middle: the sidecar and the manifest check both catch it.
    copy = site.folder / base.path.name
    data = bytearray(base.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(VerifyError):
        read_base_archive(copy, base.sha256)
    with pytest.raises(VerifyError):
        read_base_archive(copy, None)
    copy.unlink()


# --------------------------------------------------------------------------- wal-push


def test_kill_9_of_wal_push_never_leaves_a_partial_segment_under_a_final_name(
    site: Site, tmp_path: Path
) -> None:
    segment = tmp_path / "segment"
    first = sorted(p for p in site.wal.glob("0000000100000000000000??.gz"))[0]
    fetched = run_cli(
        "wal-fetch", first.name[:-3], str(segment), env={"WAL_ARCHIVE_DIR": str(site.wal)},
        cwd=tmp_path,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    content = segment.read_bytes()
    archive = tmp_path / "archive"
    source = tmp_path / "pg_wal"
    source.mkdir()
    rng = random.Random(19)
    env = {"WAL_ARCHIVE_DIR": str(archive)}
    for i in range(10):
        name = segment_name(7, 0x100 + i)
        (source / name).write_bytes(content)
        process = subprocess.Popen(
            [str(VENV_BIN / "chatbot-backup"), "wal-push", f"pg_wal/{name}"],
            cwd=tmp_path, env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.02, 0.45))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert_no_partial_under_a_final_name(archive, content)
        again = run_cli("wal-push", f"pg_wal/{name}", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert_no_partial_under_a_final_name(archive, content)
        assert (archive / f"{name}.gz.sha256").is_file()
        assert not [p for p in archive.iterdir() if p.name.startswith(f".{name}")]
    check = subprocess.run(
        "sha256sum -c *.sha256", shell=True, cwd=archive, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def assert_no_partial_under_a_final_name(archive: Path, content: bytes) -> None:
    if not archive.exists():
        return
    for path in archive.glob("*.gz"):
        assert gzip.decompress(path.read_bytes()) == content, f"{path.name} is not whole"
        sidecar = path.with_name(path.name + ".sha256")
        if sidecar.exists():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert sidecar.read_text().split()[0] == digest


# --------------------------------------------------------------------------- timelines


def test_timeline_switch_after_a_first_pitr_then_a_second_pitr_on_the_new_timeline(
    prefect_api_url: str,
) -> None:
    with archiving_site(prefect_api_url, "cbpitr-tl-") as old:
        take_base(old)
        target1 = batches_around_a_time(old.cluster, "items")
        first = old.folder / "first"
        done = old.run("pitr-restore", "--target-time", stamp(target1), "--data-dir", str(first))
        assert done.returncode == 0, done.stderr
        # The operator replaces the live cluster with the recovered one, archiving on.
        old.cluster.stop()
        promoted = start_restored(first, old.folder, "promoted")
        try:
            wait_until_primary(promoted)
            timeline = promoted.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
            assert str(timeline).startswith("00000002")
            assert batches_in(promoted, "items") == [("A", 50)]
            wait_for_file(old.wal / "00000002.history.gz.sha256")
            promoted.execute(
                "INSERT INTO items SELECT g, 'C' FROM generate_series(101, 120) g", "appdb"
            )
            time.sleep(1.1)
            target2 = datetime.now(UTC)
            time.sleep(1.1)
            promoted.execute(
                "INSERT INTO items SELECT g, 'D' FROM generate_series(121, 130) g", "appdb"
            )
            promoted.switch_wal()
            assert (old.wal / "00000002.history.gz.sha256").is_file()

            second = old.folder / "second"
            done = old.run(
                "pitr-restore", "--target-time", stamp(target2), "--data-dir", str(second),
                "--verify",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr + done.stdout
            assert "timeline 2" in done.stdout
        finally:
            promoted.stop()
        again = start_restored(second, old.folder, "again", "archive_mode=off")
        try:
            wait_until_primary(again)
            assert batches_in(again, "items") == [("A", 50), ("C", 20)]
        finally:
            again.stop()


# --------------------------------------------------------------------------- setup, archiver


def test_pitr_setup_applies_the_settings_says_restart_and_archiving_then_works(
    prefect_api_url: str,
) -> None:
    folder = postgres_folder("cbpitr-setup-")
    try:
        backups = backup_folder(folder)
        with throwaway_cluster(folder, archive_command=None) as cluster:
            cluster.execute("CREATE DATABASE appdb")
            env = platform_env(folder, backups, cluster, prefect_api_url)
            params = {
                "host": "127.0.0.1",
                "port": str(cluster.port),
                "user": "postgres",
                "dbname": "postgres",
            }

            judged = judge_archiver(read_archiver(params), datetime.now(UTC), 15)
            assert judged.findings[0].severity == "critical"
            assert "archive_mode is off" in judged.findings[0].reason
            done = run_cli("base-backup", env=env, cwd=folder)
            assert done.returncode == 3 and "archive_mode is off" in done.stderr
            assert not list(backups.glob("base_postgres_*"))

            done = run_cli("pitr-setup", env=env, cwd=folder)
            assert done.returncode == 1, done.stderr
            assert "CHANGE archive_mode = on (now off) — needs a server restart" in done.stdout
            done = run_cli("pitr-setup", "--apply", env=env, cwd=folder)
            assert done.returncode == 0, done.stderr
            assert "RESTART NEEDED: archive_mode" in done.stdout

            restarted = cluster.pg_ctl("-l", str(cluster.log), "-w", "restart")
            assert restarted.returncode == 0, restarted.stderr
            done = run_cli("pitr-setup", env=env, cwd=folder)
            assert done.returncode == 0, done.stdout
            name = cluster.switch_wal()  # through the archive_command pitr-setup wrote
            assert (backups / "wal" / f"{name}.gz.sha256").is_file()
            status = judge_archiver(read_archiver(params), datetime.now(UTC), 15)
            assert [f.severity for f in status.findings] == ["ok"]
            assert status.last_archived_at is not None

            # The archive folder stops being writable: the archiver fails, critically.
            (backups / "wal").chmod(0o500)
            cluster.execute("CREATE TABLE after_the_break(i int)", "appdb")
            cluster.execute("SELECT pg_switch_wal()")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                snapshot = read_archiver(params)
                if snapshot.failed_count:
                    break
                time.sleep(0.5)
            failing = judge_archiver(snapshot, datetime.now(UTC), 15)
            assert any(
                f.severity == "critical" and "archive_command is failing" in f.reason
                for f in failing.findings
            ), failing
            (backups / "wal").chmod(0o700)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
