"""test-restore: passes on a good backup, and fails naming the check on every kind of damage.

Damage is real: a byte flipped in the middle of the archive, a truncated archive, an
archive rebuilt with a manifest that lies, a database artifact that does not restore,
a member that would land outside the target. The database check restores into real
scratch databases (a temporary SQLite file, a temporary PostgreSQL database that must
be gone afterwards), and the staging check runs over a real sshd on loopback.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tasks.stream.checksum import sha256_file, write_sidecar
from tasks.verify.restore_test import SCRATCH_DB_PREFIX
from tests.conftest import BIN, PG_ADMIN, Platform, fill_postgres, make_sqlite_db, pg_url
from tests.test_backup_all import build_platform

ALL_CHECKS = [
    "backup-file",
    "archive-integrity",
    "extraction",
    "manifest",
    "database",
    "config-files",
    "uploads",
    "app-data",
]
PASSWORD = "t3st-rest0re:p@ss/%"


# -- helpers -----------------------------------------------------------------------------------


def outcome(stdout: str) -> dict[str, str]:
    """check name -> "PASS"/"FAIL", from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("PASS", "FAIL"):
            rows[parts[1]] = parts[0]
    return rows


def reason(stdout: str, check: str) -> str:
    for line in stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1] == check:
            return parts[2]
    raise AssertionError(f"{check} not reported:\n{stdout}")


def assert_fails_only(done: subprocess.CompletedProcess[str], failing: set[str]) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    rows = outcome(done.stdout)
    assert {name for name, result in rows.items() if result == "FAIL"} == failing, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "test-restore failed" in lines[0] and "Traceback" not in done.stderr
    first = next(name for name in ALL_CHECKS + ["staging-server"] if name in failing)
    assert f"first: {first}:" in lines[0]


def rewrite_archive(
    source: Path, target: Path, change: Callable[[str, bytes], bytes] = lambda n, d: d
) -> Path:
    """Copy `source` member by member (order kept), passing each file through `change`."""
    with (
        tarfile.open(source, "r:gz") as src,
        tarfile.open(target, "w:gz", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src:
            if member.isfile():
                data = change(member.name, src.extractfile(member).read())  # type: ignore[union-attr]
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
            else:
                dst.addfile(member)
    write_sidecar(target, sha256_file(target))
    return target


def edit_manifest(edit: Callable[[dict], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        if name.endswith("/MANIFEST.json"):
            manifest = json.loads(data)
            edit(manifest)
            return json.dumps(manifest).encode()
        return data

    return change


def scratch_databases() -> list[str]:
    with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (SCRATCH_DB_PREFIX + "%",)
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def backed_up(platform: Platform) -> Path:
    """A platform with real files and a SQLite database, and one full backup of it."""
    build_platform(platform.root)
    make_sqlite_db(platform.db_path)
    done = platform.run("backup-all")
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    return archive


# -- a good backup -------------------------------------------------------------------------------


def test_good_archive_passes_every_check(platform: Platform, backed_up: Path) -> None:
    done = platform.run("test-restore")  # the newest full backup by default
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(done.stdout) == dict.fromkeys(ALL_CHECKS, "PASS")
    assert f"Test restore of {backed_up}" in done.stdout
    assert "All 8 checks passed" in done.stdout and done.stderr.strip() == ""
    assert "row counts match" in reason(done.stdout, "database")
    # Every link comes back as recorded, the one pointing outside too (SPEC: Restore).
    assert "4 links (as MANIFEST.json records them)" in reason(done.stdout, "extraction")
    # Nothing left behind: no scratch folders.
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("chatbot-test-restore-*"))


def test_python_api_and_table_artifact(platform: Platform, backed_up: Path) -> None:
    from prefect.artifacts import Artifact

    from flows import TestRestoreResult, test_restore

    result = test_restore(backup_file=str(backed_up))
    assert isinstance(result, TestRestoreResult) and result.passed
    assert [c.name for c in result.checks] == ALL_CHECKS
    assert all(c.reason for c in result.checks)
    artifact = Artifact.get("test-restore-checks")
    assert artifact is not None
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [row["check"] for row in rows] == ALL_CHECKS
    assert {row["result"] for row in rows} == {"pass"}


def test_relative_backup_file_from_the_current_folder(platform: Platform, backed_up: Path) -> None:
    done = subprocess.run(
        [str(BIN / "chatbot-backup"), "test-restore", "--backup-file", backed_up.name],
        cwd=backed_up.parent,
        env={**os.environ, **platform.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- damage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_sidecar", [True, False])
def test_one_flipped_byte_in_the_middle(
    platform: Platform, backed_up: Path, keep_sidecar: bool
) -> None:
    data = bytearray(backed_up.read_bytes())
    data[len(data) // 2] ^= 0x01
    backed_up.write_bytes(bytes(data))
    if not keep_sidecar:
        Path(f"{backed_up}.sha256").unlink()
    done = platform.run("test-restore", "--backup-file", str(backed_up))
    assert_fails_only(done, set(ALL_CHECKS[1:]))
    why = reason(done.stdout, "archive-integrity")
    assert ("sha256 does not match" in why) if keep_sidecar else ("damaged" in why)
    assert reason(done.stdout, "extraction") == "not run: archive-integrity failed"


@pytest.mark.parametrize("keep_sidecar", [True, False])
def test_truncated_archive(platform: Platform, backed_up: Path, keep_sidecar: bool) -> None:
    with open(backed_up, "r+b") as handle:
        handle.truncate(backed_up.stat().st_size * 2 // 3)
    if not keep_sidecar:
        Path(f"{backed_up}.sha256").unlink()
    done = platform.run("test-restore", "--backup-file", str(backed_up))
    assert_fails_only(done, set(ALL_CHECKS[1:]))
    assert backed_up.name in reason(done.stdout, "archive-integrity")


def test_manifest_that_lies_about_a_file(
    platform: Platform, backed_up: Path, tmp_path: Path
) -> None:
    def lie(manifest: dict) -> None:
        for entry in manifest["files"]:
            if entry["path"] == "uploads/2025/11/photo.jpg":
                entry["sha256"] = "0" * 64
            if entry["path"] == "data/logs/app.log":
                entry["size"] += 1

    forged = rewrite_archive(backed_up, tmp_path / backed_up.name, edit_manifest(lie))
    done = platform.run("test-restore", "--backup-file", str(forged))
    assert_fails_only(done, {"manifest", "uploads", "app-data"})
    why = reason(done.stdout, "manifest")
    assert "uploads/2025/11/photo.jpg: sha256 differs from the manifest" in why
    assert "data/logs/app.log: 8000 bytes, manifest says 8001" in why
    assert "photo.jpg" in reason(done.stdout, "uploads")


def test_manifest_missing_a_file_or_listing_a_ghost(
    platform: Platform, backed_up: Path, tmp_path: Path
) -> None:
    def lie(manifest: dict) -> None:
        manifest["files"] = [e for e in manifest["files"] if e["path"] != "uploads/empty.txt"]
        manifest["files"].append(
            {"path": "config/config.php", "type": "file", "size": 3, "sha256": "1" * 64}
        )

    forged = rewrite_archive(backed_up, tmp_path / backed_up.name, edit_manifest(lie))
    done = platform.run("test-restore", "--backup-file", str(forged))
    assert_fails_only(done, {"manifest", "config-files"})
    why = reason(done.stdout, "manifest")
    assert "uploads/empty.txt: in the archive, not in the manifest" in why
    assert "config/config.php: file missing" in why


def test_archive_without_a_manifest(platform: Platform, backed_up: Path, tmp_path: Path) -> None:
    top = tmp_path / "x"
    top.mkdir()
    subprocess.run(["tar", "-xzf", str(backed_up), "-C", str(top)], check=True)
    [folder] = list(top.iterdir())
    (folder / "MANIFEST.json").unlink()
    made = tmp_path / backed_up.name
    subprocess.run(["tar", "-czf", str(made), "-C", str(top), folder.name], check=True)
    done = platform.run("test-restore", "--backup-file", str(made))
    assert_fails_only(done, {"manifest", "database", "config-files", "uploads", "app-data"})
    assert "MANIFEST.json missing" in reason(done.stdout, "manifest")


def test_sqlite_dump_that_does_not_restore(
    platform: Platform, backed_up: Path, tmp_path: Path
) -> None:
    broken = gzip.compress(b"SQLite format 3\x00" + os.urandom(8192))
    state: dict[str, str | int] = {}

    def swap(name: str, data: bytes) -> bytes:
        if "/database/" in name:
            state["artifact"] = name.split("/", 1)[1]
            return broken
        if name.endswith("/MANIFEST.json"):  # keep the manifest honest about the new bytes
            manifest = json.loads(data)
            manifest["database"]["size"] = len(broken)
            manifest["database"]["sha256"] = __import__("hashlib").sha256(broken).hexdigest()
            return json.dumps(manifest).encode()
        return data

    forged = rewrite_archive(backed_up, tmp_path / backed_up.name, swap)
    done = platform.run("test-restore", "--backup-file", str(forged))
    assert_fails_only(done, {"database"})
    assert "does not restore" in reason(done.stdout, "database")


def test_row_counts_that_do_not_match(platform: Platform, backed_up: Path, tmp_path: Path) -> None:
    def lie(manifest: dict) -> None:
        manifest["database"]["tables"]["messages"] = 501

    forged = rewrite_archive(backed_up, tmp_path / backed_up.name, edit_manifest(lie))
    done = platform.run("test-restore", "--backup-file", str(forged))
    assert_fails_only(done, {"database"})
    assert "messages: 501 recorded, 500 restored" in reason(done.stdout, "database")


def test_member_that_would_land_outside_is_refused(
    platform: Platform, backed_up: Path, tmp_path: Path
) -> None:
    forged = tmp_path / backed_up.name
    with tarfile.open(backed_up, "r:gz") as src, tarfile.open(forged, "w:gz") as dst:
        members = src.getmembers()
        for member in members[:-2]:
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        evil = tarfile.TarInfo(f"{members[0].name}/../../../escaped.txt")
        evil.size = 4
        dst.addfile(evil, io.BytesIO(b"evil"))
        for member in members[-2:]:
            dst.addfile(member, src.extractfile(member))
    write_sidecar(forged, sha256_file(forged))
    done = platform.run("test-restore", "--backup-file", str(forged))
    assert_fails_only(done, set(ALL_CHECKS[2:]))
    assert "'..' in a member name refused" in reason(done.stdout, "extraction")
    import tempfile

    assert not (Path(tempfile.gettempdir()) / "escaped.txt").exists()


def test_no_backup_at_all(platform: Platform) -> None:
    done = platform.run("test-restore")
    assert_fails_only(done, set(ALL_CHECKS))
    assert "no full backup in" in reason(done.stdout, "backup-file")


def test_not_a_backup(platform: Platform, tmp_path: Path) -> None:
    junk = tmp_path / "full_backup_20250101_000000.tar.gz"
    junk.write_bytes(os.urandom(4096))
    done = platform.run("test-restore", "--backup-file", str(junk))
    assert_fails_only(done, set(ALL_CHECKS[1:]))
    assert "not a gzip or zstd file" in reason(done.stdout, "archive-integrity")


# -- database-only artifacts ----------------------------------------------------------------------


def test_db_only_sqlite_artifact(sqlite_platform: Platform) -> None:
    assert sqlite_platform.run("db-backup").returncode == 0
    [artifact] = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    done = sqlite_platform.run("test-restore", "--backup-file", str(artifact))
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(done.stdout) == dict.fromkeys(
        ["backup-file", "archive-integrity", "database"], "PASS"
    )
    assert "row counts match" in reason(done.stdout, "database")

    with open(artifact, "r+b") as handle:
        handle.truncate(artifact.stat().st_size - 20)
    done = sqlite_platform.run("test-restore", "--backup-file", str(artifact))
    assert_fails_only(done, {"archive-integrity", "database"})


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.fixture
def pg_platform(platform: Platform, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Platform:
    fill_postgres(pg_database, rows=1500)
    build_platform(platform.root)
    platform.set(
        monkeypatch,
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=pg_url(pg_database, password=PASSWORD),
    )
    return platform


def test_postgres_backup_restores_into_a_scratch_database(pg_platform: Platform) -> None:
    assert pg_platform.run("backup-all").returncode == 0
    done = pg_platform.run("test-restore")
    assert done.returncode == 0, done.stdout + done.stderr
    why = reason(done.stdout, "database")
    assert "temporary PostgreSQL database" in why and "dropped" in why
    assert "3 tables, 1570 rows; row counts match" in why
    assert scratch_databases() == []
    assert PASSWORD not in done.stdout + done.stderr

    assert pg_platform.run("db-backup").returncode == 0
    [dump] = pg_platform.backup_files("admin_postgres_*.sql.gz")
    done = pg_platform.run("test-restore", "--backup-file", str(dump))
    assert done.returncode == 0, done.stdout + done.stderr
    assert scratch_databases() == []


def test_postgres_dump_that_does_not_restore(pg_platform: Platform, tmp_path: Path) -> None:
    assert pg_platform.run("backup-all").returncode == 0
    [archive] = pg_platform.backup_files("full_backup_*.tar.gz")
    broken = gzip.compress(  # whole (it ends as pg_dump ends a dump), but not SQL
        b"CREATE TABLE ok_so_far (id int);\nTHIS IS NOT SQL;\n--\n-- PostgreSQL database dump complete\n--\n"
    )
    import hashlib

    def swap(name: str, data: bytes) -> bytes:
        if "/database/" in name:
            return broken
        if name.endswith("/MANIFEST.json"):
            manifest = json.loads(data)
            manifest["database"].update(size=len(broken), sha256=hashlib.sha256(broken).hexdigest())
            return json.dumps(manifest).encode()
        return data

    forged = rewrite_archive(archive, tmp_path / archive.name, swap)
    done = pg_platform.run("test-restore", "--backup-file", str(forged))
    assert_fails_only(done, {"database"})
    why = reason(done.stdout, "database")
    assert "does not restore" in why and "syntax error" in why
    assert scratch_databases() == []  # dropped even though the load failed


def test_postgres_dump_without_a_server_to_restore_into(
    platform: Platform, pg_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pg_platform.run("backup-all").returncode == 0
    monkeypatch.delenv("ADMIN_DATABASE_URL")
    pg_platform.env.pop("ADMIN_DATABASE_URL")
    pg_platform.set(monkeypatch, ADMIN_DB_TYPE="sqlite")
    done = pg_platform.run("test-restore")
    assert_fails_only(done, {"database"})
    assert "needs a PostgreSQL server" in reason(done.stdout, "database")


# -- staging server over SSH -------------------------------------------------------------------


@pytest.fixture
def staging(tmp_path: Path, prefect_api_url: str) -> Iterator[dict[str, str]]:
    """A real sshd on loopback; the "staging host" is this machine, reached over SSH."""
    from tests.support.services import ServiceError, sshd_server, write_ssh_config

    try:
        server = sshd_server(tmp_path)
        service = server.__enter__()
    except ServiceError as exc:
        pytest.skip(f"no sshd here: {exc}")
    try:
        config = write_ssh_config(service, tmp_path / "ssh_config", alias="staging-host")
        # A non-interactive SSH session has the system PATH: name the installation, and
        # send its runs to this session's Prefect server.
        remote = (
            f"env PREFECT_API_URL={prefect_api_url} PREFECT_SERVER_ANALYTICS_ENABLED=false "
            f"{BIN / 'chatbot-backup'}"
        )
        yield {
            "CHATBOT_BACKUP_SSH_CONFIG": str(config),
            "CHATBOT_BACKUP_REMOTE_COMMAND": remote,
            "destination": f"{service.user}@staging-host",
        }
    finally:
        server.__exit__(None, None, None)


def test_staging_server_restore_over_ssh(
    platform: Platform, backed_up: Path, staging: dict[str, str]
) -> None:
    destination = staging.pop("destination")
    done = platform.run(
        "test-restore", "--staging-server", destination, extra_env=staging, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(done.stdout)["staging-server"] == "PASS"
    assert "test-restore passed there" in reason(done.stdout, "staging-server")


def test_staging_server_without_chatbot_backup(
    platform: Platform, backed_up: Path, staging: dict[str, str]
) -> None:
    destination = staging.pop("destination")
    staging["CHATBOT_BACKUP_REMOTE_COMMAND"] = "/nonexistent/chatbot-backup"
    done = platform.run("test-restore", "--staging-server", destination, extra_env=staging)
    assert_fails_only(done, {"staging-server"})
    assert "not installed there" in reason(done.stdout, "staging-server")


def test_staging_server_that_fails_its_checks(
    platform: Platform, backed_up: Path, staging: dict[str, str], tmp_path: Path
) -> None:
    """The copy arrives damaged on the staging host: its own archive check fails there."""
    destination = staging.pop("destination")
    damaging = tmp_path / "damaging-chatbot-backup"
    damaging.write_text(
        "#!/bin/sh\n"
        "# $1=test-restore $2=--backup-file $3=the copied archive: flip one byte, then test\n"
        f'{BIN / "python"} -c \'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); '
        f'b[len(b) // 2] ^= 1; open(p, "wb").write(b)\' "$3"\n'
        f'exec {staging["CHATBOT_BACKUP_REMOTE_COMMAND"]} "$@"\n'
    )
    damaging.chmod(0o755)
    staging["CHATBOT_BACKUP_REMOTE_COMMAND"] = str(damaging)
    done = platform.run("test-restore", "--staging-server", destination, extra_env=staging)
    assert_fails_only(done, {"staging-server"})
    why = reason(done.stdout, "staging-server")
    assert f"test-restore on {destination} failed: archive-integrity" in why
    assert "sha256 does not match" in why


@pytest.mark.parametrize(
    "bad", ["-oProxyCommand=touch {marker}", "a b@c", "user@host;touch {marker}"]
)
def test_staging_server_value_is_checked(
    platform: Platform, backed_up: Path, bad: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    done = platform.run("test-restore", f"--staging-server={bad.format(marker=marker)}")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "--staging-server: expected user@host" in done.stderr
    assert not marker.exists()
