"""Off-site destinations for the tests: every backend on a real server on loopback.

`offsite_backends()` starts moto (S3), the GCS emulator, Azurite and an sshd (through
`tests.support.services`), creates a bucket/container on each, and writes an SSH client
config with a real known_hosts entry (from `ssh-keyscan`), the way an operator would set
up the guide's rsync server. `BackendSet` then gives, for a backend and a fresh prefix,
the `OFFSITE_DESTINATION` text, the SDK environment, a `Destination`, and a plain fsspec
filesystem to look at (or tamper with) what landed there independently of our code.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import services as sv  # first: sets GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT

BACKENDS = ("local", "s3", "gs", "az", "ssh")
BUCKET = "chatbot-offsite"
SSH_ALIAS = "backup-server"


@dataclass
class BackendSet:
    tmp: Path
    s3: sv.S3Service | None = None
    gcs: sv.GcsService | None = None
    azure: sv.AzuriteService | None = None
    ssh: sv.SshService | None = None
    ssh_config: Path | None = None
    _created: set[str] = field(default_factory=set)

    # -- what the product is given ------------------------------------------------
    def env(self, backend: str) -> dict[str, str]:
        """SDK environment for `backend` (the way SPEC.md says credentials come)."""
        if backend == "s3":
            assert self.s3 is not None
            return {
                "AWS_ACCESS_KEY_ID": self.s3.key,
                "AWS_SECRET_ACCESS_KEY": self.s3.secret,
                "AWS_ENDPOINT_URL": self.s3.endpoint_url,
                "AWS_DEFAULT_REGION": self.s3.region,
            }
        if backend == "gs":
            assert self.gcs is not None
            return {**self.gcs.env(), "GOOGLE_CLOUD_PROJECT": self.gcs.project}
        if backend == "az":
            assert self.azure is not None
            return {"AZURE_STORAGE_CONNECTION_STRING": self.azure.connection_string}
        if backend == "ssh":
            assert self.ssh_config is not None
            return {"OFFSITE_SSH_CONFIG": str(self.ssh_config)}
        return {}

    def text(self, backend: str, prefix: str) -> str:
        """The OFFSITE_DESTINATION value for a fresh folder `prefix`."""
        if backend in ("s3", "gs", "az"):
            return f"{backend}://{BUCKET}/{prefix}"
        if backend == "ssh":
            assert self.ssh is not None
            return f"{self.ssh.user}@{SSH_ALIAS}:{self.ssh_root()}/{prefix}"
        return str(self.local_root() / prefix)

    def settings_env(self, backend: str, prefix: str) -> dict[str, str]:
        return {**self.env(backend), "OFFSITE_DESTINATION": self.text(backend, prefix)}

    def destination(self, backend: str, prefix: str) -> Any:
        from tasks.storage.destination import parse_destination

        env = self.env(backend)
        return parse_destination(
            self.text(backend, prefix),
            ssh_config=Path(env["OFFSITE_SSH_CONFIG"]) if backend == "ssh" else None,
            env={**os.environ, **env},
        )

    # -- looking from outside -----------------------------------------------------
    def local_root(self) -> Path:
        root = self.tmp / "mounted-nas"
        root.mkdir(exist_ok=True)
        return root

    def ssh_root(self) -> Path:
        root = self.tmp / "ssh-home" / "backups"
        root.mkdir(parents=True, exist_ok=True)
        return root

    def raw_fs(self, backend: str) -> Any:
        """A plain fsspec filesystem on the same server, independent of tasks.storage.destination."""
        import fsspec

        if backend == "s3":
            assert self.s3 is not None
            return fsspec.filesystem("s3", skip_instance_cache=True, **self.s3.storage_options())
        if backend == "gs":
            assert self.gcs is not None
            return fsspec.filesystem("gs", skip_instance_cache=True, **self.gcs.storage_options())
        if backend == "az":
            assert self.azure is not None
            return fsspec.filesystem("az", skip_instance_cache=True, **self.azure.storage_options())
        return fsspec.filesystem("file")  # sshd runs on this machine: its files are ours

    def raw_path(self, backend: str, prefix: str, name: str = "") -> str:
        if backend in ("s3", "gs", "az"):
            base = f"{BUCKET}/{prefix}"
        elif backend == "ssh":
            base = f"{self.ssh_root()}/{prefix}"
        else:
            base = str(self.local_root() / prefix)
        return f"{base}/{name}" if name else base

    def raw_names(self, backend: str, prefix: str) -> list[str]:
        fs = self.raw_fs(backend)
        path = self.raw_path(backend, prefix)
        try:
            fs.invalidate_cache()
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
        except FileNotFoundError:
            return []

    def ensure_bucket(self, backend: str) -> None:
        if backend not in ("s3", "gs", "az") or backend in self._created:
            return
        fs = self.raw_fs(backend)
        if not fs.exists(BUCKET):
            fs.mkdir(BUCKET)
        fs.invalidate_cache()
        self._created.add(backend)


def new_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def write_client_ssh_config(service: sv.SshService, folder: Path) -> Path:
    """~/.ssh/config and known_hosts as an operator sets them up (guide, "Rsync")."""
    folder.mkdir(parents=True, exist_ok=True)
    known = folder / "known_hosts"
    scan = subprocess.run(
        ["ssh-keyscan", "-p", str(service.port), "-t", "ed25519", service.host],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    known.write_text(scan.stdout)
    config = folder / "config"
    config.write_text(
        f"Host {SSH_ALIAS}\n"
        f"    HostName {service.host}\n"
        f"    Port {service.port}\n"
        f"    User {service.user}\n"
        f"    IdentityFile {service.key_path}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known}\n"
    )
    config.chmod(0o600)
    return config


@contextmanager
def offsite_backends(tmp: Path, which: tuple[str, ...] = BACKENDS) -> Iterator[BackendSet]:
    """Start the servers `which` needs; stop them (by PID) on exit."""
    with ExitStack() as stack:
        found = BackendSet(tmp=tmp)
        if "s3" in which:
            found.s3 = stack.enter_context(sv.moto_s3())
        if "gs" in which:
            found.gcs = stack.enter_context(sv.gcs_emulator())
        if "az" in which:
            found.azure = stack.enter_context(sv.azurite())
        if "ssh" in which:
            found.ssh = stack.enter_context(sv.sshd_server(tmp / "sshd"))
            found.ssh_config = write_client_ssh_config(found.ssh, tmp / "client-ssh")
        for backend in which:
            found.ensure_bucket(backend)
        yield found
