"""Several destinations, the bandwidth cap, scheduled verification and sealed metadata.

Real servers: moto (S3, one of them stopped mid-upload), a local folder standing for a
mounted NAS; the remote bytes are read and altered with plain clients.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, Platform, make_sqlite_db
from tests.support import services as sv

pytestmark = pytest.mark.timeout(400)

BUCKET = "several"


@pytest.fixture(scope="module")
def s3() -> Iterator[sv.S3Service]:
    with sv.moto_s3() as service:
        boto(service).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": service.region}
        )
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


def aws_env(service: sv.S3Service) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": service.key,
        "AWS_SECRET_ACCESS_KEY": service.secret,
        "AWS_ENDPOINT_URL": service.endpoint_url,
        "AWS_DEFAULT_REGION": service.region,
    }


def only_backup(platform: Platform) -> Path:
    files = platform.backup_files("admin_sqlite_*.db.gz")
    assert len(files) == 1, files
    return files[0]


def metrics(platform: Platform) -> str:
    path = platform.backups / "metrics" / "chatbot_backup.prom"
    return path.read_text() if path.exists() else ""


# --------------------------------------------------------------------------- two destinations


@pytest.mark.slow
def test_one_destination_stopped_mid_upload_does_not_stop_the_other(
    platform: Platform, tmp_path: Path
) -> None:
    make_sqlite_db(platform.db_path, agents=200, messages=3000)
    nas = tmp_path / "nas"
    nas.mkdir()
    with sv.moto_s3() as doomed:
        boto(doomed).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": doomed.region}
        )
        env = {
            **os.environ,
            **platform.env,
            **aws_env(doomed),
            # The S3 destination first: it dies while its upload is under way.
            "OFFSITE_DESTINATION": f"s3://{BUCKET}/first,{nas}",
            "OFFSITE_BANDWIDTH_LIMIT": "16K",  # slow enough to stop the server mid-upload
            "OFFSITE_RETRY_SECONDS": "3",
        }
        run = subprocess.Popen(
            [str(BIN / "chatbot-backup"), "db-backup", "--offsite"],
            cwd=platform.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not platform.backup_files("admin_sqlite_*.db.gz") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # the upload to S3 has begun (throttled)
    # moto is gone now; the run goes on to the NAS.
    out, err = run.communicate(timeout=300)
    assert run.returncode == 8, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"s3://{BUCKET}/first" in lines[0], err
    assert "1 of 2 destination(s)" in lines[0] and "is kept" in lines[0]
    local = only_backup(platform)
    # The NAS copy is complete and committed, byte for byte.
    assert (nas / local.name).read_bytes() == local.read_bytes()
    assert (nas / f"{local.name}.sha256").read_text().split()[0] == (
        local.with_name(local.name + ".sha256").read_text().split()[0]
    )
    text = metrics(platform)
    assert f'chatbot_offsite_backup_status{{destination="{nas}",kind="db",scheme="file"}} 1' in text
    assert (
        f'chatbot_offsite_backup_status{{destination="s3://{BUCKET}/first",kind="db",scheme="s3"}} 0'
        in text
    )


def test_two_destinations_each_get_a_verified_copy(
    sqlite_platform: Platform, s3: sv.S3Service, tmp_path: Path
) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    env = {**aws_env(s3), "OFFSITE_DESTINATION": f"s3://{BUCKET}/both, {nas}"}
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    local = only_backup(sqlite_platform)
    body = boto(s3).get_object(Bucket=BUCKET, Key=f"both/{local.name}")["Body"].read()
    assert body == local.read_bytes() == (nas / local.name).read_bytes()
    text = metrics(sqlite_platform)
    for dest, scheme in ((f"s3://{BUCKET}/both", "s3"), (str(nas), "file")):
        line = (
            f'chatbot_offsite_backup_status{{destination="{dest}",kind="db",scheme="{scheme}"}} 1'
        )
        assert line in text
    assert s3.secret not in text + done.stdout + done.stderr


# --------------------------------------------------------------------------- bandwidth


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_bandwidth_cap_is_kept_within_20_percent(
    s3: sv.S3Service, tmp_path: Path, backend: str
) -> None:
    """End to end on a local folder. On S3 the rate at which bytes leave the stream is
    within 20% of the cap, and the whole upload (whose last part is sent when the stream
    closes, untimed by the cap) is never faster than the cap allows."""
    from tasks.storage.destination import parse_destination
    from tasks.storage.throttle import parse_bandwidth

    assert parse_bandwidth("512K") == 512 * 1024 and parse_bandwidth("1M") == 2**20
    rate = parse_bandwidth("1M" if backend == "s3" else "512K")
    assert rate is not None
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(int(rate * 5.5)))  # 5.5 s at the cap
    text = f"s3://{BUCKET}/bw" if backend == "s3" else str(tmp_path / "nas")
    if backend == "local":
        (tmp_path / "nas").mkdir()
    dest = parse_destination(text, env={**os.environ, **aws_env(s3)})
    dest.bandwidth = rate
    size = source.stat().st_size
    handed: list[float] = []
    started = time.monotonic()
    dest.put(
        source, "big.bin", lambda done: handed.append(time.monotonic()) if done >= size else None
    )
    elapsed = time.monotonic() - started
    expected = size / rate
    streamed = handed[0] - started
    assert expected * 0.8 <= streamed <= expected * 1.2, (streamed, expected)
    if backend == "local":
        assert elapsed <= expected * 1.2, (elapsed, expected)
    assert elapsed >= expected * 0.8, (elapsed, expected)
    assert dest.sha256("big.bin")[1] == size


def test_a_bad_bandwidth_limit_is_a_config_error(sqlite_platform: Platform, tmp_path: Path) -> None:
    env = {"OFFSITE_DESTINATION": str(tmp_path), "OFFSITE_BANDWIDTH_LIMIT": "fast"}
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 3 and "OFFSITE_BANDWIDTH_LIMIT" in done.stderr, done.stderr
    assert sqlite_platform.backup_files() == []


# --------------------------------------------------------------------------- offsite-verify


def test_offsite_verify_finds_a_flipped_byte_and_the_monitor_reports_it(
    sqlite_platform: Platform, s3: sv.S3Service, tmp_path: Path
) -> None:
    client = boto(s3)
    nas = tmp_path / "nas"
    nas.mkdir()
    env = {
        **aws_env(s3),
        "OFFSITE_DESTINATION": f"s3://{BUCKET}/verify,{nas}",
        "MONITOR_CHECK_DEPLOYMENTS": "false",
    }
    for _ in range(2):
        done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
        assert done.returncode == 0, done.stderr
        time.sleep(1.1)  # names carry the second
    first, second = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    clean = sqlite_platform.run("offsite-verify", extra_env=env)
    assert clean.returncode == 0, clean.stderr
    assert "2 of 2 read back and matched" in clean.stdout
    # --sample 1, twice: the copy verified longest ago goes first, so both get a turn.
    record = json.loads((nas / ".offsite-verify.json").read_text())
    stamps = {n: e["verified_at"] for n, e in record["copies"].items()}
    assert set(stamps) == {first.name, second.name}
    # Flip one byte of the newer copy at S3, through boto3.
    key = f"verify/{second.name}"
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    found = sqlite_platform.run("offsite-verify", extra_env=env)
    assert found.returncode == 6, found.stdout + found.stderr
    lines = found.stderr.strip().splitlines()
    assert len(lines) == 1 and second.name in lines[0] and "does not match" in lines[0]
    state = json.loads(
        client.get_object(Bucket=BUCKET, Key="verify/.offsite-verify.json")["Body"].read()
    )
    assert state["last_run"]["ok"] is False and state["last_run"]["failed"] == [second.name]
    assert state["copies"][second.name]["status"] == "mismatch"
    assert state["copies"][first.name]["status"] == "ok"
    # The NAS is untouched and its own record says so.
    assert json.loads((nas / ".offsite-verify.json").read_text())["last_run"]["ok"] is True
    # The monitor reports the failed verification as critical, naming the destination.
    monitor = sqlite_platform.run("monitor", extra_env=env)
    assert monitor.returncode == 2, monitor.stdout + monitor.stderr
    assert f"s3://{BUCKET}/verify: the last off-site verification" in monitor.stdout
    assert second.name in monitor.stdout


def test_failed_offsite_verify_sets_that_destinations_status_to_0(
    sqlite_platform: Platform, s3: sv.S3Service, tmp_path: Path
) -> None:
    client = boto(s3)
    nas = tmp_path / "nas"
    nas.mkdir()
    env = {
        **aws_env(s3),
        "OFFSITE_DESTINATION": f"s3://{BUCKET}/status,{nas}",
        "MONITOR_CHECK_DEPLOYMENTS": "false",
    }
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    at_s3 = (
        f'chatbot_offsite_backup_status{{destination="s3://{BUCKET}/status",kind="db",scheme="s3"}}'
    )
    at_nas = f'chatbot_offsite_backup_status{{destination="{nas}",kind="db",scheme="file"}}'
    assert f"{at_s3} 1" in metrics(sqlite_platform) and f"{at_nas} 1" in metrics(sqlite_platform)
    key = f"status/{only_backup(sqlite_platform).name}"
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    found = sqlite_platform.run("offsite-verify", extra_env=env)
    assert found.returncode == 6, found.stdout + found.stderr
    text = metrics(sqlite_platform)
    assert f"{at_s3} 0" in text, text  # ChatbotOffsiteBackupFailing fires for it
    assert f"{at_nas} 1" in text, text  # the NAS copy matched
    # Put right, a passing verification sets it back to 1.
    client.put_object(Bucket=BUCKET, Key=key, Body=only_backup(sqlite_platform).read_bytes())
    again = sqlite_platform.run("offsite-verify", extra_env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{at_s3} 1" in metrics(sqlite_platform)


def test_offsite_verify_sample_takes_the_oldest_verified_first(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    env = {"OFFSITE_DESTINATION": str(nas)}
    for _ in range(3):
        assert sqlite_platform.run("db-backup", "--offsite", extra_env=env).returncode == 0
        time.sleep(1.1)
    names = [p.name for p in sqlite_platform.backup_files("admin_sqlite_*.db.gz")]
    for turn in range(1, 4):
        done = sqlite_platform.run("offsite-verify", "--sample", "1", extra_env=env)
        assert done.returncode == 0, done.stderr
        assert "1 of 1 read back and matched (3 copies there)" in done.stdout
        record = json.loads((nas / ".offsite-verify.json").read_text())
        # Never-verified copies go first: each run of one adds a new copy to the record.
        assert len(record["copies"]) == turn and set(record["copies"]) <= set(names)
        time.sleep(1.1)
    # A fourth run reads the one verified longest ago: the oldest stamp is replaced.
    oldest = min(record["copies"], key=lambda n: record["copies"][n]["verified_at"])
    assert sqlite_platform.run("offsite-verify", "--sample", "1", extra_env=env).returncode == 0
    after = json.loads((nas / ".offsite-verify.json").read_text())["copies"]
    assert after[oldest]["verified_at"] > record["copies"][oldest]["verified_at"]
    bad = sqlite_platform.run("offsite-verify", "--sample", "0", extra_env=env)
    assert bad.returncode != 0 and "--sample" in bad.stderr


# --------------------------------------------------------------------------- sealed meta


def test_encrypted_copies_carry_their_metadata_encrypted(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    identity = tmp_path / "key.age"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    public = subprocess.run(
        ["age-keygen", "-y", str(identity)], check=True, capture_output=True, text=True
    ).stdout.strip()
    nas = tmp_path / "nas"
    nas.mkdir()
    env = {"OFFSITE_DESTINATION": str(nas), "BACKUP_ENCRYPTION_RECIPIENTS": public}
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 0, done.stderr
    local = only_backup(sqlite_platform)
    remote = f"{local.name}.age"
    assert sorted(p.name for p in nas.iterdir()) == sorted(
        [remote, f"{remote}.meta.json", f"{remote}.meta.json.age", f"{remote}.sha256"]
    )
    plain = (nas / f"{remote}.meta.json").read_text()
    local_meta = json.loads(local.with_name(local.name + ".meta.json").read_text())
    assert local_meta["tables"]  # the local one names tables and row counts ...
    for table in local_meta["tables"]:
        assert table not in plain  # ... the readable remote one does not
    assert json.loads(plain)["tier"] == local_meta["tier"]
    sealed = nas / f"{remote}.meta.json.age"
    assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n")
    opened = subprocess.run(
        ["age", "-d", "-i", str(identity), str(sealed)], check=True, capture_output=True
    ).stdout
    assert json.loads(opened)["tables"] == local_meta["tables"]
    # And verification still reads the encrypted copy back against its sidecar.
    verified = sqlite_platform.run("offsite-verify", extra_env=env)
    assert verified.returncode == 0, verified.stderr


def test_offsite_verify_weekly_is_scheduled_only_with_a_destination() -> None:
    from deployments.tiers import TIER_TABLE, tier_table
    from tasks.core.tiers import SCHEDULED_DEPLOYMENTS, offsite_max_age_hours, scheduled_deployments

    with_dest = {t.full_name: t for t in tier_table(False, offsite=True)}
    row = with_dest["offsite-verify/weekly"]
    assert (row.cron, row.entrypoint) == ("0 6 * * 0", "flows.offsite_verify_flow.offsite_verify")
    assert "offsite-verify/weekly" not in {t.full_name for t in tier_table(False, offsite=False)}
    assert "offsite-verify/weekly" in {t.full_name for t in TIER_TABLE}  # the committed yaml
    assert "offsite-verify/weekly" in SCHEDULED_DEPLOYMENTS
    assert "offsite-verify/weekly" not in scheduled_deployments(False, offsite=False)
    assert offsite_max_age_hours("weekly") == 8 * 24 and offsite_max_age_hours("daily") is None
