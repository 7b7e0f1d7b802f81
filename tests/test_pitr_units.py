"""Point-in-time recovery's building blocks, without a PostgreSQL server.

WAL names and timelines, recovery planning and retention as tables of synthetic
catalogs, the archiver verdicts, the wal-push/wal-fetch commands through the real CLI
on real files, the fast path's settings reader against `tasks.core.settings`, and the base
archive check against hand-built pg_basebackup-shaped tars (tampered ones too).
The end-to-end proofs on real clusters are in tests/test_pitr.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.wal_cli import read_config
from tasks.core.errors import ConfigError, VerifyError
from tasks.core.settings import Settings
from tasks.pitr.archiver_status import ArchiverSnapshot, judge_archiver
from tasks.pitr.base_catalog import BaseRecord, base_backup_name, parse_base_name
from tasks.pitr.base_manifest import read_base_archive
from tasks.pitr.commands import conf_literal, restore_command, shell_command
from tasks.pitr.recovery import (
    RecoveryPlan,
    check_target_dir,
    lay_out,
    parse_target_time,
    plan_recovery,
)
from tasks.pitr.retention import BasePolicy, plan_bases, plan_wal
from tasks.pitr.segments import (
    TimelineSpan,
    base_fits_path,
    format_lsn,
    parse_history,
    parse_lsn,
    parse_wal_name,
    path_segment,
    segment_name,
    timeline_path,
)
from tasks.pitr.wal_catalog import ArchivedWal

BIN = Path(sys.executable).parent
MB16 = 16 * 1024 * 1024
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name, kind, timeline, segno",
    [
        ("000000010000000000000003", "segment", 1, 3),
        ("0000000200000001000000FF", "segment", 2, 0x1FF),
        ("000000010000000000000003.partial", "partial", 1, 3),
        ("000000010000000000000005.00000028.backup", "backup", 1, 5),
        ("00000002.history", "history", 2, 0),
    ],
)
def test_wal_names_of_every_kind(name: str, kind: str, timeline: int, segno: int) -> None:
    wal = parse_wal_name(name)
    assert wal is not None and (wal.kind, wal.timeline, wal.segno()) == (kind, timeline, segno)


@pytest.mark.parametrize(
    "name",
    ["RECOVERYXLOG", "00000001000000000000003", "00000001000000000000000g", "x.history",
     "000000010000000000000003.gz", "../000000010000000000000003", ""],
)  # fmt: skip
def test_names_postgresql_never_archives_are_refused(name: str) -> None:
    assert parse_wal_name(name) is None


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_text_round_trips(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.integers(min_value=1, max_value=0xFFFFFFFF),
    st.integers(min_value=0, max_value=2**40),
    st.sampled_from([1 << 20, MB16, 1 << 30]),
)
def test_segment_names_round_trip(timeline: int, segno: int, size: int) -> None:
    segno %= (0x1_0000_0000 // size) * 0xFFFFFFFF
    wal = parse_wal_name(segment_name(timeline, segno, size))
    assert wal is not None and wal.timeline == timeline and wal.segno(size) == segno


def test_the_segment_holding_a_switch_point_comes_from_the_new_timeline() -> None:
    path = timeline_path(2, parse_history("1\t0/3000090\tbefore 2026-11-30 12:00:00+00\n"))
    assert path == [TimelineSpan(1, 0, 0x3000090), TimelineSpan(2, 0x3000090, None)]
    assert [path_segment(path, s) for s in (2, 3, 4)] == [
        "000000010000000000000002",
        "000000020000000000000003",
        "000000020000000000000004",
    ]
    on_a_boundary = timeline_path(2, parse_history("1\t0/4000000\tno recovery target\n"))
    assert path_segment(on_a_boundary, 3) == "000000010000000000000003"
    assert path_segment(on_a_boundary, 4) == "000000020000000000000004"
    assert base_fits_path(path, 1, 0x2000028, 0x2000100)
    assert not base_fits_path(path, 1, 0x3000100, 0x3000200)  # taken on the old branch
    with pytest.raises(ValueError):
        parse_history("garbage line\n")


def test_base_backup_names() -> None:
    moment = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
    name = base_backup_name(moment)
    assert name == "base_postgres_20261130_010203.tar.gz"
    assert parse_base_name(name) == (moment, "gzip")
    assert parse_base_name("base_postgres_20261130_010203.tar.zst") == (moment, "zstd")
    assert parse_base_name("base_postgres_20261340_010203.tar.gz") is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-30 12:00", T0),
        ("2026-11-30 12:00:05", T0 + timedelta(seconds=5)),
        ("2026-11-30 12:00:05.123456789", T0 + timedelta(seconds=5, microseconds=123456)),
        ("2026-11-30T14:00:00+02:00", T0),
        ("2026-11-30T12:00:00Z", T0),
    ],
)
def test_target_times(text: str, expected: datetime) -> None:
    assert parse_target_time(text) == expected


def test_a_target_time_that_is_no_time_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--target-time"):
        parse_target_time("last tuesday")


# --------------------------------------------------------------------------- planning


def base(name: str, start_segno: int, ended: datetime, timeline: int = 1) -> BaseRecord:
    start = start_segno * MB16 + 0x28
    return BaseRecord(
        path=Path(f"/backups/{name}"),
        created_at=ended - timedelta(minutes=1),
        tier="weekly",
        size=100,
        sha256="0" * 64,
        compression="gzip",
        timeline=timeline,
        start_lsn=start,
        end_lsn=start + 0x100,
        start_wal=segment_name(timeline, start_segno),
        start_time=ended - timedelta(minutes=1),
        end_time=ended,
        segment_size=MB16,
        system_identifier=1,
    )


def archive_of(
    *entries: tuple[str, datetime], uncommitted: tuple[str, ...] = ()
) -> dict[str, ArchivedWal]:
    out = {}
    for name, written in entries:
        wal = parse_wal_name(name)
        assert wal is not None
        out[name] = ArchivedWal(
            wal, Path(f"/wal/{name}.gz"), "gzip", 10, written, name not in uncommitted
        )
    return out


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


SEGMENTS = [(segment_name(1, s), minutes(s)) for s in range(2, 9)]  # segment s written at +s min


def test_plan_picks_the_newest_base_that_ended_before_the_target() -> None:
    bases = [base("base_a", 2, minutes(2.1)), base("base_b", 5, minutes(5.1))]
    plan = plan_recovery(minutes(6.5), bases, archive_of(*SEGMENTS), {})
    assert plan.base.name == "base_b"
    assert plan.segments == [segment_name(1, 5), segment_name(1, 6), segment_name(1, 7)]
    plan = plan_recovery(minutes(4.5), bases, archive_of(*SEGMENTS), {})
    assert plan.base.name == "base_a" and plan.segments[-1] == segment_name(1, 5)


@pytest.mark.parametrize(
    "target, error, words",
    [
        (minutes(2.0), ConfigError, "before the oldest base backup"),
        (minutes(9.5), ConfigError, "after the newest archived WAL"),
    ],
)
def test_targets_outside_the_archive_are_config_errors(
    target: datetime, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        plan_recovery(target, [base("base_a", 2, minutes(2.1))], archive_of(*SEGMENTS), {})


def test_no_base_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="run `chatbot-backup base-backup` first"):
        plan_recovery(minutes(5), [], archive_of(*SEGMENTS), {})


def test_a_missing_or_unfinished_segment_before_the_target_is_a_gap() -> None:
    missing = [s for s in SEGMENTS if s[0] != segment_name(1, 4)]
    with pytest.raises(VerifyError, match=f"WAL gap: segment {segment_name(1, 4)}"):
        plan_recovery(minutes(6.5), [base("base_a", 2, minutes(2.1))], archive_of(*missing), {})
    unfinished = archive_of(*SEGMENTS, uncommitted=(segment_name(1, 3),))
    with pytest.raises(VerifyError, match=segment_name(1, 3)):
        plan_recovery(minutes(6.5), [base("base_a", 2, minutes(2.1))], unfinished, {})
    # a gap after the target does not matter
    plan = plan_recovery(minutes(2.5), [base("base_a", 2, minutes(2.1))], archive_of(*missing), {})
    assert plan.segments == [segment_name(1, 2), segment_name(1, 3)]


def test_recovery_follows_the_newest_timeline_across_its_switch_point() -> None:
    history = {2: [(1, 5 * MB16 + 0x90)]}
    entries = archive_of(
        *SEGMENTS[:4],  # timeline 1, segments 2..5 (5 also exists on the old branch)
        (segment_name(2, 5), minutes(5.5)),
        (segment_name(2, 6), minutes(7)),
        (segment_name(2, 7), minutes(9)),
        ("00000002.history", minutes(5.2)),
    )
    plan = plan_recovery(minutes(8), [base("base_a", 2, minutes(2.1))], entries, history)
    assert plan.target_timeline == 2
    assert plan.segments == [
        segment_name(1, 2), segment_name(1, 3), segment_name(1, 4),
        segment_name(2, 5), segment_name(2, 6), segment_name(2, 7),
    ]  # fmt: skip
    # A base taken on timeline 1 after the branch point cannot lead to timeline 2.
    bases = [base("base_a", 2, minutes(2.1)), base("base_late", 6, minutes(6.1))]
    plan = plan_recovery(minutes(8), bases, {**entries, **archive_of(*SEGMENTS)}, history)
    assert plan.base.name == "base_a"


# --------------------------------------------------------------------------- retention


def test_wal_retention_keeps_what_the_oldest_kept_base_needs() -> None:
    entries = archive_of(
        *SEGMENTS,
        (segment_name(1, 3) + ".partial", minutes(3)),
        (segment_name(1, 4) + ".00000028.backup", minutes(4)),
        ("00000002.history", minutes(1)),
    )
    plan = plan_wal([base("base_b", 5, minutes(5.1)), base("base_c", 7, minutes(7.1))], entries)
    assert sorted(e.name for e in plan.remove) == sorted(
        [segment_name(1, 2), segment_name(1, 3), segment_name(1, 4),
         segment_name(1, 3) + ".partial", segment_name(1, 4) + ".00000028.backup"]
    )  # fmt: skip
    assert "00000002.history" in {e.name for e in plan.keep}
    assert plan.oldest_needed == segment_name(1, 5)
    assert plan_wal([], entries).remove == []


def test_base_retention_keeps_three_and_the_last_30_days() -> None:
    now = minutes(0) + timedelta(days=100)
    bases = [base(f"b{d}", 2, now - timedelta(days=d)) for d in (1, 8, 15, 40, 60)]
    bases.append(base("future", 2, now + timedelta(days=3)))
    plan = plan_bases(bases, BasePolicy(retention_days=30, keep_min=3), now)
    assert sorted(b.name for b in plan.remove) == ["b40", "b60"]
    old = [base(f"o{d}", 2, now - timedelta(days=d)) for d in (40, 50, 60, 70)]
    assert [b.name for b in plan_bases(old, BasePolicy(), now).remove] == ["o70"]


# --------------------------------------------------------------------------- archiver


def snapshot(**changes: object) -> ArchiverSnapshot:
    values: dict[str, object] = {
        "archive_mode": "on",
        "archive_command": "env WAL_ARCHIVE_DIR=/w chatbot-backup wal-push %p",
        "archived_count": 10,
        "last_archived_wal": segment_name(1, 9),
        "last_archived_at": minutes(0),
        "failed_count": 0,
        "last_failed_wal": None,
        "last_failed_at": None,
        "current_wal": segment_name(1, 10),
    }
    values.update(changes)
    return ArchiverSnapshot(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes, now, expected",
    [
        ({}, minutes(5), ["ok"]),
        ({}, minutes(20), ["warning"]),  # 20 min old while the server wrote more WAL
        ({"current_wal": segment_name(1, 9)}, minutes(600), ["ok"]),  # idle: nothing to archive
        ({"failed_count": 3, "last_failed_wal": segment_name(1, 10), "last_failed_at": minutes(1)},
         minutes(2), ["critical"]),
        ({"failed_count": 3, "last_failed_at": minutes(-1)}, minutes(2), ["ok"]),  # recovered
        ({"archive_mode": "off"}, minutes(1), ["critical"]),
        ({"archive_command": "cp %p /mnt/x/%f"}, minutes(1), ["warning"]),
        ({"archived_count": 0, "last_archived_wal": None, "last_archived_at": None},
         minutes(1), ["warning"]),
    ],
)  # fmt: skip
def test_archiver_verdicts(changes: dict[str, object], now: datetime, expected: list[str]) -> None:
    status = judge_archiver(snapshot(**changes), now, max_age_minutes=15)
    assert [f.severity for f in status.findings] == expected


# --------------------------------------------------------------------------- commands


def test_commands_survive_odd_paths() -> None:
    program = ["/opt/my tools/chatbot-backup"]
    env = {"WAL_ARCHIVE_DIR": "/data/it's backups/wal"}
    command = restore_command(program, env)
    assert command.endswith(" wal-fetch %f %p")
    assert shlex.split(command[: -len(" wal-fetch %f %p")]) == [
        "env", "WAL_ARCHIVE_DIR=/data/it's backups/wal", "/opt/my tools/chatbot-backup"
    ]  # fmt: skip
    assert shell_command(["x"], {}, "%p") == "x %p"
    assert conf_literal("a'b\\c") == "'a''b\\\\c'"


@pytest.mark.parametrize(
    "environ, dotenv, expect_dir",
    [
        ({}, "", "/data/backups/wal"),
        ({"BACKUP_DIR": "/srv/b"}, "", "/srv/b/wal"),
        ({}, "BACKUP_DIR=relative/backups\n", "{root}/relative/backups/wal"),
        ({"wal_archive_dir": "/srv/w"}, "WAL_ARCHIVE_DIR=/elsewhere\n", "/srv/w"),
        ({}, "export WAL_ARCHIVE_DIR='~/w'\n", "~/w"),
    ],
)
def test_the_fast_path_reads_the_archive_folder_as_the_settings_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], dotenv: str,
    expect_dir: str,
) -> None:  # fmt: skip
    (tmp_path / ".env").write_text(dotenv)
    env = {"APP_ROOT": str(tmp_path), **environ}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fast = read_config(env)
    slow = Settings(_env_file=tmp_path / ".env", app_root=tmp_path)  # type: ignore[call-arg]
    expected = Path(os.path.expanduser(expect_dir.format(root=tmp_path)))
    assert fast.archive_dir == slow.wal_archive == expected
    assert fast.compression == slow.compression == "gzip"


def test_the_fast_path_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="WAL_PUSH_OFFSITE"):
        read_config({"WAL_PUSH_OFFSITE": "maybe", "APP_ROOT": "/nonexistent"})
    with pytest.raises(ConfigError, match="BACKUP_COMPRESSION"):
        read_config({"BACKUP_COMPRESSION": "lz4", "APP_ROOT": "/nonexistent"})


# --------------------------------------------------------------------------- wal-push/fetch


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "chatbot-backup"), *args],
        cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def pg_wal(tmp_path: Path) -> Path:
    folder = tmp_path / "pg_wal"
    folder.mkdir()
    # Not a real segment, but sized like one and not trivially compressible.
    (folder / "000000010000000000000007").write_bytes(os.urandom(1 << 20) * 16)
    os.utime(folder / "000000010000000000000007", (1_700_000_000, 1_700_000_000))
    return folder


def test_wal_push_is_durable_idempotent_and_refuses_other_content(
    tmp_path: Path, pg_wal: Path
) -> None:
    name = "000000010000000000000007"
    archive = tmp_path / "archive"
    done = cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, WAL_ARCHIVE_DIR=str(archive))
    assert done.returncode == 0, done.stderr
    packed = archive / f"{name}.gz"
    assert gzip.decompress(packed.read_bytes()) == (pg_wal / name).read_bytes()
    assert packed.stat().st_mtime == 1_700_000_000  # when PostgreSQL wrote it, not when pushed
    assert oct(packed.stat().st_mode & 0o777) == "0o600"
    check = subprocess.run(["sha256sum", "-c", f"{name}.gz.sha256"], cwd=archive)
    assert check.returncode == 0
    before = (packed.read_bytes(), (archive / f"{name}.gz.sha256").read_bytes())

    again = cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, WAL_ARCHIVE_DIR=str(archive))
    assert again.returncode == 0, again.stderr

    (pg_wal / name).write_bytes(os.urandom(1 << 20) * 16)
    other = cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, WAL_ARCHIVE_DIR=str(archive))
    assert other.returncode == 6
    assert "already archived with different content" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert (packed.read_bytes(), (archive / f"{name}.gz.sha256").read_bytes()) == before
    assert sorted(p.name for p in archive.iterdir()) == [f"{name}.gz", f"{name}.gz.sha256"]


def test_a_push_killed_before_its_sidecar_is_finished_by_the_next_one(
    tmp_path: Path, pg_wal: Path
) -> None:
    name = "000000010000000000000007"
    archive = tmp_path / "archive"
    assert (
        cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, WAL_ARCHIVE_DIR=str(archive)).returncode
        == 0
    )
    sidecar = archive / f"{name}.gz.sha256"
    recorded = sidecar.read_text()
    sidecar.unlink()
    dest = tmp_path / "restored"
    fetch = cli("wal-fetch", name, str(dest), cwd=tmp_path, WAL_ARCHIVE_DIR=str(archive))
    assert fetch.returncode == 6 and "its push did not finish" in fetch.stderr
    # Another codec this time: the archived copy is compared by content, not bytes.
    done = cli(
        "wal-push", f"pg_wal/{name}", cwd=tmp_path, WAL_ARCHIVE_DIR=str(archive),
        BACKUP_COMPRESSION="zstd",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sidecar.read_text() == recorded
    assert not (archive / f"{name}.zst").exists()


def test_wal_push_offsite_copies_every_segment_to_each_destination_verified(
    tmp_path: Path, pg_wal: Path
) -> None:
    name = "000000010000000000000007"
    archive, first, second = tmp_path / "archive", tmp_path / "nas1", tmp_path / "nas2"
    first.mkdir()
    second.mkdir()
    env = {
        "APP_ROOT": str(tmp_path),
        "WAL_ARCHIVE_DIR": str(archive),
        "WAL_PUSH_OFFSITE": "true",
        "OFFSITE_DESTINATION": f"{first},{second}",
    }
    done = cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    local = (archive / f"{name}.gz").read_bytes()
    for nas in (first, second):
        assert (nas / "wal" / f"{name}.gz").read_bytes() == local
        check = subprocess.run(["sha256sum", "-c", f"{name}.gz.sha256"], cwd=nas / "wal")
        assert check.returncode == 0
    again = cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, **env)
    assert again.returncode == 0, again.stderr
    assert (first / "wal" / f"{name}.gz").read_bytes() == local


def test_wal_fetch_falls_back_to_the_offsite_copy_verified(tmp_path: Path, pg_wal: Path) -> None:
    name = "000000010000000000000007"
    archive, nas = tmp_path / "archive", tmp_path / "nas"
    nas.mkdir()
    env = {
        "APP_ROOT": str(tmp_path),
        "WAL_ARCHIVE_DIR": str(archive),
        "WAL_PUSH_OFFSITE": "true",
        "OFFSITE_DESTINATION": str(nas),
    }
    assert cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, **env).returncode == 0
    for path in archive.glob(name + "*"):
        path.unlink()  # the local archive lost it; off-site still has it
    dest = tmp_path / "RECOVERYXLOG"
    done = cli("wal-fetch", name, str(dest), cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == (pg_wal / name).read_bytes()
    assert not any(p.name.startswith(name) for p in archive.rglob("*"))  # staging cleaned
    # Without WAL_PUSH_OFFSITE the local archive is all there is.
    dest.unlink()
    local_only = cli("wal-fetch", name, str(dest), cwd=tmp_path, WAL_ARCHIVE_DIR=str(archive))
    assert local_only.returncode == 1 and not dest.exists()
    # A damaged off-site copy is refused (exit 6) and DEST never appears.
    remote = nas / "wal" / f"{name}.gz"
    data = bytearray(remote.read_bytes())
    data[len(data) // 2] ^= 0x01
    remote.write_bytes(bytes(data))
    damaged = cli("wal-fetch", name, str(dest), cwd=tmp_path, **env)
    assert damaged.returncode == 6, damaged.stderr
    assert "does not match its sidecar" in damaged.stderr and not dest.exists()
    # Missing everywhere: exit 1, naming both places.
    gone = cli("wal-fetch", "000000010000000000000099", str(dest), cwd=tmp_path, **env)
    assert gone.returncode == 1 and "nor off-site" in gone.stderr


def test_wal_push_offsite_failure_keeps_the_local_copy_and_fails(
    tmp_path: Path, pg_wal: Path
) -> None:
    name = "000000010000000000000007"
    archive = tmp_path / "archive"
    env = {
        "APP_ROOT": str(tmp_path),
        "WAL_ARCHIVE_DIR": str(archive),
        "WAL_PUSH_OFFSITE": "true",
        "OFFSITE_DESTINATION": str(tmp_path / "not-mounted" / "backups"),
        "OFFSITE_RETRY_SECONDS": "1",
    }
    failed = cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, **env)
    assert failed.returncode == 8, failed.stderr
    assert "the local archive copy is kept" in failed.stderr
    assert (archive / f"{name}.gz.sha256").is_file()
    assert not (tmp_path / "not-mounted").exists()


def test_wal_fetch_verifies_and_refuses(tmp_path: Path, pg_wal: Path) -> None:
    name = "000000010000000000000007"
    archive = tmp_path / "archive"
    env = {"WAL_ARCHIVE_DIR": str(archive), "BACKUP_COMPRESSION": "zstd"}
    assert cli("wal-push", f"pg_wal/{name}", cwd=tmp_path, **env).returncode == 0
    assert (archive / f"{name}.zst").is_file()
    dest = tmp_path / "RECOVERYXLOG"
    assert cli("wal-fetch", name, str(dest), cwd=tmp_path, **env).returncode == 0
    assert dest.read_bytes() == (pg_wal / name).read_bytes()

    missing = cli("wal-fetch", "000000010000000000000099", str(tmp_path / "x"), cwd=tmp_path, **env)
    assert missing.returncode == 1 and "not in the WAL archive" in missing.stderr
    assert not (tmp_path / "x").exists()

    packed = archive / f"{name}.zst"
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    dest.unlink()
    damaged = cli("wal-fetch", name, str(dest), cwd=tmp_path, **env)
    assert damaged.returncode == 6, damaged.stderr
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".RECOVERYXLOG")]


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["wal-push", "pg_wal/RECOVERYXLOG"], 3, "not a WAL file name"),
        (["wal-push", "pg_wal/000000010000000000000042"], 4, "no such file"),
        (["wal-fetch", "../../etc/passwd", "x"], 3, "not a WAL file name"),
        (["wal-push"], 2, "error"),
    ],
)
def test_wal_commands_fail_with_one_line_and_their_code(
    tmp_path: Path, pg_wal: Path, args: list[str], code: int, words: str
) -> None:
    done = cli(*args, cwd=tmp_path, WAL_ARCHIVE_DIR=str(tmp_path / "archive"))
    assert done.returncode == code, done.stderr
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_wal_push_imports_neither_prefect_nor_pydantic_nor_psycopg(
    tmp_path: Path, pg_wal: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows", "wal-push", "pg_wal/000000010000000000000007"],
        cwd=tmp_path, env={**os.environ, "WAL_ARCHIVE_DIR": str(tmp_path / "a")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert "tasks" in imported
    assert not imported & {"prefect", "pydantic", "pydantic_settings", "psycopg", "fsspec"}
    # With gzip (the default) not even zstandard (it imports `platform`), logging or a
    # thread pool: each is import time paid once per 16 MB segment.
    assert not imported & {"zstandard", "platform", "logging", "concurrent"}


# --------------------------------------------------------------------------- base archives


def fake_base(path: Path, files: dict[str, bytes], *, tamper: dict[str, bytes] | None = None,
              extra: dict[str, bytes] | None = None, link: str | None = None) -> None:  # fmt: skip
    """A pg_basebackup-shaped tar.gz: files, backup_label, backup_manifest (SHA256) last."""
    label = (
        b"START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n"
        b"START TIME: 2026-11-30 12:00:00 UTC\nLABEL: test\nSTART TIMELINE: 1\n"
    )
    members = {"backup_label": label, **files}
    entries = ",\n".join(
        json.dumps({"Path": n, "Size": len(d), "Checksum-Algorithm": "SHA256",
                    "Checksum": hashlib.sha256(d).hexdigest()})
        for n, d in members.items()
    )  # fmt: skip
    body = (
        '{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n' + entries + "\n],\n"
        '"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/5000028", "End-LSN": "0/5000100" }\n],\n'
    ).encode()
    manifest = (
        body + b'"Manifest-Checksum": "' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'
    )
    stored = {**members, **(tamper or {}), **(extra or {}), "backup_manifest": manifest}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo("base")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        archive.addfile(folder)
        for name, data in stored.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc"
            archive.addfile(info)
    path.write_bytes(gzip.compress(buffer.getvalue()))


FILES = {"PG_VERSION": b"15\n", "base/1/1259": os.urandom(8192), "global/pg_control": b"c" * 8192}


def test_a_sound_base_archive_is_read_and_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "base_postgres_20261130_120000.tar.gz"
    fake_base(archive, FILES)
    contents = read_base_archive(archive, hashlib.sha256(archive.read_bytes()).hexdigest())
    assert (contents.timeline, contents.start_lsn, contents.end_lsn) == (1, 0x5000028, 0x5000100)
    assert contents.start_wal == "000000010000000000000005" and contents.files == 4
    target = tmp_path / "data"
    target.mkdir()
    read_base_archive(archive, None, extract_to=target)
    assert (target / "base/1/1259").read_bytes() == FILES["base/1/1259"]
    assert oct((target / "global/pg_control").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "damage, words",
    [
        ({"tamper": {"base/1/1259": b"x" * 8192}}, "does not match its manifest checksum"),
        ({"tamper": {"PG_VERSION": b"16\n\n"}}, "the manifest says"),
        ({"extra": {"base/1/9999": b"new"}}, "not in the manifest"),
        ({"link": "pg_tblspc/16384"}, "refused"),
        ({"extra": {"../escape": b"x"}}, "unsafe member name"),
    ],
)
def test_a_damaged_base_archive_is_refused(
    tmp_path: Path, damage: dict[str, object], words: str
) -> None:
    archive = tmp_path / "base_postgres_20261130_120000.tar.gz"
    fake_base(archive, FILES, **damage)  # type: ignore[arg-type]
    with pytest.raises(VerifyError, match=words):
        read_base_archive(archive, None)


def test_a_failed_lay_out_leaves_nothing_behind(tmp_path: Path) -> None:
    archive = tmp_path / "base_postgres_20261130_120000.tar.gz"
    fake_base(archive, FILES, tamper={"base/1/1259": b"y" * 8192})
    record = base("base_postgres_20261130_120000.tar.gz", 5, minutes(1))
    record = BaseRecord(
        **{
            **record.__dict__,
            "path": archive,
            "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        }
    )
    plan = RecoveryPlan(minutes(5), record, 1, timeline_path(1, []), [record.start_wal], minutes(6))
    new = tmp_path / "new"
    with pytest.raises(VerifyError):
        lay_out(plan, new, "true", None, minutes(7))
    assert not new.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(VerifyError):
        lay_out(plan, existing, "true", None, minutes(7))
    assert existing.is_dir() and not any(existing.iterdir())


def test_only_empty_or_new_folders_outside_the_live_cluster(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    (live / "PG_VERSION").write_text("15\n")
    (tmp_path / "link").symlink_to(live)
    for folder, words in (
        (live, "the live cluster's data directory"),
        (tmp_path / "link", "the live cluster's data directory"),
        (live / "sub", "inside the live cluster"),
        (tmp_path / "missing" / "new", "parent folder does not exist"),
    ):
        with pytest.raises(ConfigError, match=words):
            check_target_dir(folder, live)
    with pytest.raises(ConfigError, match="not empty"):
        check_target_dir(live, None)
    check_target_dir(tmp_path / "fresh", live)  # fine: new, beside it
