"""The migration itself: one SQLite snapshot, one PostgreSQL transaction, verified before COMMIT.

Order, inside one read transaction on SQLite and one transaction on PostgreSQL:
target checked empty again → per table: create, COPY, compare value by value (a
mismatch raises, and closing the connection without COMMIT rolls everything back) →
keys, defaults, CHECKs, indexes, foreign keys (after the data, each in a savepoint) →
views → identity sequences past the highest id → the SQLite database must not have
changed since it was watched (before the final backup) → COMMIT → a fresh session
counts every table again. A process killed anywhere before COMMIT leaves the target as
it was: PostgreSQL rolls back the transaction of a connection that goes away.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tasks.errors import BackupError, ConfigError, SourceError, VerifyError
from tasks.migrate.catalog import SqliteCatalog, Trigger, read_catalog
from tasks.migrate.copy import TextDoesNotDecode, ValueRefused, copy_table
from tasks.migrate.ddl import (
    Step,
    check_steps,
    create_table,
    default_steps,
    foreign_key_step,
    index_steps,
    key_steps,
    relation,
    sequence_value,
    view_steps,
)
from tasks.migrate.plan import TablePlan, check_names, fallback_choice, plan_table
from tasks.migrate.profile import invalid_utf8
from tasks.migrate.target import existing_relations, inspect_target, open_target
from tasks.migrate.types import Conversion, TypeChoice
from tasks.migrate.verify import TableCheck, compare_table, sqlite_digest
from tasks.redact import redact
from tasks.sources.postgres import first_line
from tasks.sources.sqlite import SQLITE_HEADER

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


# -- the SQLite source, watched from before the final backup ------------------------------


@dataclass
class SourceWatch:
    """A read-only connection to the live SQLite database and its `data_version` when it
    was opened: any commit by another connection since then changes that number."""

    path: Path
    connection: sqlite3.Connection
    data_version: int

    def changed(self) -> bool:
        return data_version(self.connection) != self.data_version

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.connection.close()


def data_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA data_version").fetchone()[0])


def watch_source(path: Path) -> SourceWatch:
    """Open the SQLite database to migrate (read-only use) and note its data_version."""
    if not path.is_file():
        raise ConfigError(f"ADMIN_DB_PATH: SQLite database {path} does not exist")
    try:
        with open(path, "rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise SourceError(f"{path} is not a SQLite database")
        connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA query_only = 1")
        return SourceWatch(path, connection, data_version(connection))
    except (OSError, sqlite3.Error) as exc:
        raise SourceError(f"cannot open SQLite database {path}: {exc}") from None


# -- what a migration did ---------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    kind: str
    table: str
    what: str
    done: bool
    reason: str | None = None  # why not done
    notes: tuple[str, ...] = ()
    instead: StepResult | None = None  # the fallback that ran instead


@dataclass(frozen=True)
class TableResult:
    plan: TablePlan
    check: TableCheck
    widened: tuple[str, ...] = ()  # columns given a wider type while copying, and why
    seconds: float = 0.0


@dataclass(frozen=True)
class MigrationOutcome:
    source: str
    target: str
    schema: str
    tables: tuple[TableResult, ...] = ()
    steps: tuple[StepResult, ...] = ()
    sequences: tuple[tuple[str, str, int], ...] = ()  # table, column, value set
    triggers: tuple[Trigger, ...] = ()
    skipped: tuple[str, ...] = ()
    committed: bool = False
    seconds: float = 0.0
    failure: str | None = None

    @property
    def rows(self) -> int:
        return sum(t.check.pg_rows for t in self.tables)


class MigrationFailed(Exception):
    """The migration stopped before COMMIT (or its final check failed): `error` is what
    to report and exit with, `outcome` what was done until then (for the report)."""

    def __init__(self, error: BackupError, outcome: MigrationOutcome) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome = outcome


@dataclass
class _Progress:
    source: str
    target: str
    schema: str = ""
    tables: list[TableResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    sequences: list[tuple[str, str, int]] = field(default_factory=list)
    catalog: SqliteCatalog | None = None
    started: float = field(default_factory=time.monotonic)

    def outcome(self, committed: bool = False, failure: str | None = None) -> MigrationOutcome:
        return MigrationOutcome(
            self.source,
            self.target,
            self.schema,
            tuple(self.tables),
            tuple(self.steps),
            tuple(self.sequences),
            self.catalog.triggers if self.catalog else (),
            self.catalog.skipped if self.catalog else (),
            committed,
            time.monotonic() - self.started,
            failure,
        )


# -- the steps -------------------------------------------------------------------------


def _refusal(exc: psycopg.Error) -> str:
    primary = getattr(exc.diag, "message_primary", None) or first_line(str(exc))
    return redact(" ".join(str(primary).split()))


def _broken(pg: psycopg.Connection, exc: psycopg.Error) -> SourceError:
    return SourceError(f"lost the connection to the target: {first_line(str(exc))}; nothing was committed")


def run_step(pg: psycopg.Connection, step: Step) -> StepResult:
    if step.statement is None:
        return StepResult(step.kind, step.table, step.what, False, step.problem, step.notes)
    pg.execute("SAVEPOINT chatbot_backup_step")
    try:
        pg.execute(step.statement)
    except psycopg.Error as exc:
        if pg.broken:
            raise _broken(pg, exc) from None
        pg.execute("ROLLBACK TO SAVEPOINT chatbot_backup_step")
        pg.execute("RELEASE SAVEPOINT chatbot_backup_step")
        reason = f"PostgreSQL refused it: {_refusal(exc)}"
        instead = run_step(pg, step.fallback) if step.fallback is not None else None
        return StepResult(step.kind, step.table, step.what, False, reason, step.notes, instead)
    pg.execute("RELEASE SAVEPOINT chatbot_backup_step")
    return StepResult(step.kind, step.table, step.what, True, None, step.notes)


def foreign_key_violations(source: sqlite3.Connection, table: str) -> dict[int, int]:
    """Rows whose parent is missing, per foreign key id (SQLite rarely enforces them)."""
    from tasks.migrate.catalog import quote_sqlite

    counts: dict[int, int] = {}
    try:
        for row in source.execute(f"PRAGMA foreign_key_check({quote_sqlite(table)})"):
            counts[int(row[3])] = counts.get(int(row[3]), 0) + 1
    except sqlite3.Error:
        pass  # e.g. "foreign key mismatch": PostgreSQL will refuse the key and say why
    return counts


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
                raise _broken(pg, exc) from None
            raise SourceError(
                f"copying table {plan.source.name} failed: {_refusal(exc)}; nothing was committed"
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


# -- after the data ---------------------------------------------------------------------


def _views(pg: psycopg.Connection, schema: str, catalog: SqliteCatalog, plans: list[TablePlan]) -> list[StepResult]:
    """Views in any order that works: one that reads another waits for it."""
    steps = view_steps(schema, catalog, plans)
    done = [run_step(pg, s) for s in steps if s.statement is None]  # not translated
    pending = [s for s in steps if s.statement is not None]
    while pending:
        results = [(step, run_step(pg, step)) for step in pending]
        created = [r for _, r in results if r.done]
        done += created
        pending = [s for s, r in results if not r.done]
        if not created:
            done += [r for _, r in results if not r.done]
            break
    return done


def _set_sequences(pg: psycopg.Connection, schema: str, plans: list[TablePlan]) -> list[tuple[str, str, int]]:
    done = []
    for plan in plans:
        for column in plan.columns:
            if column.conversion != Conversion.IDENTITY:
                continue
            row = pg.execute(
                sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column.pg_name), relation(schema, plan.pg_name))
            ).fetchone()
            value = sequence_value(plan, row[0] if row else None)
            if value is None:
                continue
            name = sql.Identifier(schema, plan.pg_name).as_string(pg)
            pg.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), %s)", (name, column.pg_name, value)
            )
            done.append((plan.pg_name, column.pg_name, value))
    return done


def _after_the_data(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, catalog: SqliteCatalog,
    plans: list[TablePlan], log: Log,
) -> list[StepResult]:
    steps: list[StepResult] = []
    # SQLite's own index names first: the keys' indexes are named by PostgreSQL, which
    # then picks names that are free.
    for plan in plans:
        steps += [run_step(pg, s) for s in index_steps(schema, plan)]
    for plan in plans:
        steps += [run_step(pg, s) for s in key_steps(schema, plan)]
    for plan in plans:
        steps += [run_step(pg, s) for s in default_steps(schema, plan)]
        steps += [run_step(pg, s) for s in check_steps(schema, plan)]
    for plan in plans:
        violations = foreign_key_violations(source, plan.source.name) if plan.source.foreign_keys else {}
        for key in plan.source.foreign_keys:
            step = foreign_key_step(schema, plan, key, catalog, violations.get(key.id, 0))
            steps.append(run_step(pg, step))
    pg.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
    steps += _views(pg, schema, catalog, plans)
    refused = [s for s in steps if not s.done]
    log(f"keys, indexes, constraints and views: {len(steps) - len(refused)} created, {len(refused)} not")
    return steps


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
                    f"{_refusal(exc)}"
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
    progress = _Progress(source=f"SQLite {watch.path}", target=description)
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


def _source_unchanged_after(watch: SourceWatch, progress: _Progress) -> None:
    if watch.connection.in_transaction:
        watch.connection.execute("ROLLBACK")  # end the snapshot: data_version is read outside it
    _source_unchanged(watch, progress.tables)


def _in_transaction(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, catalog: SqliteCatalog,
    progress: _Progress, log: Log,
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
    progress.steps = _after_the_data(pg, source, schema, catalog, plans, log)
    progress.sequences = _set_sequences(pg, schema, plans)


def still_empty(params: dict[str, str]) -> bool | None:
    """After a failure: does a new session see the target empty? None if it cannot tell."""
    try:
        with open_target(params) as connection:
            return not existing_relations(connection)
    except (BackupError, psycopg.Error):
        return None


__all__ = [
    "MigrationFailed",
    "MigrationOutcome",
    "SourceWatch",
    "StepResult",
    "TableResult",
    "migrate",
    "still_empty",
    "watch_source",
]
