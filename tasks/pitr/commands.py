"""The commands PostgreSQL runs to reach us: `archive_command` and `restore_command`.

PostgreSQL runs them with its own environment and its data directory as the current
folder, so everything wal-push and wal-fetch need travels in the command itself as
`env NAME=value` words: WAL_ARCHIVE_DIR always (absolute), the codec when it is not the
default, and for off-site pushes WAL_PUSH_OFFSITE and APP_ROOT (whose `.env` holds the
destination and its keys — never put keys into a command, every superuser can read it).
The program is PITR_COMMAND when set (a wrapper, or a path PostgreSQL's user can reach),
else the `chatbot-backup` of the running installation.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def program_words(pitr_command: str | None, default: list[str]) -> list[str]:
    if pitr_command and pitr_command.strip():
        return shlex.split(pitr_command)
    return default


def wal_env(
    archive_dir: Path,
    *,
    compression: str = "gzip",
    level: int | None = None,
    push_offsite: bool = False,
    app_root: Path | None = None,
) -> dict[str, str]:
    env = {"WAL_ARCHIVE_DIR": str(archive_dir)}
    if compression != "gzip":
        env["BACKUP_COMPRESSION"] = compression
    if level is not None:
        env["BACKUP_COMPRESSION_LEVEL"] = str(level)
    if push_offsite:
        env["WAL_PUSH_OFFSITE"] = "true"
        if app_root is not None:
            env["APP_ROOT"] = str(app_root)
    return env


def shell_command(program: list[str], env: dict[str, str], args: str) -> str:
    """`env K=V PROGRAM ARGS`, each word shell-quoted; `args` (%p, %f %p) is left as is."""
    words = [f"{k}={v}" for k, v in env.items()]
    prefix = ["env", *words] if words else []
    return " ".join(shlex.quote(w) for w in [*prefix, *program]) + " " + args


def archive_command(program: list[str], env: dict[str, str]) -> str:
    return shell_command(program, env, "wal-push %p")


def restore_command(program: list[str], env: dict[str, str]) -> str:
    return shell_command(program, env, "wal-fetch %f %p")


def conf_literal(value: str) -> str:
    """A postgresql.conf string literal (quotes doubled, backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
