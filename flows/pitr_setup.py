"""`pitr-setup`: print (or with `apply`, set) the server settings PITR needs. Not a flow.

The archive_command carries WAL_ARCHIVE_DIR (and the codec, and for off-site pushes
WAL_PUSH_OFFSITE and APP_ROOT) because PostgreSQL runs it with its own environment
(tasks/pitr/commands.py). The report also says what the server's OS user needs: to
write WAL_ARCHIVE_DIR, and for base-backup a role with REPLICATION and a `replication`
line in pg_hba.conf.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.pitr_precheck import default_program
from tasks.core.errors import BackupError
from tasks.core.redact import redact
from tasks.core.settings import Settings
from tasks.pitr.commands import archive_command, program_words, wal_env
from tasks.pitr.setup import (
    SettingCheck,
    apply_settings,
    check_settings,
    read_current,
    wanted_settings,
)
from tasks.sources.postgres import parse_database_url


@dataclass(frozen=True)
class SetupReport:
    checks: list[SettingCheck]
    applied: bool
    pending_restart: list[str] = field(default_factory=list)
    server_error: str | None = None  # the server could not be asked

    @property
    def complete(self) -> bool:
        return self.server_error is None and (self.applied or all(c.ok for c in self.checks))

    def summary_lines(self) -> list[str]:
        head = "PITR server settings" + (" (applied with ALTER SYSTEM)" if self.applied else "")
        lines = [head]
        if self.server_error:
            lines.append(f"  (server not asked: {self.server_error}; the settings to make:)")
        for check in self.checks:
            lines.append(check.line())
        if self.applied and self.pending_restart:
            lines.append(
                f"  RESTART NEEDED: {', '.join(self.pending_restart)} take effect only after a "
                "server restart (archive_mode needs one): e.g. pg_ctlcluster 15 main restart"
            )
        elif not self.applied and any(not c.ok for c in self.checks):
            lines.append(
                "  apply with `chatbot-backup pitr-setup --apply` (ALTER SYSTEM; a superuser), or "
                "put them in postgresql.conf; archive_mode and wal_level need a server restart"
            )
        lines += [
            "  also: WAL_ARCHIVE_DIR must be writable by the server's OS user (postgres), and",
            "        base-backup needs a role with REPLICATION and a `host replication ...` line",
            "        in pg_hba.conf for it (PITR_DATABASE_URL, default ADMIN_DATABASE_URL)",
        ]
        return lines


def wanted_for(settings: Settings) -> dict[str, str]:
    program = program_words(settings.pitr_command, default_program())
    env = wal_env(
        settings.wal_archive,
        compression=settings.compression,
        level=settings.backup_compression_level,
        push_offsite=settings.wal_push_offsite,
        app_root=settings.app_root,
    )
    return wanted_settings(archive_command(program, env))


def pitr_setup(settings: Settings, apply: bool = False) -> SetupReport:
    wanted = wanted_for(settings)
    params = parse_database_url(settings.pitr_url()) if apply else None
    try:
        params = params or parse_database_url(settings.pitr_url())
        current = read_current(params, list(wanted))
    except BackupError as exc:
        if apply:
            raise
        return SetupReport(check_settings(wanted, None), False, server_error=redact(str(exc)))
    checks = check_settings(wanted, current)
    if not apply:
        return SetupReport(checks, False)
    pending = apply_settings(params, checks)
    return SetupReport(check_settings(wanted, read_current(params, list(wanted))), True, pending)
