"""Immutable off-site copies on moto with an Object Lock bucket (SPEC: Off-site copies).

The retention is read back with boto3's head_object (SERVICES.md: moto answers
get_object_retention with a 500), and a locked version really refuses deletion.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Platform
from tests.support import services as sv

pytestmark = pytest.mark.timeout(300)

LOCKED = "locked-offsite"
PLAIN = "plain-offsite"


@pytest.fixture(scope="module")
def s3() -> Iterator[sv.S3Service]:
    with sv.moto_s3() as service:
        client = boto(service)
        where = {"CreateBucketConfiguration": {"LocationConstraint": service.region}}
        client.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True, **where)
        client.create_bucket(Bucket=PLAIN, **where)
        yield service


def boto(service: sv.S3Service) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=service.endpoint_url,
        aws_access_key_id=service.key,
        aws_secret_access_key=service.secret,
        region_name=service.region,
    )


def s3_env(service: sv.S3Service, destination: str, **more: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": service.key,
        "AWS_SECRET_ACCESS_KEY": service.secret,
        "AWS_ENDPOINT_URL": service.endpoint_url,
        "AWS_DEFAULT_REGION": service.region,
        "OFFSITE_DESTINATION": destination,
        "OFFSITE_RETRY_SECONDS": "5",
        **more,
    }


def keys_under(client: Any, bucket: str, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return sorted(o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", []))


def test_every_object_carries_the_retention_and_refuses_deletion(
    sqlite_platform: Platform, s3: sv.S3Service
) -> None:
    client = boto(s3)
    env = s3_env(s3, f"s3://{LOCKED}/every", OFFSITE_OBJECT_LOCK_DAYS="3")
    before = datetime.now(UTC)
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    names = keys_under(client, LOCKED, "every")
    assert len(names) == 3 and any(n.endswith(".sha256") for n in names), names
    for name in names:
        head = client.head_object(Bucket=LOCKED, Key=f"every/{name}")
        assert head["ObjectLockMode"] == "GOVERNANCE", name
        until = head["ObjectLockRetainUntilDate"]
        assert before + timedelta(days=3) - timedelta(minutes=1) <= until, name
        assert until <= datetime.now(UTC) + timedelta(days=3, minutes=1), name
    # The lock is real: the locked version cannot be deleted.
    data = next(n for n in names if n.endswith(".db.gz"))
    version = client.head_object(Bucket=LOCKED, Key=f"every/{data}")["VersionId"]
    with pytest.raises(Exception, match="AccessDenied"):
        client.delete_object(Bucket=LOCKED, Key=f"every/{data}", VersionId=version)


def test_compliance_mode_is_used_when_asked(sqlite_platform: Platform, s3: sv.S3Service) -> None:
    client = boto(s3)
    env = s3_env(
        s3,
        f"s3://{LOCKED}/compliance",
        OFFSITE_OBJECT_LOCK_DAYS="1",
        OFFSITE_OBJECT_LOCK_MODE="compliance",
    )
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    for name in keys_under(client, LOCKED, "compliance"):
        head = client.head_object(Bucket=LOCKED, Key=f"compliance/{name}")
        assert head["ObjectLockMode"] == "COMPLIANCE", name


def test_a_bad_lock_mode_is_refused_before_any_work(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    env = {
        "OFFSITE_DESTINATION": str(tmp_path),
        "OFFSITE_OBJECT_LOCK_DAYS": "3",
        "OFFSITE_OBJECT_LOCK_MODE": "FOREVER",
    }
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 3, done.stderr
    assert "OFFSITE_OBJECT_LOCK_MODE" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert sqlite_platform.backup_files() == []


def test_offsite_setup_checks_versioning_and_object_lock(
    sqlite_platform: Platform, s3: sv.S3Service
) -> None:
    locked = s3_env(s3, f"s3://{LOCKED}/setup", OFFSITE_OBJECT_LOCK_DAYS="7")
    done = sqlite_platform.run("offsite-setup", extra_env=locked)
    assert done.returncode == 0, done.stderr
    assert "versioning: Enabled" in done.stdout and "Object Lock: enabled" in done.stdout
    assert "locked 7 days (GOVERNANCE)" in done.stdout
    # A bucket made without Object Lock cannot lock: said clearly, exit 3.
    plain = s3_env(s3, f"s3://{PLAIN}/setup", OFFSITE_OBJECT_LOCK_DAYS="7")
    refused = sqlite_platform.run("offsite-setup", extra_env=plain)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert f"bucket '{PLAIN}' cannot lock" in refused.stderr
    assert "only be turned on when a bucket is created" in refused.stderr
    # Without OFFSITE_OBJECT_LOCK_DAYS the same bucket is fine, and the state is reported.
    reported = sqlite_platform.run("offsite-setup", extra_env=s3_env(s3, f"s3://{PLAIN}/setup"))
    assert reported.returncode == 0, reported.stderr
    assert "Object Lock: not enabled on this bucket" in reported.stdout


def make_backup(folder: Path, when: datetime) -> Path:
    from tasks.stream.checksum import sha256_file, write_sidecar

    path = folder / f"admin_sqlite_{when:%Y%m%d_%H%M%S}.db.gz"
    path.write_bytes(gzip.compress(os.urandom(2000)))
    write_sidecar(path, sha256_file(path))
    return path


def destination(service: sv.S3Service, text: str, lock_days: int | None) -> Any:
    from tasks.storage.destination import parse_destination

    dest = parse_destination(
        text,
        env={
            "AWS_ACCESS_KEY_ID": service.key,
            "AWS_SECRET_ACCESS_KEY": service.secret,
            "AWS_ENDPOINT_URL": service.endpoint_url,
            "AWS_DEFAULT_REGION": service.region,
        },
    )
    dest.lock = ("GOVERNANCE", lock_days) if lock_days else None
    return dest


def test_prune_leaves_locked_copies_and_reports_them(s3: sv.S3Service, tmp_path: Path) -> None:
    from tasks.core.backoff import RetryPolicy
    from tasks.offsite.catalog import prune_remote
    from tasks.offsite.copy import copy_backup
    from tasks.offsite.remote import staging_dir

    now = datetime.now(UTC).replace(microsecond=0)
    local = tmp_path / "backups"
    local.mkdir()
    backups = [make_backup(local, now - timedelta(days=20 - i)) for i in range(7)]
    policy = RetryPolicy(window_seconds=5, first_delay=0.5)
    staging = staging_dir(local)
    text = f"s3://{LOCKED}/prune"
    for i, path in enumerate(backups):
        # The two oldest copies were made while OFFSITE_OBJECT_LOCK_DAYS was set.
        dest = destination(s3, text, 30 if i < 2 else None)
        copy_backup(dest, path, policy=policy, staging=staging)
    dest = destination(s3, text, None)
    planned = prune_remote(dest, retention_days=2, now=now, dry_run=True)
    assert sorted(planned.locked) == [b.name for b in backups[:2]]
    assert sorted(planned.removed) == [b.name for b in backups[2:4]]
    pruned = prune_remote(dest, retention_days=2, now=now)
    assert sorted(pruned.locked) == [b.name for b in backups[:2]]
    assert all(until > now + timedelta(days=29) for until in pruned.locked.values())
    assert "locked until" in pruned.reasons[backups[0].name]
    # From outside: the locked copies (and their sidecars) are all there, the others gone.
    names = keys_under(boto(s3), LOCKED, "prune")
    for path in backups[:2] + backups[4:]:
        assert {path.name, f"{path.name}.sha256", f"{path.name}.meta.json"} <= set(names)
    for path in backups[2:4]:
        assert not any(n.startswith(path.name) for n in names), names


class _NoDelete:
    """An fsspec filesystem proxy for a credential without s3:DeleteObject."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("rm", "rm_file", "_rm", "_rm_file", "mv", "delete"):

            def refuse(path: Any, *args: Any, **kwargs: Any) -> None:
                self.refused.append(str(path))
                raise PermissionError(f"AccessDenied: DeleteObject on {path}")

            return refuse
        return getattr(self._fs, name)


def test_uploads_need_no_delete_permission(s3: sv.S3Service, tmp_path: Path) -> None:
    """The write-only credential of the docs' IAM policy: copies work, prune says why not."""
    from tasks.core.backoff import RetryPolicy
    from tasks.offsite.copy import copy_backup
    from tasks.offsite.remote import staging_dir

    local = tmp_path / "backups"
    local.mkdir()
    path = make_backup(local, datetime.now(UTC) - timedelta(days=1))
    dest = destination(s3, f"s3://{LOCKED}/writeonly", 1)
    proxy = _NoDelete(dest.fs)
    dest._fs = proxy
    copy = copy_backup(
        dest,
        path,
        policy=RetryPolicy(window_seconds=3, first_delay=0.5),
        staging=staging_dir(local),
    )
    assert copy.uploaded and proxy.refused == []
    head = boto(s3).head_object(Bucket=LOCKED, Key=f"writeonly/{path.name}.sha256")
    assert head["ObjectLockMode"] == "GOVERNANCE"
