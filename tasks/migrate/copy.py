"""Streaming one table's rows from SQLite into PostgreSQL with COPY (psycopg).

Rows are read in batches from SQLite and written row by row into `COPY ... FROM STDIN`,
so memory stays bounded by a batch, whatever the table's size. Two things can only be
seen while copying, and both end the COPY with an exception that names the column, so
the caller can roll the table back to its savepoint and copy it again with a wider
type: SQLite text that is not valid UTF-8 (`TextDoesNotDecode`), and a value PostgreSQL
refuses for the chosen type (`ValueRefused`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from tasks.migrate.ddl import relation
from tasks.migrate.plan import TablePlan
from tasks.migrate.values import to_pg

BATCH_ROWS = 2000


class TextDoesNotDecode(Exception):
    """SQLite holds text in this table that is not valid UTF-8."""


class ValueRefused(Exception):
    """PostgreSQL refused a value of `column` (a SQLite name) for the chosen type."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"{column}: {reason}")
        self.column = column
        self.reason = reason


def _row_converter(plan: TablePlan) -> Callable[[tuple[Any, ...]], Any] | None:
    converters = [to_pg(c.conversion) for c in plan.columns]
    if not any(converters):
        return None
    pairs = list(enumerate(converters))

    def convert(row: tuple[Any, ...]) -> list[Any]:
        return [f(row[i]) if f is not None and row[i] is not None else row[i] for i, f in pairs]

    return convert


def refused_column(plan: TablePlan, error: psycopg.Error) -> str | None:
    """Which column PostgreSQL's COPY error is about (its CONTEXT names it)."""
    context = getattr(error.diag, "context", None) or ""
    best = None
    for column in plan.columns:
        if re.search(r",\s*column\s+" + re.escape(column.pg_name) + r"\s*:", context):
            if best is None or len(column.pg_name) > len(best[1]):
                best = (column.source.name, column.pg_name)
    return best[0] if best else None


def reason_without_value(error: psycopg.Error) -> str:
    """PostgreSQL's message without the offending value (which may be private data)."""
    primary = getattr(error.diag, "message_primary", None) or str(error).splitlines()[0]
    return primary.split(":", 1)[0].strip()


def copy_table(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, plan: TablePlan
) -> int:
    """Copy every row of the table; the number of rows sent."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        relation(schema, plan.pg_name),
        sql.SQL(", ").join(sql.Identifier(c.pg_name) for c in plan.columns),
    )
    convert = _row_converter(plan)
    sent = 0
    try:
        with pg.cursor() as cursor, cursor.copy(statement) as copy:
            rows = source.execute(plan.select_sql())
            while True:
                try:
                    batch = rows.fetchmany(BATCH_ROWS)
                except sqlite3.OperationalError as exc:
                    if "decode" in str(exc).lower():
                        raise TextDoesNotDecode(plan.source.name) from None
                    raise
                if not batch:
                    break
                if convert is None:
                    for row in batch:
                        copy.write_row(row)
                else:
                    for row in batch:
                        copy.write_row(convert(row))
                sent += len(batch)
    except (psycopg.errors.DataError, psycopg.errors.IntegrityConstraintViolation) as exc:
        column = refused_column(plan, exc)
        if column is None or isinstance(exc, psycopg.errors.IntegrityConstraintViolation):
            raise
        raise ValueRefused(column, reason_without_value(exc)) from None
    return sent
