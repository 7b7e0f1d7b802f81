"""The PostgreSQL server programs and the OS user a restored data directory belongs to.

Debian and Ubuntu keep `postgres`, `pg_ctl` and `pg_verifybackup` off PATH, in
`/usr/lib/postgresql/MAJOR/bin` (the server's `pg_config` view names it as BINDIR);
PGDG's RPMs use `/usr/pgsql-MAJOR/bin`. A data directory must be owned by the user that
runs the server, which refuses to run as root: a restore run as root gives the files to
the owner of the (empty) target folder, else to the `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from tasks.core.errors import ConfigError

Owner = tuple[int, int]


def server_owner(data_dir: Path) -> Owner | None:
    """(uid, gid) the restored files must get; None when running as that user already."""
    if os.geteuid() != 0:
        return None
    if data_dir.exists():
        info = data_dir.stat()
        if info.st_uid != 0:
            return info.st_uid, info.st_gid
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigError(
            f"running as root and there is no `postgres` user: create {data_dir} owned by "
            "the PostgreSQL server's OS user first (the server refuses to run as root)"
        ) from None
    return user.pw_uid, user.pw_gid


def owner_name(owner: Owner | None) -> str:
    uid = os.geteuid() if owner is None else owner[0]
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _candidates(major: str) -> list[Path]:
    found = [Path(f"/usr/lib/postgresql/{major}/bin"), Path(f"/usr/pgsql-{major}/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            if done.returncode == 0 and done.stdout.strip():
                found.append(Path(done.stdout.strip()))
        except (OSError, subprocess.TimeoutExpired):
            pass
    postgres = shutil.which("postgres")
    if postgres:
        found.append(Path(postgres).parent)
    return found


def find_bindir(major: str) -> Path:
    """The folder holding PostgreSQL `major`'s server programs; ConfigError if none."""
    for folder in _candidates(major):
        program = folder / "postgres"
        if not (program.is_file() and os.access(program, os.X_OK)):
            continue
        try:
            done = subprocess.run(
                [str(program), "--version"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        words = done.stdout.split()
        if words and words[-1].split(".")[0] == major.split(".")[0]:
            return folder
    raise ConfigError(
        f"PostgreSQL {major} server programs (postgres, pg_ctl) not found in "
        f"/usr/lib/postgresql/{major}/bin, /usr/pgsql-{major}/bin or on PATH; the base "
        f"backup was taken from a PostgreSQL {major} server and needs the same major version"
    )


def data_dir_major(data_dir: Path) -> str:
    try:
        return (data_dir / "PG_VERSION").read_text().strip()
    except OSError:
        raise ConfigError(f"{data_dir}: no PG_VERSION, not a PostgreSQL data directory") from None
