"""A new backup that fails its verification is set aside (tasks/backup/set_aside.py): the
run fails saying where it went, and no rotation, monitor or restore counts the file —
while the older good backups stay exactly as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.catalog.records import list_backups
from tasks.core.errors import VerifyError
from tests.conftest import Platform, make_sqlite_db
from tests.support.codec_faults import crc_breaking


def _flip_a_byte(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x40]))


def _the_set_aside_files(backups: Path, stem: str) -> list[str]:
    return sorted(p.name for p in backups.iterdir() if p.name.startswith(stem))


def test_a_full_backup_changed_on_disk_before_its_read_back_is_set_aside(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import backup_all
    from tasks.steps import full_backup as steps

    make_sqlite_db(platform.db_path)
    uploads = platform.root / "data" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        (uploads / f"photo_{i}.jpg").write_bytes(os.urandom(200_000))
    good = Path(backup_all().path)  # a sound backup first: it must stay untouched
    good_bytes = good.read_bytes()
    real = steps.read_back

    def changed_on_disk(artifact):  # type: ignore[no-untyped-def]
        steps.take_read_behind(artifact.path)  # the followed read saw the bytes unchanged
        _flip_a_byte(artifact.path)  # the disk, or another process, changes one
        return real(artifact)  # nothing under way now: the file is read from the disk

    monkeypatch.setattr(steps, "read_back", changed_on_disk)
    aside_name = r"set aside as full_backup_\d{8}_\d{6}\.tar\.gz\.unverified"
    with pytest.raises(VerifyError, match=aside_name):
        backup_all()
    records = [r for r in list_backups(platform.backups) if r.kind == "full"]
    assert [r.path for r in records] == [good]  # only the sound one is a backup
    assert records[0].verdict is not None and records[0].verdict.good
    assert good.read_bytes() == good_bytes
    [aside] = [p for p in platform.backups.iterdir() if p.name.endswith(".unverified")]
    stem = aside.name
    assert _the_set_aside_files(platform.backups, stem) == [
        stem,
        f"{stem}.meta.json",
        f"{stem}.sha256",
    ]


def test_a_database_backup_changed_on_disk_before_its_check_is_set_aside(
    sqlite_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.db_backup_flow as db_flow
    from flows import db_backup

    real = db_flow.verify_backup

    def changed_on_disk(path, expected_sha256=None, just_written=False):  # type: ignore[no-untyped-def]
        _flip_a_byte(path)
        return real(path, expected_sha256, just_written)

    monkeypatch.setattr(db_flow, "verify_backup", changed_on_disk)
    aside_name = r"(sha256|damaged).*set aside as admin_sqlite_\d{8}_\d{6}\.db\.gz\.unverified"
    with pytest.raises(VerifyError, match=aside_name):
        db_backup()
    assert list_backups(sqlite_platform.backups) == []
    left = sorted(p.name for p in sqlite_platform.backups.iterdir() if ".db.gz" in p.name)
    assert len(left) == 3 and all(".db.gz.unverified" in name for name in left), left


def test_a_deflate_fault_in_a_full_backup_is_found_by_its_read_back(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """backup-all's archive skips the in-memory check of each gzip member (its read-back
    inflates every member from the disk): a member whose crc32 is wrong is found there,
    and the archive set aside."""
    import tasks.backup.full_backup as full
    from flows import backup_all
    from tasks.stream import gzip_codec

    make_sqlite_db(platform.db_path)
    (platform.root / "data" / "uploads").mkdir(parents=True, exist_ok=True)
    (platform.root / "data" / "uploads" / "a.txt").write_text("chat " * 300_000)
    faulty, real_write = crc_breaking(gzip_codec.deflater), full.write_artifact

    def write_with_a_faulty_codec(*args, **kwargs):  # type: ignore[no-untyped-def]
        # the database member inside was made (and self-checked) already
        monkeypatch.setattr(gzip_codec, "deflater", faulty)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(full, "write_artifact", write_with_a_faulty_codec)
    aside_name = r"damaged .*set aside as full_backup_\d{8}_\d{6}\.tar\.gz\.unverified"
    with pytest.raises(VerifyError, match=aside_name):
        backup_all()
    assert [r for r in list_backups(platform.backups) if r.kind == "full"] == []


def test_a_read_error_while_verifying_sets_the_new_backup_aside(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk failing the read-back (EIO; injected, a failing disk cannot be had here)
    is a verification that did not pass: exit 6, the file set aside, not an OSError that
    leaves it under its final name."""
    import errno

    from flows import backup_all
    from tasks.steps import full_backup as steps

    make_sqlite_db(platform.db_path)
    good = Path(backup_all().path)

    def the_disk_fails(artifact):  # type: ignore[no-untyped-def]
        steps.take_read_behind(artifact.path)
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(artifact.path))

    monkeypatch.setattr(steps, "read_back", the_disk_fails)
    with pytest.raises(
        VerifyError,
        match=r"could not be read back \(Input/output error\); "
        r"the new backup was set aside as full_backup_\d{8}_\d{6}\.tar\.gz\.unverified",
    ):
        backup_all()
    assert [r.path for r in list_backups(platform.backups) if r.kind == "full"] == [good]
    assert len([p for p in platform.backups.iterdir() if p.name.endswith(".unverified")]) == 1


def test_a_cancelled_verification_sets_the_file_aside_and_is_raised_as_it_was(
    tmp_path: Path,
) -> None:
    from tasks.backup.set_aside import set_aside_unproven

    path = tmp_path / "full_backup_20260101_000000.tar.gz"
    path.write_bytes(b"unproven")
    (tmp_path / "full_backup_20260101_000000.tar.gz.sha256").write_text("x  name\n")
    stop = KeyboardInterrupt()
    assert set_aside_unproven(path, stop) is stop
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "full_backup_20260101_000000.tar.gz.unverified",
        "full_backup_20260101_000000.tar.gz.unverified.sha256",
    ]


def test_restore_alls_own_copy_that_fails_its_read_back_is_set_aside(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restore-all keeps the live state as `full_before_restore_*` before it swaps: a copy
    whose read-back fails stops the restore with nothing changed, and is set aside — as a
    snapshot it would count among the newest three that rotation keeps."""
    from flows import backup_all, restore_all
    from tasks.catalog.records import list_snapshots
    from tasks.steps import full_backup as steps
    from tests.test_db_restore import tree_state

    make_sqlite_db(platform.db_path)
    uploads = platform.root / "data" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / "a.bin").write_bytes(os.urandom(300_000))
    archive = Path(backup_all().path)
    (uploads / "a.bin").write_bytes(b"changed after the backup")
    live = tree_state(platform.root / "data")
    real = steps.read_back

    def copy_changed_on_disk(artifact):  # type: ignore[no-untyped-def]
        if artifact.path.name.startswith("full_before_restore_"):
            steps.take_read_behind(artifact.path)
            _flip_a_byte(artifact.path)
        return real(artifact)

    monkeypatch.setattr(steps, "read_back", copy_changed_on_disk)
    with pytest.raises(
        VerifyError,
        match=r"the pre-restore copy was set aside as "
        r"full_before_restore_\d{8}_\d{6}\.tar\.gz\.unverified.*nothing was restored",
    ):
        restore_all(archive.name, confirm=True)
    # (the database's own raw snapshot, made before the copy, is kept beside it)
    after = {
        k: v for k, v in tree_state(platform.root / "data").items() if ".before_restore." not in k
    }
    assert after == live
    assert list_snapshots(platform.backups, "full") in ([], [[]])
    assert [p.name for p in platform.backups.iterdir() if p.name.startswith("full_before")] != []
    assert all(
        ".unverified" in p.name
        for p in platform.backups.iterdir()
        if p.name.startswith("full_before")
    )


def test_a_write_that_fails_after_the_archive_leaves_no_reader_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verify step claims the read that followed the write; when the meta cannot be
    written the step never runs, and the read is dropped there instead."""
    import tasks.backup.full_backup as full
    from tasks.backup import read_back
    from tasks.sources.sqlite import SqliteSource
    from tests.support.plans import platform_plan

    db = make_sqlite_db(tmp_path / "data" / "admin.db", agents=3, messages=5)
    (tmp_path / "data" / "uploads").mkdir()
    plan = platform_plan(tmp_path)

    def no_space(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(full, "write_meta", no_space)
    with pytest.raises(OSError, match="No space left"):
        full.write_full_backup(SqliteSource(db, plan.backup_dir), plan, "daily", read_back=True)
    assert read_back._UNDER_WAY == {}


def test_a_read_back_that_is_not_the_archive_written_sets_it_aside(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-back's sha256 matched, but what it read does not end with the manifest
    pair (or has another top folder): not the archive the writer made, so not a backup."""
    import dataclasses

    from flows import backup_all
    from tasks.steps import full_backup as steps

    make_sqlite_db(platform.db_path)
    real = steps.read_back

    def manifest_not_last(artifact):  # type: ignore[no-untyped-def]
        scan = real(artifact)
        return dataclasses.replace(scan, last_members=[*scan.last_members[:1], "x/extra"])

    monkeypatch.setattr(steps, "read_back", manifest_not_last)
    with pytest.raises(
        VerifyError, match=r"the archive read back is not the one written.*set aside"
    ):
        backup_all()
    assert [r for r in list_backups(platform.backups) if r.kind == "full"] == []
    assert len([p for p in platform.backups.iterdir() if p.name.endswith(".unverified")]) == 1
