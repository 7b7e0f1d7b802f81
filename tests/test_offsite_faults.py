"""Off-site copies when things go wrong: servers that stop, stay down, or lie.

- a server stopped in the middle of an upload and started again within the retry
  window: the upload completes and verifies (S3 on moto, and an SSH server, whose
  connection has to be remade);
- a server that stays down: a clear failure at a known moment, the local backup kept,
  `chatbot_offsite_backup_status` 0;
- a remote copy altered between upload and read-back: verification fails, the copy is
  never marked finished, and the next run replaces it.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.core.backoff import RetryPolicy
from tasks.core.errors import DestinationError, VerifyError
from tasks.offsite.catalog import remote_catalog
from tasks.offsite.copy import copy_backup
from tasks.offsite.remote import staging_dir
from tasks.storage.destination import Destination, parse_destination
from tasks.stream.checksum import sha256_file, write_sidecar
from tests.conftest import Platform
from tests.support.destinations import new_prefix
from tests.support.services import HOST, SSHD_BIN, free_port

pytestmark = pytest.mark.timeout(300)

BUCKET = "faults"
BACKUP_NAME = "admin_sqlite_20261126_120000.db.gz"


def backup_file(folder: Path, megabytes: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / BACKUP_NAME
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1 << 20))
    write_sidecar(path, sha256_file(path))
    return path


def _wait(ready: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up")
        time.sleep(0.1)


def _process_tree(pid: int) -> list[int]:
    """`pid` and every descendant (sshd forks one child per connection)."""
    found = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in children:
        found += _process_tree(int(child))
    return found


class Restartable:
    """A server this test starts, stops (with its children) and starts again on one port."""

    def __init__(self, argv: list[str], ready: object) -> None:
        self.argv = argv
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait(self.ready, self.argv[0])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in reversed(_process_tree(self.proc.pid)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- S3


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


# moto forgets everything when it stops; a real S3 keeps its buckets. So the bucket is
# made inside the server process before it starts listening: no client ever sees the
# restarted server without it.
_MOTO_WITH_BUCKET = """
import sys, time
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer
s3_backends[DEFAULT_ACCOUNT_ID]["aws"].create_bucket(sys.argv[3], "eu-west-1")
ThreadedMotoServer(ip_address=sys.argv[1], port=int(sys.argv[2]), verbose=False).start()
while True:
    time.sleep(3600)
"""


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Restartable, str]]:
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    argv = [sys.executable, "-c", _MOTO_WITH_BUCKET, HOST, str(port), BUCKET]
    server = Restartable(argv, lambda: _http_ok(endpoint))
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        yield server, endpoint
    finally:
        server.stop()


def stop_then_restart(server: Restartable, down_for: float = 2.0) -> tuple[object, list[float]]:
    """A progress hook that stops the server at the first progress report (in the middle
    of the upload) and starts it again `down_for` seconds later, from another thread."""
    fired: list[float] = []

    def restart() -> None:
        time.sleep(down_for)
        server.start()

    def hook(done: int) -> None:
        if fired or done == 0:
            return
        fired.append(done)
        server.stop()  # blocks the upload's event loop meanwhile: nothing more goes out
        threading.Thread(target=restart, daemon=True).start()

    return hook, fired


@pytest.mark.parametrize("down_for", [0.2, 2.0])
def test_s3_stopped_mid_upload_and_restarted_completes(
    moto: tuple[Restartable, str], tmp_path: Path, down_for: float
) -> None:
    """Back within 0.2 s, the server is up again before s3fs aborts the multipart upload
    (which then fails with NoSuchUpload: moto lost it); back within 2 s, it is not."""
    server, _ = moto
    local = backup_file(tmp_path / "backups", 40)
    dest = parse_destination(f"s3://{BUCKET}/{new_prefix()}")
    hook, fired = stop_then_restart(server, down_for=down_for)
    notes: list[str] = []
    copy = copy_backup(
        dest,
        local,
        policy=RetryPolicy(window_seconds=60, first_delay=1),
        staging=staging_dir(tmp_path / "backups"),
        log=notes.append,
        progress=hook,  # type: ignore[arg-type]
    )
    assert fired and 0 < fired[0] < local.stat().st_size  # it really stopped midway
    assert any("upload" in n and "retrying" in n for n in notes), notes
    assert copy.uploaded and copy.sha256 == sha256_file(local)
    assert dest.sha256(local.name) == (sha256_file(local), local.stat().st_size)
    assert [b.committed for b in remote_catalog(dest)] == [True]


def test_s3_that_stays_down_fails_clearly_within_the_window(
    moto: tuple[Restartable, str], tmp_path: Path
) -> None:
    server, _ = moto
    local = backup_file(tmp_path / "backups", 1)
    dest = parse_destination(f"s3://{BUCKET}/{new_prefix()}")
    server.stop()
    started = time.monotonic()
    with pytest.raises(DestinationError) as caught:
        copy_backup(
            dest,
            local,
            policy=RetryPolicy(window_seconds=4, first_delay=0.5),
            staging=staging_dir(tmp_path / "backups"),
        )
    elapsed = time.monotonic() - started
    assert caught.value.transient
    assert "gave up after" in str(caught.value) and "attempts" in str(caught.value)
    assert elapsed < 4 + 15  # the window, plus one last attempt's own timeouts
    assert local.is_file()


def test_cli_server_down_keeps_the_local_backup_and_reports_status_0(
    sqlite_platform: Platform, tmp_path: Path
) -> None:
    dead = f"http://{HOST}:{free_port()}"
    secret = "Very-Secret-Key-0123456789"
    env = {
        "OFFSITE_DESTINATION": f"s3://{BUCKET}/x",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ENDPOINT_URL": dead,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "OFFSITE_RETRY_SECONDS": "3",
    }
    done = sqlite_platform.run("db-backup", "--offsite", extra_env=env)
    assert done.returncode == 8, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "gave up after" in lines[0] and "is kept" in lines[0]
    assert secret not in done.stdout + done.stderr
    backups = sqlite_platform.backup_files("admin_sqlite_*.db.gz")
    assert len(backups) == 1 and backups[0].name in lines[0]
    metrics = (sqlite_platform.backups / "metrics" / "chatbot_backup.prom").read_text()
    assert (
        f'chatbot_offsite_backup_status{{destination="s3://{BUCKET}/x",kind="db",scheme="s3"}} 0'
        in metrics
    )
    assert secret not in metrics


# --------------------------------------------------------------------------- SSH


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[Restartable, Path]]:
    """An sshd this test can stop and start again on the same port, and a client config."""
    base = tmp_path / "sshd"
    base.mkdir()
    for key in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / key)],
            check=True,
            capture_output=True,
        )
    (base / "authorized_keys").write_text((base / "client.pub").read_text())
    port = free_port()
    config = base / "sshd_config"
    config.write_text(
        f"ListenAddress {HOST}\nPort {port}\nHostKey {base / 'host'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPidFile {base / 'pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
        "UsePAM no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def banner() -> bool:
        import socket

        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                return s.recv(8).startswith(b"SSH-")
        except OSError:
            return False

    server = Restartable([str(SSHD_BIN), "-D", "-e", "-f", str(config)], banner)
    server.start()
    known = base / "known_hosts"
    host_key = (base / "host.pub").read_text().split()
    known.write_text(f"[{HOST}]:{port} {host_key[0]} {host_key[1]}\n")
    client = base / "client_config"
    client.write_text(
        f"Host backup-server\n    HostName {HOST}\n    Port {port}\n"
        f"    User {getpass.getuser()}\n    IdentityFile {base / 'client'}\n"
        f"    UserKnownHostsFile {known}\n"
    )
    try:
        yield server, client
    finally:
        server.stop()


def test_ssh_stopped_mid_upload_and_restarted_completes(
    sshd: tuple[Restartable, Path], tmp_path: Path
) -> None:
    server, client_config = sshd
    remote = tmp_path / "remote"
    remote.mkdir()
    local = backup_file(tmp_path / "backups", 40)
    dest = parse_destination(f"backup-server:{remote}/chatbot", ssh_config=client_config)
    hook, fired = stop_then_restart(server)
    notes: list[str] = []
    copy = copy_backup(
        dest,
        local,
        policy=RetryPolicy(window_seconds=60, first_delay=1),
        staging=staging_dir(tmp_path / "backups"),
        log=notes.append,
        progress=hook,  # type: ignore[arg-type]
    )
    assert fired and 0 < fired[0] < local.stat().st_size
    assert any("retrying" in n for n in notes), notes
    assert copy.uploaded
    assert (remote / "chatbot" / local.name).read_bytes() == local.read_bytes()
    assert (remote / "chatbot" / f"{local.name}.sha256").is_file()


# --------------------------------------------------------------------------- altered


def test_copy_altered_after_upload_fails_verification_and_is_replaced_later(
    tmp_path: Path,
) -> None:
    local = backup_file(tmp_path / "backups", 2)
    dest = parse_destination(str(tmp_path / "nas" / "chatbot"))
    (tmp_path / "nas").mkdir()
    original_put = dest.put

    def put_then_tamper(source: Path, name: str, progress: object = None) -> None:
        original_put(source, name)
        target = tmp_path / "nas" / "chatbot" / name
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit, same size
        target.write_bytes(bytes(data))

    dest.put = put_then_tamper  # type: ignore[method-assign]
    staging = staging_dir(tmp_path / "backups")
    policy = RetryPolicy(window_seconds=5, first_delay=0.5)
    with pytest.raises(VerifyError, match="does not match what was sent"):
        copy_backup(dest, local, policy=policy, staging=staging)
    # Never marked finished: no sidecar, so it is not counted as an off-site backup.
    assert not (tmp_path / "nas" / "chatbot" / f"{local.name}.sha256").exists()
    assert [b.committed for b in remote_catalog(dest)] == [False]
    # The next run (an honest network) replaces it and verifies.
    healed = parse_destination(str(tmp_path / "nas" / "chatbot"))
    copy = copy_backup(healed, local, policy=policy, staging=staging)
    assert copy.uploaded
    assert healed.sha256(local.name)[0] == sha256_file(local)
    assert [b.committed for b in remote_catalog(healed)] == [True]


def test_destination_is_the_one_interface(tmp_path: Path) -> None:
    """The local backup folder stands on the same class as every off-site target."""
    from tests.support.readers import local_destination

    folder = tmp_path / "backups"
    local = backup_file(folder, 1)
    here = local_destination(folder)
    assert isinstance(here, Destination) and here.scheme == "file"
    assert here.sha256(local.name) == (sha256_file(local), local.stat().st_size)
    assert {e.name for e in here.list()} >= {local.name, f"{local.name}.sha256"}


def test_backup_without_sidecar_is_not_uploaded_twice(tmp_path: Path) -> None:
    """A backup copied in by hand (no sidecar, no meta): hashed, uploaded once, then found."""
    local = backup_file(tmp_path / "backups", 1)
    (local.parent / f"{local.name}.sha256").unlink()
    (tmp_path / "nas").mkdir()
    dest = parse_destination(str(tmp_path / "nas" / "chatbot"))
    policy = RetryPolicy(window_seconds=5, first_delay=0.5)
    staging = staging_dir(tmp_path / "backups")
    first = copy_backup(dest, local, policy=policy, staging=staging)
    second = copy_backup(dest, local, policy=policy, staging=staging)
    assert first.uploaded and not second.uploaded
    assert second.sha256 == first.sha256 == sha256_file(local)
    # The remote sidecar is there even though the local one never was.
    sidecar = (tmp_path / "nas" / "chatbot" / f"{local.name}.sha256").read_text()
    assert sidecar == f"{sha256_file(local)}  {local.name}\n"


def test_locally_damaged_backup_is_not_shipped(tmp_path: Path) -> None:
    local = backup_file(tmp_path / "backups", 1)
    data = bytearray(local.read_bytes())
    data[1000] ^= 0xFF
    local.write_bytes(bytes(data))  # the sidecar still has the old sha256
    (tmp_path / "nas").mkdir()
    dest = parse_destination(str(tmp_path / "nas" / "chatbot"))
    with pytest.raises(VerifyError, match="does not match its sha256 sidecar"):
        copy_backup(
            dest,
            local,
            policy=RetryPolicy(window_seconds=5),
            staging=staging_dir(tmp_path / "backups"),
        )
    assert dest.list() == []
