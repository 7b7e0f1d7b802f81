"""The migration's target database: reachable, empty, able to take the tables.

Checked before the operator is asked anything and again inside the migration's own
transaction. Every refusal is a ConfigError (exit 3) that says what to do, and nothing
has been written when it is raised. The URL is a secret: only `describe` is ever shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from tasks.core.errors import ConfigError, SourceError
from tasks.sources.postgres import connect, first_line, parse_database_url

APPLICATION_NAME = "chatbot-backup migrate"

# Relations in user schemas that are not part of an extension: what "holds tables" means.
_EXISTING = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "f": "foreign table", "S": "sequence"}


@dataclass(frozen=True)
class TargetInfo:
    description: str  # user@host:port/db, no secret
    schema: str  # where the tables go: the session's current_schema()
    server_version: str


def target_params(url: str) -> dict[str, str]:
    try:
        return parse_database_url(url)
    except ConfigError:
        raise ConfigError(
            "--target-url (MIGRATE_TARGET_DATABASE_URL) is not a valid postgresql:// URL"
        ) from None


def describe(params: dict[str, str]) -> str:
    return (
        f"PostgreSQL {params.get('user', '')}@{params.get('host', 'local socket')}:"
        f"{params.get('port', '5432')}/{params.get('dbname', '')}"
    )


def open_target(params: dict[str, str]) -> psycopg.Connection:
    """A connection to the target (not autocommit); ConfigError when it cannot be had."""
    try:
        return connect(params, application_name=APPLICATION_NAME)
    except SourceError as exc:
        raise ConfigError(f"migration target refused: {exc}; nothing was written") from None


def existing_relations(connection: psycopg.Connection) -> list[str]:
    rows = connection.execute(_EXISTING).fetchall()
    return [f"{_KINDS.get(kind, 'relation')} {schema}.{name}" for schema, name, kind in rows]


def refuse_unless_empty(connection: psycopg.Connection, description: str) -> None:
    found = existing_relations(connection)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise ConfigError(
            f"migration target {description} already holds {len(found)} relation(s) ({shown}); "
            "the migration only writes into an empty database (createdb a new one, or drop "
            "them); nothing was written"
        )


def inspect_target(connection: psycopg.Connection, description: str) -> TargetInfo:
    """Every check of the target on an open connection; raises ConfigError."""
    try:
        row = connection.execute(
            "SELECT current_setting('server_encoding'), current_schema(), "
            "current_setting('server_version'), "
            "CASE WHEN current_schema() IS NULL THEN false "
            "ELSE has_schema_privilege(current_schema(), 'CREATE') END"
        ).fetchone()
        assert row is not None
        encoding, schema, version, can_create = (v.decode() if isinstance(v, bytes) else v for v in row)
        if encoding != "UTF8":
            raise ConfigError(
                f"migration target {description} uses encoding {encoding}; SQLite text is "
                "UTF-8, so create the database with ENCODING 'UTF8'; nothing was written"
            )
        if schema is None:
            raise ConfigError(
                f"migration target {description}: no schema of its search_path exists "
                "(create schema public, or fix search_path); nothing was written"
            )
        if not can_create:
            raise ConfigError(
                f"migration target {description}: this user may not create tables in schema "
                f"{schema} (GRANT CREATE ON SCHEMA {schema}, or connect as its owner); nothing was written"
            )
        refuse_unless_empty(connection, description)
    except psycopg.Error as exc:
        raise ConfigError(
            f"migration target {description} could not be checked: {first_line(str(exc))}; nothing was written"
        ) from None
    return TargetInfo(description, str(schema), str(version))


def check_target(url: str) -> TargetInfo:
    """Reachable, UTF-8, writable, holding no tables: before any question or write."""
    params = target_params(url)
    description = describe(params)
    with open_target(params) as connection:
        info = inspect_target(connection, description)
        connection.rollback()
    return info
