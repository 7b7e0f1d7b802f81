"""The migration itself: one SQLite snapshot, one PostgreSQL transaction, verified before COMMIT.

Order, inside one read transaction on SQLite and one transaction on PostgreSQL:
target checked empty again → per table: create, COPY, compare value by value (a
mismatch raises, and closing the connection without COMMIT rolls everything back) →
keys, defaults, CHECKs, indexes, foreign keys (after the data, each in a savepoint) →
views → identity sequences past the highest id → SQLite must not have changed while
it was copied (a fresh read gives the verified checksums) → COMMIT → a fresh session
counts every table again. A process killed anywhere before COMMIT leaves the target as
it was: PostgreSQL rolls back the transaction of a connection that goes away.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from tasks.core.errors import BackupError, SourceError, VerifyError
from tasks.migrate.after_data import after_the_data, broken, refusal, set_sequences
from tasks.migrate.catalog import SqliteCatalog, read_catalog
from tasks.migrate.copy import TextDoesNotDecode, ValueRefused, copy_table
from tasks.migrate.ddl import create_table, relation
from tasks.migrate.outcome import MigrationFailed, MigrationOutcome, Progress, TableResult
from tasks.migrate.plan import TablePlan, check_names, fallback_choice, plan_table
from tasks.migrate.profile import invalid_utf8
from tasks.migrate.source import SourceWatch, watch_source
from tasks.migrate.target import existing_relations, inspect_target, open_target
from tasks.migrate.types import TypeChoice
from tasks.migrate.verify import compare_table, sqlite_digest
from tasks.sources.postgres import first_line

Log = Callable[[str], None]

_SESSION = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL bytea_output = 'hex'",
    "SET LOCAL extra_float_digits = 1",
    # Verification reads each new table back in physical (= COPY) order: no parallel
    # workers and no scan that starts in the middle of the table.
    "SET LOCAL synchronize_seqscans = off",
    "SET LOCAL max_parallel_workers_per_gather = 0",
    "SET LOCAL statement_timeout = 0",
    "SET LOCAL idle_in_transaction_session_timeout = 0",
)


def _quiet(_: str) -> None:
    pass


# -- one table ---------------------------------------------------------------------------


def _copy_until_it_fits(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, plan: TablePlan, log: Log
) -> tuple[TablePlan, list[str]]:
    """Create and fill the table; widen a column and start the table again when a value
    does not fit (at most once per column, plus once for text that does not decode)."""
    widened: list[str] = []
    forced: dict[str, TypeChoice] = {}
    for _ in range(len(plan.columns) + 2):
        pg.execute("SAVEPOINT chatbot_backup_table")
        try:
            pg.execute(create_table(schema, plan))
            copy_table(pg, source, schema, plan)
        except TextDoesNotDecode:
            pg.execute("ROLLBACK TO SAVEPOINT chatbot_backup_table")
            invalid = invalid_utf8(source, plan.source)
            plan = plan_table(source, plan.source, invalid)
            for name, choice in forced.items():
                plan = plan.with_choice(name, choice)
            for name, (count, first) in invalid.items():
                where = f", the first at rowid {first}" if first is not None else ""
                widened.append(f"{name}: {count} text value(s) are not valid UTF-8{where}")
            log(f"{plan.pg_name}: text that is not UTF-8 found, copying the table again")
            continue
        except ValueRefused as refused:
            pg.execute("ROLLBACK TO SAVEPOINT chatbot_backup_table")
            column = plan.column(refused.column)
            assert column is not None
            why = f"PostgreSQL refused a value as {column.choice.pg_type} ({refused.reason})"
            wider = fallback_choice(column, why)
            if wider is None:
                raise SourceError(
                    f"table {plan.source.name}, column {refused.column}: {why}, and no wider type is left"
                ) from None
            forced[column.source.name] = wider
            plan = plan.with_choice(column.source.name, wider)
            widened.append(f"{column.source.name}: {why}; became {wider.pg_type}")
            log(f"{plan.pg_name}.{column.pg_name}: {why}; copying the table again as {wider.pg_type}")
            continue
        except psycopg.Error as exc:
            if pg.broken:
                raise broken(pg, exc) from None
            raise SourceError(
                f"copying table {plan.source.name} failed: {refusal(exc)}; nothing was committed"
            ) from None
        pg.execute("RELEASE SAVEPOINT chatbot_backup_table")
        return plan, widened
    raise SourceError(f"table {plan.source.name}: its values did not fit any type; nothing was committed")


def _migrate_table(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, plan: TablePlan, log: Log
) -> TableResult:
    started = time.monotonic()
    plan, widened = _copy_until_it_fits(pg, source, schema, plan, log)
    check = compare_table(pg, source, schema, plan)
    seconds = time.monotonic() - started
    log(
        f"{plan.pg_name}: {check.pg_rows} rows copied and compared in {seconds:.1f} s"
        + ("" if check.ok else " — MISMATCH")
    )
    return TableResult(plan, check, tuple(widened), seconds)


# -- before and after COMMIT --------------------------------------------------------------


def _source_unchanged(watch: SourceWatch, tables: list[TableResult]) -> None:
    """No commit by anyone since the source was watched — or, when SQLite says there may
    have been one (a WAL checkpoint counts too), the data itself is still the same."""
    if not watch.changed():
        return
    source = watch.connection
    source.execute("BEGIN")
    try:
        for result in tables:
            rows, digest = sqlite_digest(source, result.plan)
            if (rows, digest) != (result.check.sqlite_rows, result.check.sqlite_sha256):
                raise SourceError(
                    f"the SQLite database changed while it was being migrated (table "
                    f"{result.plan.source.name}): stop the application and run the migration "
                    "again; nothing was committed"
                )
    finally:
        source.execute("ROLLBACK")


def _fresh_session_counts(params: dict[str, str], schema: str, tables: list[TableResult]) -> None:
    """After COMMIT, an independent look: a new connection must see every table and row."""
    with open_target(params) as fresh:
        for result in tables:
            try:
                row = fresh.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(relation(schema, result.plan.pg_name))
                ).fetchone()
            except psycopg.Error as exc:
                raise VerifyError(
                    f"committed, but a new session cannot read table {result.plan.pg_name}: "
                    f"{refusal(exc)}"
                ) from None
            if row is None or int(row[0]) != result.check.pg_rows:
                raise VerifyError(
                    f"committed, but a new session sees {row[0] if row else 0} rows in "
                    f"{result.plan.pg_name} instead of {result.check.pg_rows}"
                )


# -- the whole migration -------------------------------------------------------------------


def migrate(
    watch: SourceWatch, params: dict[str, str], description: str, log: Log = _quiet
) -> MigrationOutcome:
    """Copy the watched SQLite database into the empty target, verified, in one transaction.

    Raises MigrationFailed (with what was done so far) on any failure; the target then
    holds nothing of it, because nothing was committed.
    """
    progress = Progress(source=f"SQLite {watch.path}", target=description)
    source = watch.connection
    try:
        source.execute("BEGIN")
        try:
            catalog = read_catalog(source)
            progress.catalog = catalog
            check_names(catalog)
            with open_target(params) as pg:
                info = inspect_target(pg, description)
                progress.schema = info.schema
                _in_transaction(pg, source, info.schema, catalog, progress, log)
                _source_unchanged_after(watch, progress)
                pg.commit()
        finally:
            if source.in_transaction:
                source.execute("ROLLBACK")
        _fresh_session_counts(params, progress.schema, progress.tables)
    except MigrationFailed:
        raise
    except BackupError as exc:
        raise MigrationFailed(exc, progress.outcome(failure=str(exc))) from None
    except psycopg.Error as exc:
        error = SourceError(f"the target failed: {first_line(str(exc))}; nothing was committed")
        raise MigrationFailed(error, progress.outcome(failure=str(error))) from None
    except sqlite3.Error as exc:
        error = SourceError(f"reading SQLite failed: {exc}; nothing was committed")
        raise MigrationFailed(error, progress.outcome(failure=str(error))) from None
    return progress.outcome(committed=True)


def _source_unchanged_after(watch: SourceWatch, progress: Progress) -> None:
    if watch.connection.in_transaction:
        watch.connection.execute("ROLLBACK")  # end the snapshot: data_version is read outside it
    _source_unchanged(watch, progress.tables)


def _in_transaction(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, catalog: SqliteCatalog,
    progress: Progress, log: Log,
) -> None:
    for statement in _SESSION:
        pg.execute(statement)
    for table in catalog.tables:
        result = _migrate_table(pg, source, schema, plan_table(source, table), log)
        progress.tables.append(result)
        if not result.check.ok:
            mismatch = result.check.mismatch
            detail = (
                mismatch.line()
                if mismatch is not None
                else f"{table.name}: checksums differ ({result.check.sqlite_sha256[:12]} vs {result.check.pg_sha256[:12]})"
            )
            error = VerifyError(
                f"verification failed: {detail}; rolled back, nothing was committed"
            )
            raise MigrationFailed(error, progress.outcome(failure=str(error)))
    plans = [r.plan for r in progress.tables]
    progress.steps = after_the_data(pg, source, schema, catalog, plans, log)
    progress.sequences = set_sequences(pg, schema, plans)


def still_empty(params: dict[str, str]) -> bool | None:
    """After a failure: does a new session see the target empty? None if it cannot tell."""
    try:
        with open_target(params) as connection:
            return not existing_relations(connection)
    except (BackupError, psycopg.Error):
        return None


__all__ = [
    "Log",
    "MigrationFailed",
    "MigrationOutcome",
    "SourceWatch",
    "migrate",
    "still_empty",
    "watch_source",
]
