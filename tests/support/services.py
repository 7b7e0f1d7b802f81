"""Real servers on 127.0.0.1 for the tests, as plain context managers.

Each one starts a real server on a free port, waits until it answers, yields a small
dataclass with what a client needs, and on exit stops only what it started (by PID).
A missing binary or a server that does not come up in time raises ServiceError with
the tail of the server's log, never a hang.

Usable from pytest session fixtures::

    @pytest.fixture(scope="session")
    def s3():
        with moto_s3() as service:
            yield service
"""

from __future__ import annotations

import email
import email.policy
import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

# gcsfs reads this once, at import time; "true" (its default) makes every bucket call
# against the emulator hang ~60 s on a gRPC probe. Importing this module first avoids it.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AZURITE_BIN = REPO / ".cache" / "node" / "node_modules" / ".bin" / "azurite-blob"
SSHD_BIN = Path("/usr/sbin/sshd")
SETUP_HINT = "run `bash .ci/setup-system.sh` (system packages, Azurite) or install the test extras"

# The well-known Azurite development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class ServiceError(RuntimeError):
    """A test server could not be started (missing binary, crash or timeout)."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _require(path: Path, what: str) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ServiceError(f"{what}: executable not found at {path}; {SETUP_HINT}")
    return path


def _log_tail(log: Path, limit: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _http_answers(url: str, want_status: int | None = None) -> bool:
    """True once the URL gives any HTTP answer (or exactly want_status if given)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError):
        return False
    return want_status is None or status == want_status


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


@contextmanager
def _process(
    name: str,
    argv: list[str],
    ready: Callable[[], bool],
    *,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start argv with its output in a log file, wait for ready(), stop it by PID on exit."""
    with tempfile.TemporaryDirectory(prefix=f"svc-{name}-") as logdir:
        log = Path(logdir) / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if proc.poll() is not None:
                    raise ServiceError(
                        f"{name} exited with code {proc.returncode} before it was ready:\n"
                        f"{' '.join(argv)}\n{_log_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"{name} was not ready within {timeout:.0f} s:\n"
                        f"{' '.join(argv)}\n{_log_tail(log)}"
                    )
                time.sleep(0.1)
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- S3 (moto)


@dataclass(frozen=True)
class S3Service:
    endpoint_url: str
    key: str = "testing"
    secret: str = "testing"
    region: str = "eu-west-1"  # not us-east-1: that plus a LocationConstraint fails

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for s3fs.S3FileSystem / fsspec "s3"."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }


@contextmanager
def moto_s3(timeout: float = 30.0) -> Iterator[S3Service]:
    binary = _require(VENV_BIN / "moto_server", "moto_server (PyPI moto[server])")
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [str(binary), "-H", HOST, "-p", str(port)]
    with _process("moto_server", argv, lambda: _http_answers(url + "/"), timeout=timeout):
        yield S3Service(endpoint_url=url)


# --------------------------------------------------------------------------- GCS


@dataclass(frozen=True)
class GcsService:
    emulator_host: str  # value for STORAGE_EMULATOR_HOST, e.g. http://127.0.0.1:PORT
    project: str = "test-project"

    def env(self) -> dict[str, str]:
        """Environment for a process (or os.environ) that talks to the emulator."""
        return {
            "STORAGE_EMULATOR_HOST": self.emulator_host,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for gcsfs.GCSFileSystem / fsspec "gs"."""
        return {"token": "anon", "project": self.project, "endpoint_url": self.emulator_host}


def _check_gcsfs_import() -> None:
    gcsfs = sys.modules.get("gcsfs")
    cls = getattr(gcsfs, "GCSFileSystem", None)
    if cls is not None and cls.__name__ != "GCSFileSystem":
        raise ServiceError(
            "gcsfs was imported with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT enabled; every bucket "
            "call against the emulator would hang ~60 s. Set it to 'false' before importing "
            "gcsfs (importing tests.support.services first does that)."
        )


@contextmanager
def gcs_emulator(timeout: float = 30.0) -> Iterator[GcsService]:
    _check_gcsfs_import()
    binary = _require(VENV_BIN / "gcp-storage-emulator", "gcp-storage-emulator (PyPI)")
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [str(binary), "start", "--host", HOST, "--port", str(port), "--in-memory"]
    ready = lambda: _http_answers(url + "/storage/v1/b")  # noqa: E731
    with _process("gcp-storage-emulator", argv, ready, timeout=timeout):
        yield GcsService(emulator_host=url)


# --------------------------------------------------------------------------- Azure Blob


@dataclass(frozen=True)
class AzuriteService:
    blob_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account_name: str = AZURITE_ACCOUNT
    account_key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={self.account_name};AccountKey={self.account_key};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for adlfs.AzureBlobFileSystem / fsspec "az"."""
        return {"connection_string": self.connection_string}


@contextmanager
def azurite(timeout: float = 30.0) -> Iterator[AzuriteService]:
    binary = _require(AZURITE_BIN, "azurite-blob (npm azurite)")
    node = shutil.which("node")
    if node is None:
        raise ServiceError(f"azurite-blob needs `node` on PATH; {SETUP_HINT}")
    port = free_port()
    # cwd is a throwaway folder: --location cannot be combined with --inMemoryPersistence.
    with tempfile.TemporaryDirectory(prefix="azurite-") as workdir:
        argv = [
            node,
            str(binary),
            "--blobHost",
            HOST,
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]
        ready = lambda: _http_answers(f"http://{HOST}:{port}/")  # noqa: E731
        with _process("azurite-blob", argv, ready, timeout=timeout, cwd=Path(workdir)):
            yield AzuriteService(blob_endpoint=f"http://{HOST}:{port}/{AZURITE_ACCOUNT}")


# --------------------------------------------------------------------------- SSH / SFTP


@dataclass(frozen=True)
class SshService:
    host: str
    port: int
    user: str
    key_path: Path  # private ed25519 key, authorized on the server

    def ssh_options(self) -> list[str]:
        """Arguments for ssh/scp/rsync -e that skip known_hosts entirely."""
        return [
            "-p",
            str(self.port),
            "-i",
            str(self.key_path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ]

    def sftp_storage_options(self) -> dict[str, Any]:
        """Keyword arguments for fsspec "sftp" (sshfs/asyncssh), no known_hosts check."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "client_keys": [str(self.key_path)],
            "known_hosts": None,
        }


def write_ssh_config(service: SshService, path: Path, alias: str = "backup-host") -> Path:
    """Write (append) an ssh_config block naming the server `alias`; return path."""
    block = (
        f"Host {alias}\n"
        f"    HostName {service.host}\n"
        f"    Port {service.port}\n"
        f"    User {service.user}\n"
        f"    IdentityFile {service.key_path}\n"
        "    IdentitiesOnly yes\n"
        "    StrictHostKeyChecking no\n"
        "    UserKnownHostsFile /dev/null\n"
        "    LogLevel ERROR\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(block)
    path.chmod(0o600)
    return path


def _keygen(path: Path) -> None:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise ServiceError(f"ssh-keygen not found; {SETUP_HINT}")
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "chatbot-backup-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


@contextmanager
def sshd_server(tmp_path: Path | None = None, timeout: float = 30.0) -> Iterator[SshService]:
    """sshd on 127.0.0.1 with its own host key; key-only login as the current user."""
    binary = _require(SSHD_BIN, "sshd (Debian openssh-server)")
    privsep = Path("/run/sshd")
    if not privsep.is_dir():
        try:
            privsep.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            raise ServiceError(f"sshd needs {privsep} ({exc}); {SETUP_HINT}") from exc
    with ExitStack() as stack:
        if tmp_path is None:
            tmp_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sshd-")))
        base = tmp_path / "sshd"
        base.mkdir(parents=True, exist_ok=True)
        host_key, client_key = base / "host_ed25519", base / "client_ed25519"
        _keygen(host_key)
        _keygen(client_key)
        authorized = base / "authorized_keys"
        authorized.write_text(client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        port = free_port()
        config = base / "sshd_config"
        config.write_text(
            f"ListenAddress {HOST}\n"
            f"Port {port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {base / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PrintMotd no\n"
            "UseDNS no\n"
            "MaxStartups 100\n"
            "MaxSessions 100\n"
            "Subsystem sftp internal-sftp\n"
        )
        argv = [str(binary), "-D", "-e", "-f", str(config)]
        with _process("sshd", argv, lambda: _ssh_banner(port), timeout=timeout):
            yield SshService(host=HOST, port=port, user=getpass.getuser(), key_path=client_key)


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class SmtpService:
    host: str
    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # (user, password) seen

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least `count` messages arrived; return a copy of them."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mail(s), got {len(self.messages)}")
            time.sleep(0.05)
        return list(self.messages)


@contextmanager
def smtp_server(timeout: float = 10.0) -> Iterator[SmtpService]:
    """aiosmtpd in this process; accepts any AUTH login (without TLS) and records it."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    service = SmtpService(host=HOST, port=free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            raw = envelope.original_content or envelope.content or b""
            data = raw if isinstance(raw, bytes) else raw.encode()
            service.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), data))
            return "250 Message accepted for delivery"

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            service.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    controller = Controller(
        Handler(),
        hostname=HOST,
        port=service.port,
        ready_timeout=timeout,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    try:
        controller.start()
    except Exception as exc:
        raise ServiceError(f"aiosmtpd did not start on {HOST}:{service.port}: {exc}") from exc
    try:
        yield service
    finally:
        controller.stop()


# --------------------------------------------------------------------------- HTTP receiver


class ReceivedRequest(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    url: str  # http://127.0.0.1:PORT (post to any path under it)
    status: int = 200  # status answered to every POST; set to 500 to simulate a failing channel
    _requests: list[ReceivedRequest] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every POST received so far, in order."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while len(got := self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} POST(s), got {len(got)}")
            time.sleep(0.05)
        return got

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)


@contextmanager
def http_receiver(status: int = 200) -> Iterator[HttpReceiver]:
    """A threaded http.server on 127.0.0.1 that records every POST and answers `status`."""
    receiver: HttpReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver._record(ReceivedRequest(self.path, dict(self.headers.items()), body))
            reply = b"ok" if receiver.status < 400 else b"error"
            self.send_response(receiver.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    receiver = HttpReceiver(url=f"http://{HOST}:{server.server_address[1]}", status=status)
    thread = threading.Thread(target=server.serve_forever, name="http-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- Prefect server


@dataclass(frozen=True)
class PrefectService:
    api_url: str  # http://127.0.0.1:PORT/api
    home: Path  # the throwaway PREFECT_HOME the server uses

    def env(self) -> dict[str, str]:
        """Environment for a client process that should talk to this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


# Settings from the caller's environment that would point the server elsewhere.
_PREFECT_ENV_DROP = frozenset(
    {
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "PREFECT_PROFILE",
        "PREFECT_API_DATABASE_CONNECTION_URL",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    }
)


@contextmanager
def prefect_server(timeout: float = 90.0, ui: bool = False) -> Iterator[PrefectService]:
    """`prefect server start` on a free port with its own SQLite in a temp PREFECT_HOME."""
    binary = _require(VENV_BIN / "prefect", "prefect")
    port = free_port()
    api_url = f"http://{HOST}:{port}/api"
    with tempfile.TemporaryDirectory(prefix="prefect-home-") as home:
        env = {k: v for k, v in os.environ.items() if k not in _PREFECT_ENV_DROP}
        env.update(
            PREFECT_HOME=home,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED=str(ui).lower(),
            PREFECT_SERVER_UI_ENABLED=str(ui).lower(),
        )
        argv = [str(binary), "server", "start", "--host", HOST, "--port", str(port)]
        ready = lambda: _http_answers(api_url + "/health", 200)  # noqa: E731
        with _process("prefect-server", argv, ready, timeout=timeout, env=env, cwd=Path(home)):
            yield PrefectService(api_url=api_url, home=Path(home))


# --------------------------------------------------------------------------- PostgreSQL (password)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Every character that breaks naive URL building or shell quoting.
PG_PASSWORD = "p@ss:w/rd%&'\""


@dataclass(frozen=True)
class PasswordPostgres:
    """A throwaway cluster that only lets `postgres` in over TCP with a password."""

    host: str
    port: int
    user: str
    password: str
    socket_dir: Path  # trust login for the test's own set-up, as the `postgres` OS user

    def url(self, dbname: str, password: str | None = None) -> str:
        from urllib.parse import quote

        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{quote(secret, safe='')}@{self.host}:{self.port}/{dbname}"

    def admin_params(self, dbname: str = "postgres") -> dict[str, Any]:
        """psycopg.connect() keyword arguments (TCP, with the password)."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": dbname,
        }


def _as_postgres(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    runner = [] if getpass.getuser() == "postgres" else ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*runner, *argv], capture_output=True, text=True, **kwargs)


@contextmanager
def password_postgres(password: str = PG_PASSWORD, timeout: float = 60.0) -> Iterator[PasswordPostgres]:
    """initdb a cluster as OS user `postgres`, scram-sha-256 on 127.0.0.1, a free port.

    The machine's own cluster trusts every local login, so a wrong password could never
    fail there. This one is stopped (by its data folder) and deleted on exit.
    """
    initdb = _require(PG_BIN / "initdb", "initdb (Debian postgresql-15)")
    pg_ctl = _require(PG_BIN / "pg_ctl", "pg_ctl (Debian postgresql-15)")
    base = Path(tempfile.mkdtemp(prefix="pg-password-"))
    try:
        shutil.chown(base, "postgres", "postgres")
        data, pwfile = base / "data", base / "pwfile"
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        done = _as_postgres(
            [str(initdb), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
             "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8"],
            timeout=timeout,
        )
        if done.returncode != 0:
            raise ServiceError(f"initdb failed: {done.stderr[-2000:]}")
        port = free_port()
        options = (
            f"-p {port} -k {base} -c listen_addresses={HOST} -c fsync=off "
            "-c password_encryption=scram-sha-256"
        )
        log = base / "server.log"
        started = _as_postgres(
            [str(pg_ctl), "-D", str(data), "-l", str(log), "-o", options, "-w",
             "-t", str(int(timeout)), "start"],
            timeout=timeout + 10,
        )
        if started.returncode != 0:
            raise ServiceError(f"pg_ctl start failed: {started.stderr}\n{_log_tail(log)}")
        try:
            yield PasswordPostgres(HOST, port, "postgres", password, base)
        finally:
            _as_postgres([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"], timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
