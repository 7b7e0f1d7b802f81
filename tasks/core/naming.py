"""Backup file names: how they are made and how they are recognised.

Only names made here (or by the guide's shell scripts, which use the same patterns) are
ever treated as backups; rotation, the monitor and off-site sync all rely on that.
Timestamps in names are UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

Kind = Literal["db", "full", "base"]  # base: a PostgreSQL base backup (PITR)
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"

COMPRESSION_SUFFIX = {"gzip": ".gz", "zstd": ".zst"}

_PATTERN = re.compile(
    r"^(?:(?P<db>admin_(?P<dbtype>sqlite|postgres))|(?P<full>full_backup))"
    r"_(?P<stamp>\d{8}_\d{6})"
    r"(?P<ext>\.db|\.sql|\.tar)(?P<comp>\.gz|\.zst)$"
)
_EXPECTED_EXT = {"sqlite": ".db", "postgres": ".sql", None: ".tar"}

# The shape of a backup name, whatever its date says: to tell a forged or mistyped date
# (admin_sqlite_20250230_...) from a name that is simply not ours.
_SHAPE = re.compile(r"^(?:admin_(?:sqlite|postgres)|full_backup)_(?P<stamp>\d{8}_\d{6})\.")

# The first bytes of a SQLite database file: how a `.db` backup's content is recognised.
SQLITE_HEADER = b"SQLite format 3\x00"

SIDECAR_SUFFIX = ".sha256"
META_SUFFIX = ".meta.json"


@dataclass(frozen=True)
class BackupName:
    """What a backup's file name says about it."""

    name: str
    kind: Kind
    db_type: str | None  # sqlite / postgres for db-only backups
    created_at: datetime  # UTC
    compression: str  # gzip / zstd; "none" for a raw SQLite pre-restore snapshot
    snapshot: bool = False  # a pre-restore snapshot, not a backup (parse_snapshot_name)

    @property
    def stem(self) -> str:
        """The name without its extension: also the top folder inside a full archive."""
        return self.name.split(".", 1)[0]

    @property
    def top_folders(self) -> tuple[str, ...]:
        """The top folder a full archive of this name may have (a pre-restore archive is
        in the full-backup format: its top folder may be named like a full backup)."""
        if self.snapshot and self.kind == "full":
            return (self.stem, f"full_backup_{timestamp(self.created_at)}")
        return (self.stem,)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def db_backup_name(db_type: str, moment: datetime, compression: str = "gzip") -> str:
    ext = ".db" if db_type == "sqlite" else ".sql"
    return f"admin_{db_type}_{timestamp(moment)}{ext}{COMPRESSION_SUFFIX[compression]}"


def full_backup_name(moment: datetime, compression: str = "gzip") -> str:
    return f"full_backup_{timestamp(moment)}.tar{COMPRESSION_SUFFIX[compression]}"


def full_snapshot_name(moment: datetime, compression: str = "gzip") -> str:
    """restore-all's copy of what it replaces, in the full-backup format."""
    return f"full_before_restore_{timestamp(moment)}.tar{COMPRESSION_SUFFIX[compression]}"


def parse_backup_name(name: str) -> BackupName | None:
    """The parsed name, or None when `name` is not one of our backup names.

    A name with a date that does not exist (20251341_...) is not a backup name.
    """
    match = _PATTERN.match(name)
    if match is None:
        return None
    db_type = match.group("dbtype")
    if match.group("ext") != _EXPECTED_EXT[db_type]:
        return None
    try:
        created = datetime.strptime(match.group("stamp"), TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return BackupName(
        name=name,
        kind="db" if match.group("db") else "full",
        db_type=db_type,
        created_at=created,
        compression="zstd" if match.group("comp") == ".zst" else "gzip",
    )


# A pg_basebackup of the cluster for point-in-time recovery (tasks/pitr/base_catalog.py
# writes them): listed by the catalog as kind "base", never rotated or counted with the
# dumps and archives — list_backups leaves them out; list_base_backups lists them.
_BASE_PATTERN = re.compile(r"^base_postgres_(?P<stamp>\d{8}_\d{6})\.tar(?P<comp>\.gz|\.zst)$")


def parse_base_backup_name(name: str) -> BackupName | None:
    """`base_postgres_YYYYMMDD_HHMMSS.tar.gz` (or `.tar.zst`) parsed, or None."""
    match = _BASE_PATTERN.match(name)
    created = _stamp_time(match.group("stamp")) if match else None
    if match is None or created is None:
        return None
    compression = "zstd" if match.group("comp") == ".zst" else "gzip"
    return BackupName(name, "base", "postgres", created, compression)


# Pre-restore snapshots (SPEC: "Choosing what to restore"): never backups, but rotated
# like backups of their kind. The SQLite one is `{DB_PATH}.before_restore.STAMP`, raw.
_SNAPSHOT_PATTERN = re.compile(
    r"^(?:(?P<db>admin_postgres)|(?P<full>full))_before_restore"
    r"_(?P<stamp>\d{8}_\d{6})(?P<ext>\.sql|\.tar)(?P<comp>\.gz|\.zst)$"
)
SQLITE_SNAPSHOT_MARKER = ".before_restore."


def parse_snapshot_name(name: str, db_name: str | None = None) -> BackupName | None:
    """A pre-restore snapshot's name parsed, or None. With `db_name` (the SQLite
    database's file name), `{db_name}.before_restore.STAMP` is recognised too."""
    if db_name is not None and name.startswith(db_name + SQLITE_SNAPSHOT_MARKER):
        stamp = name[len(db_name + SQLITE_SNAPSHOT_MARKER) :]
        created = _stamp_time(stamp) if re.fullmatch(r"\d{8}_\d{6}", stamp) else None
        if created is None:
            return None
        return BackupName(name, "db", "sqlite", created, "none", snapshot=True)
    match = _SNAPSHOT_PATTERN.match(name)
    if match is None:
        return None
    full = match.group("full") is not None
    if match.group("ext") != (".tar" if full else ".sql"):
        return None
    created = _stamp_time(match.group("stamp"))
    if created is None:
        return None
    return BackupName(
        name=name,
        kind="full" if full else "db",
        db_type=None if full else "postgres",
        created_at=created,
        compression="zstd" if match.group("comp") == ".zst" else "gzip",
        snapshot=True,
    )


def _stamp_time(stamp: str) -> datetime | None:
    try:
        return datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def impossible_timestamp(name: str) -> str | None:
    """The timestamp of a name shaped like a backup name whose date or time does not exist.

    No run of ours ever made such a name, so a file carrying it was named by hand or
    damaged; None for every other name (ours, or one that does not look like ours).
    """
    match = _SHAPE.match(name)
    if match is None:
        return None
    try:
        datetime.strptime(match.group("stamp"), TIMESTAMP_FORMAT)
    except ValueError:
        return match.group("stamp")
    return None


def sidecar_name(name: str) -> str:
    return name + SIDECAR_SUFFIX


def meta_name(name: str) -> str:
    return name + META_SUFFIX


# A pre-restore snapshot, wherever it lies: SQLite's `{DB_PATH}.before_restore.STAMP`
# (and its -wal/-shm, or a half-written hidden copy), PostgreSQL's
# `admin_postgres_before_restore_STAMP.sql.gz`, restore-all's `full_before_restore_STAMP...`.
# The stamp is required: a file that merely mentions "before_restore" is the operator's.
_PRE_RESTORE_SNAPSHOT = re.compile(r"(?:\.before_restore\.|_before_restore_)\d{8}_\d{6}")


def is_pre_restore_snapshot(name: str) -> bool:
    """Whether a file name is one of the snapshots restores keep (SPEC: never archived)."""
    return _PRE_RESTORE_SNAPSHOT.search(name) is not None
