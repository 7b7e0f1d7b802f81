"""Restoring a SQLite database: stage beside the live file, check, snapshot, swap in.

The live file is replaced by one `rename`, so at every instant the database path holds
either the old database or the new, checked one. What makes this subtle is SQLite's
companion files: a `-wal` (or a hot `-journal`) beside the database is replayed into
whatever file carries the database's name the next time it is opened, so a stale one
left by the old database would silently corrupt the restored copy. Before the swap the
old database's WAL is folded into it (checkpoint) and its companions are gone; if they
cannot go because another process still has the database open, the restore stops,
nothing changed, and asks the operator to stop the application first (the guide's
disaster-recovery step 1).

ADMIN_DB_PATH may be a symbolic link (`data/admin.db -> /srv/db/admin.db`). The
application opens the database through it and SQLite keeps the companions beside the
*target*, so every step here works on the target (`live_db_file`): staged beside it,
settled there, renamed over it. The link itself is never replaced.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from tasks.backup.db_artifact import unused_moment
from tasks.core.atomic import FILE_MODE, OUT_OF_SPACE, PARTIAL_MARKER, fsync_dir, partial_path
from tasks.core.errors import OutOfSpaceError, RestoreError, SourceError
from tasks.core.naming import SQLITE_SNAPSHOT_MARKER, timestamp
from tasks.sources.sqlite import (
    BUSY_TIMEOUT_SECONDS,
    connect,
    integrity_problem,
    snapshot_database,
    table_row_counts,
)
from tasks.stream.compress import BLOCK_SIZE, copy_stream, open_decompressed

COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
SNAPSHOT_MARKER = SQLITE_SNAPSHOT_MARKER


@dataclass(frozen=True)
class StagedSqlite:
    """A restored copy beside the live database, checked and not yet swapped in."""

    path: Path
    tables: dict[str, int]


def companions(db_path: Path) -> list[Path]:
    return [db_path.with_name(db_path.name + suffix) for suffix in COMPANION_SUFFIXES]


def live_db_file(db_path: Path) -> Path:
    """The file that holds the live database: `db_path`, or where its link points.

    A link to nothing is refused (RestoreError, exit 7) before anything changes: a restore
    that wrote a regular file in the link's place would leave the application, which
    opens the target, on a database nobody restored.
    """
    if not db_path.is_symlink():
        return db_path
    real = Path(os.path.realpath(db_path))
    if not real.exists():
        raise RestoreError(
            f"ADMIN_DB_PATH: {db_path} is a link to {os.readlink(db_path)}, which does not "
            "exist; create the file it points to (or remove the link) and run again — "
            "nothing was changed"
        )
    return real


def remove_stale_stages(db_path: Path) -> list[Path]:
    """Delete staged copies and half-written snapshots a killed restore left beside the
    database (call only under the backup lock, which every restore holds)."""
    removed: list[Path] = []
    if not db_path.parent.is_dir():
        return removed
    for pattern in (
        f".{db_path.name}{PARTIAL_MARKER}*",
        f".{db_path.name}{SNAPSHOT_MARKER}*{PARTIAL_MARKER}*",
    ):
        for stale in db_path.parent.glob(pattern):
            if stale.is_file() and not stale.is_symlink():
                discard_staged(stale)
                removed.append(stale)
    return removed


def stage_sqlite(artifact: Path, compression: str, db_path: Path) -> StagedSqlite:
    """Decompress `artifact` into a hidden file beside the live file (a link's target: the
    rename that swaps it in must stay on that filesystem); integrity_check it."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    live = live_db_file(db_path)
    remove_stale_stages(live)
    staged = partial_path(live)
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out, open(artifact, "rb") as raw:
            reader = open_decompressed(io.BufferedReader(raw, BLOCK_SIZE), compression)
            copy_stream(reader, out)
            out.flush()
            os.fsync(out.fileno())
        problem = integrity_problem(staged)
        if problem is not None:
            raise RestoreError(
                f"{artifact.name}: the restored copy fails PRAGMA integrity_check ({problem}); "
                "the live database was not touched"
            )
        connection = connect(staged)
        try:
            tables = table_row_counts(connection)
        finally:
            connection.close()
    except OSError as exc:
        discard_staged(staged)
        if exc.errno in OUT_OF_SPACE:
            raise no_space_for_restore(live.parent, "to stage the restored database") from None
        raise RestoreError(f"cannot stage the restored database beside {live}: {exc}") from None
    except OutOfSpaceError:  # SQLite's "database or disk is full" while checking it
        discard_staged(staged)
        raise no_space_for_restore(live.parent, "to stage the restored database") from None
    except BaseException:
        discard_staged(staged)
        raise
    return StagedSqlite(staged, tables)


def discard_staged(staged: Path) -> None:
    for path in [staged, *companions(staged)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_counts(actual: dict[str, int], expected: dict[str, int], recorded_in: str) -> None:
    """RestoreError naming the differences when the restored rows are not what was backed up."""
    problems = []
    for table in sorted(set(actual) | set(expected)):
        if table not in actual:
            problems.append(f"{table} missing")
        elif table not in expected:
            problems.append(f"{table} not in the backup")
        elif actual[table] != expected[table]:
            problems.append(f"{table} has {actual[table]} rows, {expected[table]} recorded")
    if problems:
        shown = "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else "")
        raise RestoreError(f"row counts differ from {recorded_in}: {shown}")


def snapshot_before_restore(db_path: Path) -> tuple[Path | None, bool]:
    """Keep the live database as `{DB_PATH}.before_restore.YYYYMMDD_HHMMSS` (UTC, 0600).

    Returns (snapshot, readable). No live file (disaster recovery): (None, True). A live
    file SQLite cannot read (the corruption the operator is recovering from) is kept as
    a raw byte copy instead, and `readable` is False.
    """
    if not db_path.exists():
        return None, True
    moment = unused_moment(
        db_path.parent, lambda m: f"{db_path.name}{SNAPSHOT_MARKER}{timestamp(m)}"
    )
    final = db_path.with_name(f"{db_path.name}{SNAPSHOT_MARKER}{timestamp(moment)}")
    tmp = partial_path(final)
    readable = True
    try:
        try:
            snapshot_database(db_path, tmp)
        except OutOfSpaceError:
            raise no_space_for_restore(final.parent, f"for the pre-restore snapshot {final.name}") from None
        except SourceError as exc:
            if exc.transient:
                raise RestoreError(
                    f"the live database {db_path} is busy ({exc}); stop the application and retry",
                    transient=True,
                ) from None
            readable = False
            _raw_copy(db_path, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except OSError as exc:
        if exc.errno in OUT_OF_SPACE:
            raise no_space_for_restore(final.parent, f"for the pre-restore snapshot {final.name}") from None
        raise RestoreError(f"cannot write the pre-restore snapshot {final}: {exc}") from None
    finally:
        discard_staged(tmp)  # the half-written copy and any journal SQLite left beside it
    return final, readable


def no_space_for_restore(folder: Path, what: str) -> RestoreError:
    return RestoreError(
        f"no space left in {folder} {what}; nothing was changed — "
        "free some space there and run the restore again"
    )


def _raw_copy(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        copy_stream(src, out)


def settle_live_database(db_path: Path, readable: bool, snapshot: Path | None) -> None:
    """Leave the live database with no companion file, or refuse without changing it.

    A readable database is opened once: that rolls back a hot journal and, in WAL mode,
    a TRUNCATE checkpoint folds the WAL into the main file; closing the last connection
    then removes `-wal` and `-shm`. Companions still present afterwards mean another
    process has the database open. An unreadable database's companions are moved next
    to its raw snapshot, so nothing of it is lost and nothing of it is replayed.
    A link's target is settled: its companions lie beside the target, not the link.
    """
    db_path = live_db_file(db_path)
    if not db_path.exists():
        for path in companions(db_path):
            if path.exists():
                raise RestoreError(
                    f"{path} exists but {db_path} does not; move it away before restoring"
                )
        return
    if readable:
        try:
            connection = connect(db_path, "rw", timeout=BUSY_TIMEOUT_SECONDS)
            try:
                mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() == "wal":
                    busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                    if busy:
                        raise RestoreError(_in_use(db_path))
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise RestoreError(f"cannot settle the live database {db_path}: {exc}") from None
        if any(path.exists() for path in companions(db_path)):
            raise RestoreError(_in_use(db_path))
        return
    for path in companions(db_path):
        if path.exists() and snapshot is not None:
            os.replace(path, Path(f"{snapshot}{path.name[len(db_path.name) :]}"))


def _in_use(db_path: Path) -> str:
    return (
        f"the live database {db_path} is in use by another process; stop the application "
        "first, then run the restore again (nothing was changed)"
    )


def swap_in(staged: StagedSqlite, db_path: Path) -> None:
    """Replace the live database (a link's target) with the staged copy, keeping the live
    file's mode."""
    db_path = live_db_file(db_path)
    with contextlib.suppress(FileNotFoundError):
        live = db_path.stat()
        os.chmod(staged.path, stat.S_IMODE(live.st_mode))
        if os.geteuid() == 0:
            os.chown(staged.path, live.st_uid, live.st_gid)
    try:
        os.replace(staged.path, db_path)
    except OSError as exc:
        raise RestoreError(
            f"could not move the restored database into place at {db_path}: {exc.strerror}"
        ) from None
    fsync_dir(db_path.parent)


def check_live(db_path: Path) -> dict[str, int]:
    """The guide's "verify the restore": integrity_check and row counts of the live file."""
    problem = integrity_problem(db_path)
    if problem is not None:
        raise RestoreError(f"{db_path} fails PRAGMA integrity_check after the restore: {problem}")
    connection = connect(db_path)
    try:
        return table_row_counts(connection)
    finally:
        connection.close()
