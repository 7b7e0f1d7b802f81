"""Each real test server answers the client library the product uses against it."""

from __future__ import annotations

import json
import os
import shlex
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support import services
from tests.support.services import (
    azurite,
    gcs_emulator,
    http_receiver,
    moto_s3,
    prefect_server,
    smtp_server,
    sshd_server,
    write_ssh_config,
)

PAYLOAD = bytes(range(256)) * 1024  # 256 KiB, every byte value


@pytest.mark.timeout(120)
def test_moto_s3_with_s3fs_and_boto3() -> None:
    import boto3
    import s3fs

    with moto_s3() as s3:
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3.storage_options())
        fs.mkdir("selftest-bucket")
        fs.pipe_file("selftest-bucket/dir/blob.bin", PAYLOAD)
        assert fs.cat_file("selftest-bucket/dir/blob.bin") == PAYLOAD
        assert fs.cat_file("selftest-bucket/dir/blob.bin", start=10, end=20) == PAYLOAD[10:20]
        assert fs.ls("selftest-bucket/dir") == ["selftest-bucket/dir/blob.bin"]

        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.key,
            aws_secret_access_key=s3.secret,
            region_name=s3.region,
        )
        body = client.get_object(Bucket="selftest-bucket", Key="dir/blob.bin")["Body"].read()
        assert body == PAYLOAD


@pytest.mark.timeout(120)
def test_gcs_emulator_with_gcsfs(monkeypatch: pytest.MonkeyPatch) -> None:
    import gcsfs  # after tests.support.services set GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false

    with gcs_emulator() as gcs:
        for name, value in gcs.env().items():
            monkeypatch.setenv(name, value)
        fs = gcsfs.GCSFileSystem(token="anon", project=gcs.project, skip_instance_cache=True)
        started = time.monotonic()
        fs.mkdir("selftest-bucket")
        fs.invalidate_cache()
        fs.pipe_file("selftest-bucket/dir/blob.bin", PAYLOAD)
        assert fs.cat_file("selftest-bucket/dir/blob.bin") == PAYLOAD
        assert fs.ls("selftest-bucket/dir") == ["selftest-bucket/dir/blob.bin"]
        assert time.monotonic() - started < 20, "gcsfs hung: ZB/HNS probe enabled?"


@pytest.mark.timeout(120)
def test_azurite_with_adlfs() -> None:
    import adlfs

    with azurite() as az:
        fs = adlfs.AzureBlobFileSystem(skip_instance_cache=True, **az.storage_options())
        fs.mkdir("selftest-container")
        fs.pipe_file("selftest-container/dir/blob.bin", PAYLOAD)
        assert fs.cat_file("selftest-container/dir/blob.bin") == PAYLOAD
        assert fs.ls("selftest-container/dir", detail=False) == ["selftest-container/dir/blob.bin"]


@pytest.mark.timeout(120)
def test_sshd_with_sftp_ssh_and_rsync(tmp_path: Path) -> None:
    import fsspec

    with sshd_server(tmp_path) as ssh:
        fs = fsspec.filesystem("sftp", skip_instance_cache=True, **ssh.sftp_storage_options())
        remote = tmp_path / "remote"
        fs.makedirs(str(remote), exist_ok=True)
        fs.pipe_file(str(remote / "blob.bin"), PAYLOAD)
        assert fs.cat_file(str(remote / "blob.bin")) == PAYLOAD
        assert (remote / "blob.bin").read_bytes() == PAYLOAD

        config = write_ssh_config(ssh, tmp_path / "ssh_config", alias="offsite")
        out = subprocess.run(
            ["ssh", "-F", str(config), "offsite", "echo", "hello"],
            check=True,
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert out.stdout == b"hello\n"

        local = tmp_path / "local.bin"
        local.write_bytes(PAYLOAD[::-1])
        subprocess.run(
            [
                "rsync",
                "-e",
                f"ssh -F {shlex.quote(str(config))}",
                str(local),
                "offsite:" + str(remote) + "/",
            ],
            check=True,
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert (remote / "local.bin").read_bytes() == PAYLOAD[::-1]


@pytest.mark.timeout(60)
def test_smtp_server_with_smtplib() -> None:
    with smtp_server() as smtp:
        msg = EmailMessage()
        msg["From"] = "backup@example.test"
        msg["To"] = "ops@example.test"
        msg["Subject"] = "Backup failed"
        msg.set_content("postgres dump failed")
        with smtplib.SMTP(smtp.host, smtp.port, timeout=10) as client:
            client.login("alerts", "s3cret")
            client.send_message(msg)
        (mail,) = smtp.wait_for(1)
        assert mail.mail_from == "backup@example.test"
        assert mail.rcpt_tos == ["ops@example.test"]
        assert mail.message["Subject"] == "Backup failed"
        assert "postgres dump failed" in mail.message.get_content()
        assert smtp.logins == [("alerts", "s3cret")]


@pytest.mark.timeout(60)
def test_http_receiver_with_urllib() -> None:
    with http_receiver() as hook:
        body = json.dumps({"text": "backup ok"}).encode()
        req = urllib.request.Request(
            hook.url + "/services/T000/B000/XXX",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
            assert resp.read() == b"ok"
        (path, headers, received) = hook.wait_for(1)[0]
        assert path == "/services/T000/B000/XXX"
        assert headers["Content-Type"] == "application/json"
        assert json.loads(received) == {"text": "backup ok"}

        hook.status = 500
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(
                urllib.request.Request(hook.url + "/x", data=b"{}", method="POST"), timeout=10
            )
        assert err.value.code == 500
        assert len(hook.requests) == 2


@pytest.mark.timeout(180)
def test_prefect_server_health_with_httpx() -> None:
    import httpx

    with prefect_server() as prefect:
        resp = httpx.get(prefect.api_url + "/health", timeout=10)
        assert resp.status_code == 200
        assert resp.json() is True
        assert (prefect.home / "prefect.db").exists() or any(prefect.home.iterdir())


def test_missing_binary_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(services, "VENV_BIN", tmp_path)
    with pytest.raises(services.ServiceError, match="moto_server.*not found"):
        with moto_s3():
            pass


def test_server_that_never_gets_ready_times_out_and_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    argv = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    started = time.monotonic()
    with pytest.raises(services.ServiceError, match="not ready within"):
        with services._process("sleeper", argv, lambda: False, timeout=1.0):
            pass
    assert time.monotonic() - started < 15
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)
