"""`pitr-setup`: the server settings point-in-time recovery needs, printed or applied.

Wanted: `wal_level` replica (or logical), `archive_mode` on (or always), `archive_command`
calling our wal-push with the archive folder in its environment, `archive_timeout` so a
quiet server still archives at least that often (the recovery point objective; below
MONITOR_WAL_MAX_AGE_MINUTES), and `max_wal_senders` >= 2 for pg_basebackup. `--apply`
sets each differing one with `ALTER SYSTEM` (a superuser), reloads, and reads back
`pending_restart`: `wal_level` and `archive_mode` only take effect after a restart, and
the report says so. Nothing else about the server is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from tasks.core.errors import SourceError
from tasks.sources.postgres import connect, first_line

ARCHIVE_TIMEOUT = "60s"
RESTART_SETTINGS = ("wal_level", "archive_mode", "max_wal_senders")


@dataclass(frozen=True)
class SettingCheck:
    name: str
    current: str | None  # None when the server could not be asked
    wanted: str
    ok: bool
    needs_restart: bool  # the change (if any) only takes effect after a restart

    def line(self) -> str:
        state = "ok" if self.ok else "CHANGE"
        now = f" (now {self.current})" if self.current is not None and not self.ok else ""
        restart = " — needs a server restart" if self.needs_restart and not self.ok else ""
        return f"  {state:6} {self.name} = {self.wanted}{now}{restart}"


def wanted_settings(archive_command: str) -> dict[str, str]:
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive_command,
        "archive_timeout": ARCHIVE_TIMEOUT,
        "max_wal_senders": "10",
    }


def _fits(name: str, current: str, wanted: str) -> bool:
    if name == "wal_level":
        return current in ("replica", "logical")
    if name == "archive_mode":
        return current in ("on", "always")
    if name == "max_wal_senders":
        return current.isdigit() and int(current) >= 2
    if name == "archive_timeout":
        return 0 < _seconds(current) <= _seconds(wanted)
    return current == wanted


def _seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * units[unit]
    return float(text) if text.replace(".", "", 1).isdigit() else float("inf")


def read_current(params: dict[str, str], names: list[str]) -> dict[str, str]:
    with connect(params) as conn:
        rows = conn.execute(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", (names,)
        ).fetchall()
    current = {}
    for name, setting, unit in rows:
        # archive_timeout is reported in seconds with unit "s"
        current[str(name)] = f"{setting}{unit}" if unit in ("s", "ms", "min") else str(setting)
    return current


def check_settings(wanted: dict[str, str], current: dict[str, str] | None) -> list[SettingCheck]:
    checks = []
    for name, value in wanted.items():
        now = None if current is None else current.get(name)
        ok = now is not None and _fits(name, now, value)
        checks.append(SettingCheck(name, now, value, ok, name in RESTART_SETTINGS))
    return checks


def apply_settings(params: dict[str, str], checks: list[SettingCheck]) -> list[str]:
    """ALTER SYSTEM every setting that is not ok, reload; the names still pending a restart."""
    changes = [c for c in checks if not c.ok]
    with connect(params) as conn:
        conn.autocommit = True
        try:
            for check in changes:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(check.name), sql.Literal(check.wanted)
                    )
                )
            conn.execute("SELECT pg_reload_conf()")
            rows = conn.execute("SELECT name FROM pg_settings WHERE pending_restart").fetchall()
        except Exception as exc:  # psycopg errors: most often "must be superuser"
            raise SourceError(
                f"ALTER SYSTEM failed: {first_line(str(exc))} (pitr-setup --apply needs a "
                "superuser in PITR_DATABASE_URL; without --apply it only prints the settings)"
            ) from None
    # The reload is asynchronous: a setting just changed may not show as pending yet.
    pending = {str(r[0]) for r in rows} | {c.name for c in changes if c.needs_restart}
    return sorted(pending)
