"""After the data, inside the migration's transaction: keys, indexes, defaults, CHECKs,
foreign keys, views, and the identity sequences.

Each step runs in its own savepoint: one PostgreSQL refuses is rolled back alone and
reported with PostgreSQL's reason (or replaced by its fallback), and the migration goes
on. A lost connection is no refusal: it ends the migration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg
from psycopg import sql

from tasks.core.errors import SourceError
from tasks.core.redact import redact
from tasks.migrate.catalog import SqliteCatalog, quote_sqlite
from tasks.migrate.ddl import (
    Step,
    check_steps,
    default_steps,
    foreign_key_step,
    index_steps,
    key_steps,
    relation,
    sequence_value,
    view_steps,
)
from tasks.migrate.outcome import StepResult
from tasks.migrate.plan import TablePlan
from tasks.migrate.types import Conversion
from tasks.sources.postgres import first_line


def refusal(exc: psycopg.Error) -> str:
    primary = getattr(exc.diag, "message_primary", None) or first_line(str(exc))
    return redact(" ".join(str(primary).split()))


def broken(pg: psycopg.Connection, exc: psycopg.Error) -> SourceError:
    return SourceError(f"lost the connection to the target: {first_line(str(exc))}; nothing was committed")


def run_step(pg: psycopg.Connection, step: Step) -> StepResult:
    if step.statement is None:
        return StepResult(step.kind, step.table, step.what, False, step.problem, step.notes)
    pg.execute("SAVEPOINT chatbot_backup_step")
    try:
        pg.execute(step.statement)
    except psycopg.Error as exc:
        if pg.broken:
            raise broken(pg, exc) from None
        pg.execute("ROLLBACK TO SAVEPOINT chatbot_backup_step")
        pg.execute("RELEASE SAVEPOINT chatbot_backup_step")
        reason = f"PostgreSQL refused it: {refusal(exc)}"
        instead = run_step(pg, step.fallback) if step.fallback is not None else None
        return StepResult(step.kind, step.table, step.what, False, reason, step.notes, instead)
    pg.execute("RELEASE SAVEPOINT chatbot_backup_step")
    return StepResult(step.kind, step.table, step.what, True, None, step.notes)


def foreign_key_violations(source: sqlite3.Connection, table: str) -> dict[int, int]:
    """Rows whose parent is missing, per foreign key id (SQLite rarely enforces them)."""
    counts: dict[int, int] = {}
    try:
        for row in source.execute(f"PRAGMA foreign_key_check({quote_sqlite(table)})"):
            counts[int(row[3])] = counts.get(int(row[3]), 0) + 1
    except sqlite3.Error:
        pass  # e.g. "foreign key mismatch": PostgreSQL will refuse the key and say why
    return counts


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


def set_sequences(pg: psycopg.Connection, schema: str, plans: list[TablePlan]) -> list[tuple[str, str, int]]:
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


def after_the_data(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, catalog: SqliteCatalog,
    plans: list[TablePlan], log: Callable[[str], None],
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
