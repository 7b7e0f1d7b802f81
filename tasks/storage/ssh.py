"""SSH servers (sshfs, SFTP over asyncssh): `user@host:/path` and `sftp://` destinations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.errors import ConfigError
from tasks.core.redact import register_secret
from tasks.storage.base import Destination

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


def ssh_url_destination(rest: str, ssh_config: Path | None) -> Destination:
    netloc, slash, path = rest.partition("/")
    user, _, hostport = netloc.rpartition("@")
    if ":" in user:
        register_secret(user.split(":", 1)[1])
        raise ConfigError(
            "OFFSITE_DESTINATION: passwords in sftp:// URLs are not supported; use an SSH key"
        )
    host, _, port_text = hostport.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"OFFSITE_DESTINATION: bad SSH port {port_text!r}")
        port = int(port_text)
    return ssh_destination(user or None, host, port, slash + path, ssh_config)


def ssh_destination(
    user: str | None, host: str, port: int | None, path: str, ssh_config: Path | None
) -> Destination:
    if not host:
        raise ConfigError("OFFSITE_DESTINATION: SSH destination needs a host (user@host:/path)")
    if not path or path == "/":
        raise ConfigError(
            "OFFSITE_DESTINATION: SSH destination needs a folder after the colon (user@host:/path)"
        )
    if any(p == ".." for p in path.split("/")):
        raise ConfigError("OFFSITE_DESTINATION: '..' is not allowed in the SSH path")
    if ssh_config is not None and not os.access(ssh_config, os.R_OK):
        raise ConfigError(f"OFFSITE_SSH_CONFIG: cannot read {ssh_config}")
    host = host.strip("[]")
    display = f"{user + '@' if user else ''}{host}:{path}"

    def make() -> AbstractFileSystem:
        from sshfs import SSHFileSystem

        kwargs: dict[str, Any] = {
            "skip_instance_cache": True,
            # () = asyncssh's defaults: the user's ~/.ssh/config and ~/.ssh/known_hosts
            # (or the config's UserKnownHostsFile). sshfs would otherwise pass None,
            # which skips host key checking altogether.
            "known_hosts": (),
            "config": [str(ssh_config)] if ssh_config is not None else (),
            "connect_timeout": 15,
            "keepalive_interval": 15,
        }
        if user:
            kwargs["username"] = user
        if port:
            kwargs["port"] = port
        return SSHFileSystem(host, **kwargs)

    return Destination("ssh", path, display, make, "rename", options={"host": host})
