"""Before a restore asks "Are you sure": can it reach the live database at all?

An operator who answers `yes` and then learns that the server is down, the password
wrong or the SQLite folder missing has been asked for nothing. This runs in the CLI
before the question (no Prefect), and changes nothing.
"""

from __future__ import annotations

from tasks.core.errors import SourceError
from tasks.core.settings import Settings


def check_live_database(settings: Settings) -> str:
    """What was reached (e.g. 'PostgreSQL 127.0.0.1:5432/app'); SourceError (exit 4) when
    the live database cannot be reached, naming the variable to fix; RestoreError (exit 7)
    when ADMIN_DB_PATH is a link to nothing."""
    if settings.db_type == "postgres":
        from tasks.sources.postgres import connect, parse_database_url

        params = parse_database_url(settings.database_url())
        where = f"PostgreSQL {params.get('host', 'local socket')}/{params.get('dbname', '')}"
        try:
            with connect(params) as connection:
                connection.execute("SELECT 1")
        except SourceError as exc:
            # A server that answers but has no such database is disaster recovery: the
            # restore creates it (tasks.restore.postgres.ensure_database), so that is no
            # reason to refuse. Anything else (down, password, no right) is.
            if not _database_is_missing(params):
                raise SourceError(
                    f"{exc} (ADMIN_DATABASE_URL); nothing was restored or changed"
                ) from None
            return f"{where} (missing: the restore creates it)"
        return where
    path = settings.db_path
    # A link to nothing is refused here, before the question (RestoreError, exit 7, as
    # for a linked UPLOADS_DIR); a link to a file is restored through (its target).
    from tasks.restore.sqlite import live_db_file

    live_db_file(path)
    # A missing file (or folder) is a fresh machine: the restore creates it.
    if path.is_dir() or (path.parent.exists() and not path.parent.is_dir()):
        raise SourceError(
            f"ADMIN_DB_PATH: {path} cannot be the live SQLite database (it or its folder "
            "is not what it should be); nothing was restored or changed"
        )
    return f"SQLite {path}"


def _database_is_missing(params: dict[str, str]) -> bool:
    """The server answers on its `postgres` database, and the URL's database is not there."""
    from tasks.sources.postgres import connect

    try:
        with connect(params, dbname="postgres") as connection:
            row = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (params.get("dbname", ""),)
            ).fetchone()
    except SourceError:
        return False
    return row is None
