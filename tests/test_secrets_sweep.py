"""Secrets sweep: run every job with every secret set, then look for them everywhere.

A PostgreSQL that demands a password full of special characters, cloud keys for an S3
emulator, an SMTP login and webhook URLs that carry tokens. Every job runs through the
real CLI (two of them fail on purpose, so failure paths, hooks and Prefect's pickled
exceptions are covered too). Then every place a secret could leak is read: captured
output, every process's arguments while pg_dump/psql run, the Prefect API (flow-run
parameters and state messages, task-run state messages, logs, artifacts), PREFECT_HOME
on disk, sidecars, .meta.json, metrics, the manifests in the archive, the off-site
copies' metadata and the alert bodies. Each secret is searched raw and URL-quoted.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.conftest import _PRODUCT_VARIABLES, BIN, Platform
from tests.support.services import (
    HttpReceiver,
    PasswordPostgres,
    S3Service,
    SmtpService,
    http_receiver,
    moto_s3,
    smtp_server,
)
from tests.test_restore_all import populate

# Many real CLI runs: long on a loaded host, so a wider timeout than the default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

AWS_KEY_ID = "AKIASWEEPKEYID7Q2W"
AWS_SECRET = "aws/Secret+Key=sweep/9x8y7z"
SMTP_PASSWORD = "smtp:P@ss/w%rd'\"K4"
WEBHOOK_TOKEN = "whk-tok3n-5f2e9d"
SLACK_TOKEN = "slk-tok3n-8c1b7a"
WRONG_PG_PASSWORD_SUFFIX = "-WRONG"
BUCKET = "sweep-bucket"


def forms(secret: str) -> set[str]:
    """The secret as it could appear: raw, URL-quoted both ways, JSON-escaped."""
    found = {secret, quote(secret, safe=""), quote(secret), json.dumps(secret)[1:-1]}
    return {f for f in found if len(f) >= 6}


# -- services and the installation ---------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Service]:
    import boto3

    with moto_s3() as service:
        client = boto3.client(
            "s3",
            endpoint_url=service.endpoint_url,
            aws_access_key_id=AWS_KEY_ID,
            aws_secret_access_key=AWS_SECRET,
            region_name=service.region,
        )
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": service.region}
        )
        yield service


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpService]:
    with smtp_server() as service:
        yield service


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as service:
        yield service


@pytest.fixture
def sweep_db(password_pg: PasswordPostgres) -> Iterator[str]:
    name = "sweep_admin"
    with psycopg.connect(**password_pg.admin_params(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(**password_pg.admin_params(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE agents (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO agents(name) SELECT 'a' || g FROM generate_series(1, 50) g")
    yield name
    with psycopg.connect(**password_pg.admin_params(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _shim(folder: Path, record: Path, tool: str) -> None:
    """`tool` on PATH that records every process's arguments, then runs the real one."""
    real = shutil.which(tool)
    assert real, tool
    (folder / tool).write_text(
        "#!/bin/sh\n"
        f'{{ echo "== {tool}"; for f in /proc/[0-9]*/cmdline; do '
        f'tr "\\0" " " < "$f" 2>/dev/null; echo; done; }} >> "{record}"\n'
        f'exec "{real}" "$@"\n'
    )
    (folder / tool).chmod(0o755)


@pytest.fixture
def sweep(
    platform: Platform,
    tmp_path: Path,
    password_pg: PasswordPostgres,
    sweep_db: str,
    s3: S3Service,
    smtp: SmtpService,
    receiver: HttpReceiver,
) -> dict[str, object]:
    """Every job run once with every secret set; what they printed, and where to look."""
    populate(platform.root)
    shims, record = tmp_path / "shims", tmp_path / "cmdlines"
    shims.mkdir()
    for tool in ("pg_dump", "psql"):
        _shim(shims, record, tool)
    prefect_home = tmp_path / "prefect-home"
    prefect_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _PRODUCT_VARIABLES}
    env.update(platform.env)
    env.update(
        PATH=f"{shims}:{os.environ['PATH']}",
        PREFECT_HOME=str(prefect_home),
        ADMIN_DB_TYPE="postgres",
        ADMIN_DATABASE_URL=password_pg.url(sweep_db),
        OFFSITE_DESTINATION=f"s3://{BUCKET}/chatbot",
        AWS_ACCESS_KEY_ID=AWS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        AWS_ENDPOINT_URL=s3.endpoint_url,
        AWS_DEFAULT_REGION=s3.region,
        ALERT_EMAIL="ops@example.com",
        ALERT_FROM="backup@example.com",
        SMTP_HOST=smtp.host,
        SMTP_PORT=str(smtp.port),
        SMTP_USER="backup-robot",
        SMTP_PASSWORD=SMTP_PASSWORD,
        ALERT_WEBHOOK=f"{receiver.url}/hook/{WEBHOOK_TOKEN}?token={WEBHOOK_TOKEN}",
        ALERT_SLACK_WEBHOOK=f"{receiver.url}/services/T0/B0/{SLACK_TOKEN}",
        MONITOR_CHECK_DEPLOYMENTS="false",
        OFFSITE_RETRY_SECONDS="3",
    )

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "chatbot-backup"), *args],
            cwd=platform.root,
            env={**env, **extra},
            input="",
            capture_output=True,
            text=True,
            timeout=300,
        )

    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    runs["db-backup"] = run("db-backup", "--offsite")
    assert runs["db-backup"].returncode == 0, runs["db-backup"].stderr
    runs["backup-all"] = run("backup-all", "--offsite")
    assert runs["backup-all"].returncode == 0, runs["backup-all"].stderr
    [db_file] = platform.backup_files("admin_postgres_2*.sql.gz")
    [full_file] = platform.backup_files("full_backup_*.tar.gz")
    runs["test-restore"] = run("test-restore")
    assert runs["test-restore"].returncode == 0, runs["test-restore"].stdout
    runs["db-restore"] = run("db-restore", "--yes", str(db_file))
    assert runs["db-restore"].returncode == 0, runs["db-restore"].stderr
    runs["restore-all"] = run("restore-all", "--yes", str(full_file))
    assert runs["restore-all"].returncode == 0, runs["restore-all"].stderr
    runs["offsite-sync"] = run("offsite-sync", "--verify")
    assert runs["offsite-sync"].returncode == 0, runs["offsite-sync"].stderr
    runs["monitor"] = run("monitor")  # one db and one full backup: below the minimum of 3
    assert runs["monitor"].returncode == 1, runs["monitor"].stdout
    # Failing on purpose: an off-site store that does not answer, and a wrong password.
    runs["offsite unreachable"] = run(
        "db-backup", "--offsite", AWS_ENDPOINT_URL="http://127.0.0.1:9"
    )
    assert runs["offsite unreachable"].returncode == 8, runs["offsite unreachable"].stderr
    wrong = password_pg.url(sweep_db, password_pg.password + WRONG_PG_PASSWORD_SUFFIX)
    runs["wrong password"] = run("db-backup", ADMIN_DATABASE_URL=wrong)
    assert runs["wrong password"].returncode == 4, runs["wrong password"].stderr
    smtp.wait_for(1)
    receiver.wait_for(2)
    return {"runs": runs, "record": record, "prefect_home": prefect_home, "s3": s3}


# -- where secrets could leak ----------------------------------------------------------


def _prefect_api_text() -> dict[str, str]:
    from prefect.client.orchestration import get_client

    async def collect() -> dict[str, str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=200)
            tasks = await client.read_task_runs(limit=200)
            logs, offset = [], 0
            while batch := await client.read_logs(limit=200, offset=offset):
                logs.extend(batch)
                offset += len(batch)
            artifacts = await client.read_artifacts(limit=200)
        return {
            "flow-run parameters": repr([r.parameters for r in runs]),
            "flow-run states": repr([(r.name, r.state and r.state.message) for r in runs]),
            "task-run states": repr([(t.name, t.state and t.state.message) for t in tasks]),
            "logs": "\n".join(log.message for log in logs),
            "artifacts": repr([(a.key, a.data, a.description) for a in artifacts]),
        }

    return asyncio.run(collect())


def _files_text(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` as bytes; compressed backups are read inside below.

    Prefect stores a failed run's pickled exception base64-encoded, so text that decodes
    as base64 is searched decoded as well.
    """
    found: dict[str, bytes] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.endswith((".gz", ".zst")):
            data = path.read_bytes()
            found[str(path)] = data
            try:
                found[f"{path} (base64-decoded)"] = base64.b64decode(data, validate=False)
            except ValueError:
                pass
    return found


def _manifests(archive: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith(("MANIFEST.json", "MANIFEST.txt")):
                handle = tar.extractfile(member)
                assert handle is not None
                found[f"{archive.name}:{member.name}"] = handle.read()
    return found


def _offsite_metadata(s3: S3Service) -> dict[str, bytes]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=AWS_SECRET,
        region_name=s3.region,
    )
    found: dict[str, bytes] = {}
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        key = item["Key"]
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if key.endswith((".sha256", ".json")):
            found[f"s3:{key}"] = body
        elif key.endswith(".tar.gz"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar.getmembers():
                    if member.name.endswith("MANIFEST.json"):
                        handle = tar.extractfile(member)
                        assert handle is not None
                        found[f"s3:{key}:{member.name}"] = handle.read()
    return found


def test_no_secret_anywhere(
    sweep: dict[str, object],
    platform: Platform,
    password_pg: PasswordPostgres,
    smtp: SmtpService,
    receiver: HttpReceiver,
    prefect_api_url: str,
) -> None:
    runs = sweep["runs"]
    assert isinstance(runs, dict)
    record = sweep["record"]
    prefect_home = sweep["prefect_home"]
    assert isinstance(record, Path) and isinstance(prefect_home, Path)

    cmdlines = record.read_text(errors="replace")
    assert "== pg_dump" in cmdlines and "== psql" in cmdlines
    haystacks: dict[str, bytes] = {"process arguments": cmdlines.encode()}
    for job, done in runs.items():
        haystacks[f"{job} stdout"] = done.stdout.encode()
        haystacks[f"{job} stderr"] = done.stderr.encode()
    api = _prefect_api_text()
    # The search reads real records: the failures' messages, and some logs.
    assert "password authentication failed" in api["flow-run states"], api["flow-run states"]
    assert api["logs"].strip() and "admin_postgres_" in api["artifacts"]
    haystacks.update({k: v.encode() for k, v in api.items()})
    stored = _files_text(prefect_home)
    assert any(
        b"password authentication failed" in data
        for name, data in stored.items()
        if "storage" in name and name.endswith("(base64-decoded)")
    ), "no pickled failure found in PREFECT_HOME/storage"
    haystacks.update(stored)
    haystacks.update(_files_text(platform.backups))
    for archive in platform.backup_files("full_backup_*.tar.gz"):
        haystacks.update(_manifests(archive))
    haystacks.update(_offsite_metadata(sweep["s3"]))  # type: ignore[arg-type]
    for index, mail in enumerate(smtp.messages):
        haystacks[f"mail {index}"] = mail.data
    for index, post in enumerate(receiver.requests):
        haystacks[f"POST {index} body"] = post.body
    assert smtp.logins and smtp.logins[0][1] == SMTP_PASSWORD  # the login did use it
    assert smtp.messages and len(receiver.requests) >= 2
    assert any(WEBHOOK_TOKEN in post.path for post in receiver.requests)  # the URL was used

    secrets = {
        "database password": password_pg.password,
        "wrong database password": password_pg.password + WRONG_PG_PASSWORD_SUFFIX,
        "password prefix": "p@ss:w/rd",
        "AWS secret key": AWS_SECRET,
        "SMTP password": SMTP_PASSWORD,
        "webhook token": WEBHOOK_TOKEN,
        "Slack token": SLACK_TOKEN,
    }
    leaks = [
        f"{what} in {where}"
        for where, text in haystacks.items()
        for what, secret in secrets.items()
        if any(form.encode() in text for form in forms(secret))
    ]
    assert not leaks, "\n".join(leaks)
    _backups_and_snapshots_are_private(platform)


def _backups_and_snapshots_are_private(platform: Platform) -> None:
    files = [
        p
        for p in platform.backups.iterdir()
        if p.is_file() and p.name.startswith(("admin_", "full_backup_"))
    ]
    snapshots = [p for p in files if "before_restore" in p.name]
    assert snapshots, "the restores made no pre-restore snapshot"
    assert len(files) >= 6
    loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert all(mode == "0o600" for mode in loose.values()), loose
