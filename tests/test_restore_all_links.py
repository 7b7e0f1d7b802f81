"""restore-all through a linked store, and around what no backup can hold, via the real CLI.

An UPLOADS_DIR (or a configuration file) that is a symbolic link stays that link, and
the backup's content is restored where the link points — the store backup-all read.
A FIFO or socket in a restored folder cannot be in any backup or in the pre-restore
copy, so restore-all leaves it where it is and says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from tests.conftest import Platform
from tests.test_db_restore import one_error_line, tree_state
from tests.test_restore_all import full_backup


def relative_state(root: Path) -> dict[str, str]:
    return {str(Path(k).relative_to(root)): v for k, v in tree_state(root).items()}


@pytest.mark.slow
def test_linked_uploads_and_config_are_restored_through_their_links(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    root = sqlite_platform.root
    store = tmp_path / "ext_uploads"
    (store / "2025").mkdir(parents=True)
    (store / "a.txt").write_text("original\n")
    (store / "2025" / "photo.png").write_bytes(os.urandom(5000))
    (root / "data" / "uploads").rmdir()
    os.symlink(store, root / "data" / "uploads")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / ".env").write_text("APP_NAME=chatbot\n")
    os.symlink(etc / ".env", root / ".env")
    full_backup(sqlite_platform)
    backed_up = relative_state(store)
    env_backed_up = (etc / ".env").read_bytes()

    (store / "a.txt").write_text("changed after the backup\n")
    (store / "extra.txt").write_text("made after the backup\n")
    (etc / ".env").write_text("APP_NAME=broken\n")

    done = sqlite_platform.run("restore-all", "--latest", "--yes")
    assert done.returncode == 0, done.stderr
    # The links are still the links, and the store they point to is the backup's.
    assert os.readlink(root / "data" / "uploads") == str(store)
    assert os.readlink(root / ".env") == str(etc / ".env")
    assert relative_state(store) == backed_up
    assert (etc / ".env").read_bytes() == env_backed_up
    assert os.listdir(etc) == [".env"]  # the replaced copy went after the commit point
    assert "live-only files removed: 1 " in done.stdout
    assert f"uploads: UPLOADS_DIR is a link to {store}; kept, restored into it" in done.stdout
    assert "data/uploads: kept the live one" not in done.stdout
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # nothing left beside


@pytest.mark.slow
def test_a_link_to_nothing_is_refused_before_anything_changes(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    root = sqlite_platform.root
    (root / "data" / "uploads" / "a.txt").write_text("upload\n")
    full_backup(sqlite_platform)
    shutil.rmtree(root / "data" / "uploads")
    os.symlink(tmp_path / "unmounted", root / "data" / "uploads")
    before = tree_state(root)

    done = sqlite_platform.run("restore-all", "--latest", "--yes")
    assert done.returncode == 7
    line = one_error_line(done)
    assert f"UPLOADS_DIR: {root / 'data' / 'uploads'} is a link to {tmp_path / 'unmounted'}" in line
    assert "nothing was changed" in line
    assert tree_state(root) == before
    assert not sqlite_platform.backup_files("full_before_restore_*")


@pytest.mark.slow
def test_fifos_and_sockets_stay_in_place_and_are_not_counted_as_removed(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    root = sqlite_platform.root
    uploads = root / "data" / "uploads"
    (uploads / "a.txt").write_text("upload\n")
    os.mkfifo(uploads / "pipe")
    (root / "data" / "run").mkdir()
    os.mkfifo(root / "data" / "run" / "queue")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(uploads / "sock"))
    try:
        full_backup(sqlite_platform)
        done = sqlite_platform.run("restore-all", "--latest", "--yes")
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.lstat(uploads / "pipe").st_mode)
    assert stat.S_ISSOCK(os.lstat(uploads / "sock").st_mode)
    assert stat.S_ISFIFO(os.lstat(root / "data" / "run" / "queue").st_mode)
    assert (uploads / "a.txt").read_text() == "upload\n"
    assert "live-only files removed: 0 " in done.stdout
    assert (
        "kept in place: 3 entries no backup can hold (fifo, socket): "
        "data/run/queue, uploads/pipe, uploads/sock" in done.stdout
    )


@pytest.mark.slow
def test_set_id_bits_are_dropped_and_said_sticky_and_group_folders_come_back(
    sqlite_platform: Platform,
) -> None:
    root = sqlite_platform.root
    uploads = root / "data" / "uploads"
    (uploads / "tool").write_text("#!/bin/sh\n")
    os.chmod(uploads / "tool", 0o4755)
    (uploads / "shared").mkdir()
    os.chmod(uploads / "shared", 0o1777)
    (root / "data" / "team").mkdir()
    os.chmod(root / "data" / "team", 0o2775)
    full_backup(sqlite_platform)

    done = sqlite_platform.run("restore-all", "--latest", "--yes")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.lstat(uploads / "shared").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(root / "data" / "team").st_mode) == 0o2775
    assert stat.S_IMODE(os.lstat(uploads / "tool").st_mode) == 0o755
    assert (
        "setuid/setgid not restored on 1 file (uploads/tool): a restore never creates "
        "set-id programs; set them again by hand if they are meant" in done.stdout
    )
