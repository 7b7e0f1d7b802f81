"""`--offsite`, `offsite-sync` and `offsite-setup` through the real CLI, on real servers.

Every remote copy is brought back with a plain client (boto3, a plain fsspec filesystem,
the files sshd wrote) and compared byte for byte with the local backup; encrypted
copies are decrypted with the `age` command-line tool.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import BIN, Platform
from tests.support.destinations import (
    BACKENDS,
    BUCKET,
    BackendSet,
    new_prefix,
    offsite_backends,
)

pytestmark = pytest.mark.timeout(600)

# A distinctive secret: it must never be printed, whatever happens.
S3_SECRET = "s3cr3t-Offsite-Key-9f8e7d"


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendSet]:
    with offsite_backends(tmp_path_factory.mktemp("offsite")) as found:
        yield found


def offsite_env(backends: BackendSet, backend: str, prefix: str, **more: str) -> dict[str, str]:
    env = backends.settings_env(backend, prefix)
    if backend == "s3":
        env["AWS_SECRET_ACCESS_KEY"] = S3_SECRET  # moto accepts any secret
    return {**env, **more}


def raw_bytes(backends: BackendSet, backend: str, prefix: str, name: str) -> bytes:
    fs = backends.raw_fs(backend)
    fs.invalidate_cache()
    with fs.open(backends.raw_path(backend, prefix, name), "rb") as handle:
        return bytes(handle.read())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def only_backup(platform: Platform) -> Path:
    files = platform.backup_files("admin_sqlite_*.db.gz")
    assert len(files) == 1, files
    return files[0]


def metrics_text(platform: Platform) -> str:
    path = platform.backups / "metrics" / "chatbot_backup.prom"
    return path.read_text() if path.exists() else ""


# --------------------------------------------------------------------------- --offsite


@pytest.mark.parametrize("backend", BACKENDS)
def test_db_backup_offsite_round_trip(
    sqlite_platform: Platform, backends: BackendSet, backend: str, tmp_path: Path
) -> None:
    prefix = new_prefix()
    done = sqlite_platform.run(
        "db-backup", "--offsite", extra_env=offsite_env(backends, backend, prefix)
    )
    assert done.returncode == 0, done.stderr
    local = only_backup(sqlite_platform)
    assert "uploaded and verified" in done.stdout
    names = backends.raw_names(backend, prefix)
    assert names == sorted([local.name, f"{local.name}.meta.json", f"{local.name}.sha256"])
    # Byte for byte, through a plain client.
    remote = raw_bytes(backends, backend, prefix, local.name)
    assert remote == local.read_bytes()
    # The remote sidecar is sha256sum's format: `sha256sum -c` accepts the downloaded pair.
    check_dir = tmp_path / "download"
    check_dir.mkdir()
    (check_dir / local.name).write_bytes(remote)
    (check_dir / f"{local.name}.sha256").write_bytes(
        raw_bytes(backends, backend, prefix, f"{local.name}.sha256")
    )
    check = subprocess.run(
        ["sha256sum", "-c", f"{local.name}.sha256"], cwd=check_dir, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    meta = json.loads(raw_bytes(backends, backend, prefix, f"{local.name}.meta.json"))
    assert meta["tier"] == "every-6h" and meta["offsite"]["source_sha256"] == sha256_hex(remote)
    # And it is a real database backup: gunzip gives a SQLite file that passes its check.
    restored = tmp_path / "restored.db"
    restored.write_bytes(gzip.decompress(remote))
    assert sqlite3.connect(restored).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    scheme = {"local": "file"}.get(backend, backend)
    series = (
        f'chatbot_offsite_backup_status{{destination="{backends.destination(backend, prefix)}",'
        f'kind="db",scheme="{scheme}"}} 1'
    )
    assert series in metrics_text(sqlite_platform)
    assert S3_SECRET not in done.stdout + done.stderr


def test_offsite_through_the_users_ssh_config(
    sqlite_platform: Platform, backends: BackendSet, tmp_path: Path
) -> None:
    """The guide's setup: a Host alias in ~/.ssh/config (HOME), nothing else configured."""
    assert backends.ssh_config is not None
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(backends.ssh_config, home / ".ssh" / "config")
    prefix = new_prefix()
    env = {"HOME": str(home), "OFFSITE_DESTINATION": backends.text("ssh", prefix)}
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    local = only_backup(sqlite_platform)
    assert (backends.ssh_root() / prefix / local.name).read_bytes() == local.read_bytes()


def test_unknown_ssh_host_key_is_refused(
    sqlite_platform: Platform, backends: BackendSet, tmp_path: Path
) -> None:
    """No known_hosts entry for the server: no copy, a clear error, the local backup kept."""
    assert backends.ssh_config is not None
    config = tmp_path / "ssh_config"
    config.write_text(
        backends.ssh_config.read_text().replace("UserKnownHostsFile", "# UserKnownHostsFile")
    )
    prefix = new_prefix()
    env = {
        "HOME": str(tmp_path),  # an empty ~/.ssh: no known_hosts either
        "OFFSITE_SSH_CONFIG": str(config),
        "OFFSITE_DESTINATION": backends.text("ssh", prefix),
        "OFFSITE_RETRY_SECONDS": "5",
    }
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 8, done.stdout + done.stderr
    assert "HostKeyNotVerifiable" in done.stderr or "host key" in done.stderr.lower()
    assert "gave up" not in done.stderr  # permanent: not retried
    assert len(done.stderr.strip().splitlines()) == 1
    only_backup(sqlite_platform)
    assert backends.raw_names("ssh", prefix) == []


def test_storage_class_is_applied(sqlite_platform: Platform, backends: BackendSet) -> None:
    import boto3

    prefix = new_prefix()
    env = offsite_env(backends, "s3", prefix, OFFSITE_S3_STORAGE_CLASS="STANDARD_IA")
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    local = only_backup(sqlite_platform)
    assert backends.s3 is not None
    client = boto3.client(
        "s3",
        endpoint_url=backends.s3.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=backends.s3.region,
    )
    head = client.head_object(Bucket=BUCKET, Key=f"{prefix}/{local.name}")
    assert head["StorageClass"] == "STANDARD_IA"


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("s3://", "needs a bucket name"),
        ("s3://Not_A_Bucket/x", "not a valid bucket name"),
        ("az://ab/x", "not a valid container name"),
        ("ftp://example.com/backups", "unsupported scheme"),
        ("backup@server:", "needs a folder"),
        ("s3://AKIAEXAMPLE:hunter2secret@bucket/x", "credentials in a s3:// URL"),
    ],
)
def test_malformed_destination_fails_before_any_work(
    sqlite_platform: Platform, destination: str, expected: str
) -> None:
    done = sqlite_platform.run(
        "db-backup", "--offsite", extra_env={"OFFSITE_DESTINATION": destination}
    )
    assert done.returncode == 3, done.stderr
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "hunter2secret" not in done.stdout + done.stderr
    assert sqlite_platform.backup_files() == []  # nothing was done


@pytest.mark.parametrize(
    ("backend", "env", "expected"),
    [
        ("s3", {}, "no S3 credentials"),
        ("s3", {"AWS_ACCESS_KEY_ID": "only-the-id"}, "S3 credentials incomplete"),
        ("az", {}, "no Azure credentials"),
        ("gs", {"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"}, "cannot read"),
    ],
)
def test_missing_credentials_fail_before_any_work(
    sqlite_platform: Platform, backend: str, env: dict[str, str], expected: str
) -> None:
    isolated = {
        # Keep botocore from finding the machine's own profiles or an instance role.
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "OFFSITE_DESTINATION": f"{backend}://{BUCKET}/x",
        **env,
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))}
    clean.pop("STORAGE_EMULATOR_HOST", None)
    done = subprocess.run(
        [str(BIN / "chatbot-backup"), "db-backup", "--offsite"],
        cwd=sqlite_platform.root,
        env={**clean, **sqlite_platform.env, **isolated},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert expected in done.stderr
    assert sqlite_platform.backup_files() == []


def test_offsite_without_destination_is_a_config_error(sqlite_platform: Platform) -> None:
    done = sqlite_platform.run("db-backup", "--offsite")
    assert done.returncode == 3
    assert "OFFSITE_DESTINATION is not set" in done.stderr
    assert sqlite_platform.backup_files() == []


# --------------------------------------------------------------------------- encryption


def age_keypair(folder: Path) -> tuple[str, Path]:
    identity = folder / "backup.agekey"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return public, identity


def test_encrypted_copy_decrypts_with_the_age_cli(
    sqlite_platform: Platform, backends: BackendSet, tmp_path: Path
) -> None:
    import boto3

    public, identity = age_keypair(tmp_path)
    prefix = new_prefix()
    env = offsite_env(backends, "s3", prefix, BACKUP_ENCRYPTION_RECIPIENTS=public)
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    local = only_backup(sqlite_platform)
    # Nothing unencrypted left the machine: only NAME.age, its sidecars and its sealed meta
    # (issue 22: the whole .meta.json, with table names and row counts, travels encrypted).
    assert backends.raw_names("s3", prefix) == sorted(
        [
            f"{local.name}.age",
            f"{local.name}.age.meta.json",
            f"{local.name}.age.meta.json.age",
            f"{local.name}.age.sha256",
        ]
    )
    # Download with a plain client (boto3), decrypt with the age command-line tool.
    assert backends.s3 is not None
    client = boto3.client(
        "s3",
        endpoint_url=backends.s3.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=backends.s3.region,
    )
    downloaded = tmp_path / f"{local.name}.age"
    client.download_file(BUCKET, f"{prefix}/{local.name}.age", str(downloaded))
    assert downloaded.read_bytes().startswith(b"age-encryption.org/v1\n")
    sidecar = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{local.name}.age.sha256")
    assert sidecar["Body"].read().decode().split()[0] == sha256_hex(downloaded.read_bytes())
    decrypted = tmp_path / local.name
    subprocess.run(
        ["age", "-d", "-i", str(identity), "-o", str(decrypted), str(downloaded)], check=True
    )
    assert decrypted.read_bytes() == local.read_bytes()
    # The readable meta names no table; the sealed one, decrypted by age, is the local meta.
    readable = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{local.name}.age.meta.json")
    assert "tables" not in json.loads(readable["Body"].read())
    sealed = tmp_path / "meta.json.age"
    client.download_file(BUCKET, f"{prefix}/{local.name}.age.meta.json.age", str(sealed))
    opened = subprocess.run(
        ["age", "-d", "-i", str(identity), str(sealed)], check=True, capture_output=True
    ).stdout
    local_meta = json.loads((local.parent / f"{local.name}.meta.json").read_text())
    whole = json.loads(opened)
    assert whole.pop("offsite")["source_sha256"] == sha256_hex(local.read_bytes())
    assert whole == local_meta and "tables" in whole


def test_encrypted_copy_fetches_back_for_restores(
    sqlite_platform: Platform, backends: BackendSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    public, identity = age_keypair(tmp_path)
    prefix = new_prefix()
    env = offsite_env(backends, "s3", prefix, BACKUP_ENCRYPTION_RECIPIENTS=public)
    assert sqlite_platform.run("db-backup", "--offsite", extra_env=env).returncode == 0
    local = only_backup(sqlite_platform)
    for key, value in {**env, "BACKUP_ENCRYPTION_IDENTITY": str(identity)}.items():
        monkeypatch.setenv(key, value)
    from tasks.core.settings import load_settings
    from tasks.offsite.fetch import fetch_backup as fetch_to_local
    from tasks.storage.destination import is_remote_url

    url = f"s3://{BUCKET}/{prefix}/{local.name}.age"
    assert is_remote_url(url)
    fetched = fetch_to_local(url, load_settings(), tmp_path / "fetched")
    assert fetched.name == local.name
    assert fetched.read_bytes() == local.read_bytes()
    assert (fetched.parent / f"{local.name}.sha256").read_text().split()[0] == sha256_hex(
        local.read_bytes()
    )
    # Without the identity: a clear error, no half-made file.
    monkeypatch.delenv("BACKUP_ENCRYPTION_IDENTITY")
    from tasks.core.errors import ConfigError

    with pytest.raises(ConfigError, match="BACKUP_ENCRYPTION_IDENTITY"):
        fetch_to_local(url, load_settings(), tmp_path / "again")


@pytest.mark.parametrize(
    ("recipients", "path", "expected"),
    [
        ("age1notarealkey", None, "age rejected the recipients"),
        ("ssh-rsa AAAAnot-a-key", None, "age rejected the recipients"),
        ("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "EMPTY", "`age`"),
    ],
)
def test_encryption_that_cannot_apply_fails_loudly(
    sqlite_platform: Platform,
    backends: BackendSet,
    tmp_path: Path,
    recipients: str,
    path: str | None,
    expected: str,
) -> None:
    prefix = new_prefix()
    env = offsite_env(backends, "s3", prefix, BACKUP_ENCRYPTION_RECIPIENTS=recipients)
    if path == "EMPTY":
        empty = tmp_path / "no-tools"
        empty.mkdir()
        env["PATH"] = str(empty)  # no `age` anywhere
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert expected in done.stderr and "unencrypted" in done.stderr
    assert sqlite_platform.backup_files() == []
    assert backends.raw_names("s3", prefix) == []


# --------------------------------------------------------------------------- offsite-sync


def make_local_backups(platform: Platform, count: int) -> list[Path]:
    """`count` real db-backup artifacts, made with the building blocks (no flow run: the
    CLI path is covered above, and each run costs seconds)."""
    from tasks.backup.db_artifact import dump_database_artifact
    from tasks.core.atomic import ensure_private_dir
    from tasks.sources import database_source

    ensure_private_dir(platform.backups)
    source = database_source(
        "sqlite", db_path=platform.db_path, database_url=None, scratch_dir=platform.backups
    )
    for _ in range(count):
        dump_database_artifact(source, platform.backups, "every-6h")
    return platform.backup_files("admin_sqlite_*.db.gz")


@pytest.mark.parametrize("backend", ["s3", "ssh", "local"])
def test_sync_uploads_what_is_missing_then_nothing(
    sqlite_platform: Platform, backends: BackendSet, backend: str
) -> None:
    made = make_local_backups(sqlite_platform, 3)
    prefix = new_prefix()
    env = offsite_env(backends, backend, prefix)
    # One copy is already there (an earlier --offsite run).
    first = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert first.returncode == 0, first.stderr
    sync = sqlite_platform.run("offsite-sync", extra_env=env)
    assert sync.returncode == 0, sync.stderr
    assert "uploaded:      3" in sync.stdout and "already there: 1" in sync.stdout
    everything = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    assert len(everything) == 4 and set(made) < set(everything)
    for path in everything:
        assert raw_bytes(backends, backend, prefix, path.name) == path.read_bytes()
    fs = backends.raw_fs(backend)
    before = {
        p: fs.info(backends.raw_path(backend, prefix, p)).get("ETag")
        or fs.modified(backends.raw_path(backend, prefix, p))
        for p in backends.raw_names(backend, prefix)
    }
    again = sqlite_platform.run("offsite-sync", extra_env=env)
    assert again.returncode == 0, again.stderr
    assert "uploaded:      0" in again.stdout and "already there: 4" in again.stdout
    fs.invalidate_cache()
    after = {
        p: fs.info(backends.raw_path(backend, prefix, p)).get("ETag")
        or fs.modified(backends.raw_path(backend, prefix, p))
        for p in backends.raw_names(backend, prefix)
    }
    assert after == before  # nothing was written again


def flip_remote_bytes(backends: BackendSet, backend: str, prefix: str, name: str) -> None:
    """Overwrite 4 bytes in the middle of a remote copy: same size, other content."""
    data = bytearray(raw_bytes(backends, backend, prefix, name))
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    backends.raw_fs(backend).pipe_file(backends.raw_path(backend, prefix, name), bytes(data))


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_sync_replaces_a_same_size_damaged_copy(
    sqlite_platform: Platform, backends: BackendSet, backend: str
) -> None:
    prefix = new_prefix()
    env = offsite_env(backends, backend, prefix)
    first = sqlite_platform.run("backup-all", "--offsite", extra_env=env)
    assert first.returncode == 0, first.stderr
    (archive,) = sqlite_platform.backup_files("full_backup_*.tar.gz")
    flip_remote_bytes(backends, backend, prefix, archive.name)
    assert raw_bytes(backends, backend, prefix, archive.name) != archive.read_bytes()
    damaged = sqlite_platform.run("offsite-verify", extra_env=env)
    assert damaged.returncode == 6, damaged.stdout + damaged.stderr

    sync = sqlite_platform.run("offsite-sync", extra_env=env)
    assert sync.returncode == 0, sync.stderr
    assert "uploaded:      1" in sync.stdout and "already there: 0" in sync.stdout, sync.stdout
    assert "repaired:      1" in sync.stdout, sync.stdout
    assert f"{archive.name}: sha256" in sync.stdout, sync.stdout  # the repaired line
    assert "altered or damaged" in sync.stdout, sync.stdout
    assert raw_bytes(backends, backend, prefix, archive.name) == archive.read_bytes()
    assert not [n for n in backends.raw_names(backend, prefix) if ".partial-" in n]
    assert sqlite_platform.run("offsite-verify", extra_env=env).returncode == 0

    again = sqlite_platform.run("offsite-sync", extra_env=env)
    assert again.returncode == 0, again.stderr
    assert "uploaded:      0" in again.stdout and "already there: 1" in again.stdout
    assert "repaired" not in again.stdout


def test_sync_verify_finds_an_altered_copy(sqlite_platform: Platform, backends: BackendSet) -> None:
    make_local_backups(sqlite_platform, 1)
    prefix = new_prefix()
    env = offsite_env(backends, "s3", prefix)
    assert sqlite_platform.run("offsite-sync", extra_env=env).returncode == 0
    clean = sqlite_platform.run("offsite-sync", "--verify", extra_env=env)
    assert clean.returncode == 0, clean.stderr
    assert "verified:      1 of 1" in clean.stdout
    # Flip bytes in the middle of a remote copy whose local backup is gone (rotated):
    # the upload step cannot repair it, only --verify reads it.
    local = only_backup(sqlite_platform)
    name = local.name
    flip_remote_bytes(backends, "s3", prefix, name)
    local.unlink()
    caught = sqlite_platform.run("offsite-sync", "--verify", extra_env=env)
    assert caught.returncode == 6, caught.stdout + caught.stderr
    assert name in caught.stderr and "altered or damaged" in caught.stderr
    assert len(caught.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- retention


def put_remote_backup(dest: object, name: str, tier: str | None, tmp: Path) -> None:
    from tasks.storage.destination import Destination

    assert isinstance(dest, Destination)
    data = gzip.compress(os.urandom(64))
    local = tmp / name
    local.write_bytes(data)
    dest.put(local, name)
    if tier is not None:
        dest.put_bytes(name + ".meta.json", json.dumps({"tier": tier}).encode())
    dest.put_bytes(name + ".sha256", f"{sha256_hex(data)}  {name}\n".encode())


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_offsite_retention_keeps_newest_three_and_ignores_foreign_files(
    sqlite_platform: Platform, backends: BackendSet, backend: str, tmp_path: Path
) -> None:
    from tasks.core.naming import db_backup_name, full_backup_name

    prefix = new_prefix()
    dest = backends.destination(backend, prefix)
    now = datetime.now(UTC)
    old = [now - timedelta(days=400 + i) for i in range(5)]
    db_old = [db_backup_name("sqlite", moment) for moment in old]  # no tier: every-6h
    monthly = [full_backup_name(moment) for moment in old[:2]]
    recent = db_backup_name("sqlite", now - timedelta(days=10))
    for name in db_old:
        put_remote_backup(dest, name, None, tmp_path)
    for name in monthly:
        put_remote_backup(dest, name, "monthly", tmp_path)
    put_remote_backup(dest, recent, "every-6h", tmp_path)
    foreign = ["README.txt", "admin_sqlite_backup_notes.db.gz", db_old[0] + ".bak"]
    for name in foreign:
        dest.put_bytes(name, b"not ours")
    env = offsite_env(backends, backend, prefix, OFFSITE_RETENTION_DAYS="365")
    done = sqlite_platform.run("offsite-sync", extra_env=env)  # no local backups: prune only
    assert done.returncode == 0, done.stderr
    names = set(backends.raw_names(backend, prefix))
    # every-6h: the recent one and the two newest old ones stay (newest 3); 3 oldest go.
    newest_first = sorted(db_old, reverse=True)
    for name in [recent, *newest_first[:2]]:
        assert {name, name + ".sha256"} <= names, name
    for name in newest_first[2:]:
        assert not {name, name + ".sha256", name + ".meta.json"} & names, name
    # monthly tier: only 2 copies, both under the minimum of 3, both kept.
    for name in monthly:
        assert {name, name + ".sha256", name + ".meta.json"} <= names
    assert set(foreign) <= names
    assert "removed by off-site retention: 3" in done.stdout


# --------------------------------------------------------------------------- offsite-setup


def test_offsite_setup_puts_the_lifecycle_policy(
    sqlite_platform: Platform, backends: BackendSet
) -> None:
    import boto3

    assert backends.s3 is not None
    client = boto3.client(
        "s3",
        endpoint_url=backends.s3.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=backends.s3.region,
    )
    bucket = f"lifecycle-{new_prefix()}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": backends.s3.region}
    )
    other = {"ID": "someone-elses", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
             "Expiration": {"Days": 3}}  # fmt: skip
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [other]}
    )
    env = offsite_env(backends, "s3", "x") | {"OFFSITE_DESTINATION": f"s3://{bucket}/chatbot"}
    for _ in range(2):  # applying twice leaves one rule of ours
        done = sqlite_platform.run("offsite-setup", extra_env=env)
        assert done.returncode == 0, done.stderr
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"someone-elses", "chatbot-backup-offsite"}
    ours = rules["chatbot-backup-offsite"]
    assert (
        ours["Transitions"][0]["Days"] == 30 and ours["Transitions"][0]["StorageClass"] == "GLACIER"
    )
    assert ours["Expiration"]["Days"] == 365
    assert ours["Filter"]["Prefix"] == "chatbot/"
    custom = sqlite_platform.run(
        "offsite-setup", "--glacier-days", "60", "--expire-days", "730", extra_env=env
    )
    assert custom.returncode == 0, custom.stderr
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["chatbot-backup-offsite"]["Transitions"][0]["Days"] == 60
    assert rules["chatbot-backup-offsite"]["Expiration"]["Days"] == 730
    bad = sqlite_platform.run(
        "offsite-setup", "--glacier-days", "400", "--expire-days", "365", extra_env=env
    )
    assert bad.returncode == 3 and "must be less than" in bad.stderr


def test_offsite_setup_is_for_s3_only(sqlite_platform: Platform, backends: BackendSet) -> None:
    done = sqlite_platform.run("offsite-setup", extra_env=offsite_env(backends, "local", "x"))
    assert done.returncode == 3 and "not s3://" in done.stderr


# --------------------------------------------------------------------------- restores


def fill_platform(platform: Platform) -> None:
    from tests.conftest import make_sqlite_db

    make_sqlite_db(platform.db_path)
    (platform.root / "config.php").write_text("<?php return ['name' => 'chatbot'];\n")
    (platform.root / ".env").write_text("# chatbot settings\n")
    (platform.root / "data" / "uploads" / "report.pdf").write_bytes(os.urandom(50_000))
    (platform.root / "data" / "notes.txt").write_text("application data\n")


def no_fetch_leftovers(platform: Platform) -> bool:
    staging = platform.backups / ".offsite-staging"
    return not staging.exists() or not any(staging.iterdir())


def test_test_restore_from_an_encrypted_s3_copy(
    platform: Platform, backends: BackendSet, tmp_path: Path
) -> None:
    """The guide's "Test restores from off-site location", without the manual download."""
    fill_platform(platform)
    public, identity = age_keypair(tmp_path)
    prefix = new_prefix()
    env = offsite_env(backends, "s3", prefix, BACKUP_ENCRYPTION_RECIPIENTS=public)
    done = platform.run("backup-all", "--offsite", "--tier", "weekly", extra_env=env)
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    assert f"{archive.name}.age: uploaded and verified" in done.stdout
    url = f"s3://{BUCKET}/{prefix}/{archive.name}.age"
    checked = platform.run(
        "test-restore",
        "--backup-file",
        url,
        extra_env={**env, "BACKUP_ENCRYPTION_IDENTITY": str(identity)},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All 8 checks passed" in checked.stdout
    assert no_fetch_leftovers(platform)
    # Without the identity the encrypted copy cannot be read: a clear failure.
    refused = platform.run("test-restore", "--backup-file", url, extra_env=env)
    assert refused.returncode != 0 and "BACKUP_ENCRYPTION_IDENTITY" in refused.stderr


def test_db_restore_from_an_ssh_copy(sqlite_platform: Platform, backends: BackendSet) -> None:
    from tests.conftest import sqlite_dump

    before = sqlite_dump(sqlite_platform.db_path)
    prefix = new_prefix()
    env = offsite_env(backends, "ssh", prefix)
    assert sqlite_platform.run("db-backup", "--offsite", extra_env=env).returncode == 0
    local = only_backup(sqlite_platform)
    db = sqlite3.connect(sqlite_platform.db_path)
    db.execute("DELETE FROM messages")
    db.commit()
    db.close()
    local.unlink()  # the local copy is lost too: only the off-site one is left
    url = f"{backends.text('ssh', prefix)}/{local.name}"
    done = sqlite_platform.run("db-restore", url, "--yes", extra_env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    from tests.conftest import sqlite_dump as dump_again

    assert dump_again(sqlite_platform.db_path) == before
    assert no_fetch_leftovers(sqlite_platform)


def test_restore_all_from_an_azure_copy(platform: Platform, backends: BackendSet) -> None:
    fill_platform(platform)
    report = platform.root / "data" / "uploads" / "report.pdf"
    original = report.read_bytes()
    prefix = new_prefix()
    env = offsite_env(backends, "az", prefix)
    done = platform.run("backup-all", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    [archive] = platform.backup_files("full_backup_*.tar.gz")
    report.unlink()
    url = f"az://{BUCKET}/{prefix}/{archive.name}"
    restored = platform.run("restore-all", url, "--yes", extra_env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert report.read_bytes() == original
    assert url in restored.stdout
    assert no_fetch_leftovers(platform)


def test_python_api_result_artifact_and_no_secret_anywhere(
    sqlite_platform: Platform,
    backends: BackendSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client

    from flows import DbBackupResult, OffsiteSyncResult, db_backup, offsite_sync

    prefix = new_prefix()
    for key, value in offsite_env(backends, "s3", prefix).items():
        monkeypatch.setenv(key, value)
    result = db_backup(offsite=True)
    assert isinstance(result, DbBackupResult) and result.offsite is not None
    [copy] = result.offsite.copies
    assert copy.uploaded and copy.sha256 == result.sha256 and copy.size == result.size
    assert copy.url == f"s3://{BUCKET}/{prefix}/{Path(result.path).name}"
    synced = offsite_sync(verify=True)
    assert isinstance(synced, OffsiteSyncResult)
    assert (synced.uploaded, synced.already_there) == (0, 1)
    assert [c.status for c in synced.checks] == ["ok"]
    artifact = Artifact.get("offsite-sync")
    assert artifact is not None
    data = artifact.data if isinstance(artifact.data, str) else json.dumps(artifact.data)
    assert "verify: ok" in data
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=20)
        seen = json.dumps([r.parameters for r in runs], default=str)
        for key in ("offsite-copy", "offsite-sync"):
            art = Artifact.get(key)
            seen += str(art.data if art is not None else "")
    assert S3_SECRET not in seen
