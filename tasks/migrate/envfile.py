"""Pointing `.env` at PostgreSQL: ADMIN_DB_TYPE=postgres and ADMIN_DATABASE_URL=<target>.

Every other line (comments, order, `export`, other variables) stays as it was. The old
file is kept first as `.env.before_migration_YYYYMMDD_HHMMSS` (same mode; never over an
existing one); the new text is read back with the same parser the settings use, and
only when it yields exactly the two new values does it replace `.env` (temporary file,
fsync, rename, fsync of the folder; the old file's mode, 0600 for a new one). What is
shown to the operator has the password replaced by `***`.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from tasks.core.atomic import FILE_MODE, atomic_writer
from tasks.core.errors import ConfigError
from tasks.core.naming import timestamp

_ASSIGNMENT = re.compile(r"^(?P<head>\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=[ \t]*)")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_.:/@%+=?&,~\-\[\]]+$")


@dataclass(frozen=True)
class EnvChange:
    path: Path
    kept_as: Path | None  # the previous .env, when there was one
    shown: tuple[str, ...]  # the new lines, password hidden


def new_values(url: str) -> dict[str, str]:
    return {"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": url}


def without_password(url: str) -> str:
    """The URL as it may be shown: its password, whatever characters it holds, as ***."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "(a connection string with a password)" if "password" in url else url
    head = rest.split("/", 1)[0]
    where = head if "@" in head else rest  # a password may hold an unencoded '/'
    if "@" not in where:
        return url
    userinfo = where.rsplit("@", 1)[0]
    if ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{rest[len(userinfo) + 1:]}"


def shown_lines(url: str) -> tuple[str, ...]:
    return tuple(f"{k}={without_password(v) if k == 'ADMIN_DATABASE_URL' else v}" for k, v in new_values(url).items())


def quote_value(value: str) -> str:
    if _PLAIN_VALUE.match(value):
        return value
    if "'" not in value and "\\" not in value:
        return f"'{value}'"  # single quotes: no escapes, no ${...} interpolation
    raise ConfigError(
        "the target URL holds both a quote and a backslash: set ADMIN_DATABASE_URL in .env "
        "by hand (or percent-encode them in the URL)"
    )


def updated_text(old: str, values: dict[str, str]) -> str:
    """`old` with each variable of `values` set: replaced where it is, appended if absent."""
    lines = old.splitlines(keepends=True)
    seen: set[str] = set()
    out = []
    for line in lines:
        match = _ASSIGNMENT.match(line)
        key = match.group("key") if match else None
        if match and key in values:
            ending = "\n" if line.endswith("\n") else ""
            out.append(f"{match.group('head')}{quote_value(values[key])}{ending}")
            seen.add(key)
        else:
            out.append(line)
    missing = [k for k in values if k not in seen]
    if missing:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out += [f"{k}={quote_value(values[k])}\n" for k in missing]
    return "".join(out)


def _parsed(text: str) -> dict[str, str | None]:
    from dotenv import dotenv_values

    return dict(dotenv_values(stream=io.StringIO(text), interpolate=True))


def _kept_name(path: Path, moment: dt.datetime) -> Path:
    candidate = path.with_name(f"{path.name}.before_migration_{timestamp(moment)}")
    second = moment
    while candidate.exists():
        second += dt.timedelta(seconds=1)
        candidate = path.with_name(f"{path.name}.before_migration_{timestamp(second)}")
    return candidate


def update_env_file(path: Path, url: str, moment: dt.datetime) -> EnvChange:
    values = new_values(url)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    text = updated_text(old, values)
    parsed = _parsed(text)
    if any(parsed.get(k) != v for k, v in values.items()):
        raise ConfigError(f"{path}: the updated file would not read back as intended; it was not changed")
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else FILE_MODE
    kept = None
    if path.exists():
        kept = _kept_name(path, moment)
        with atomic_writer(kept) as out, open(path, "rb") as current:
            shutil.copyfileobj(current, out)
        os.chmod(kept, mode)
    with atomic_writer(path, overwrite=True) as out:
        out.write(text.encode("utf-8"))
        os.fchmod(out.fileno(), mode)
    return EnvChange(path, kept, shown_lines(url))
