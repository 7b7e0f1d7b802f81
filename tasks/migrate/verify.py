"""Both sides compared value by value: row counts, a per-table checksum, the first
difference named by table, row and column.

The SQLite side is read again with the very SELECT the copy used (same snapshot, same
order); the PostgreSQL side is read back in the open transaction, in the table's
physical order, which for a table created and filled by one COPY in this transaction
is the order the rows were sent (the caller turns parallel and synchronized scans off,
and verifies before any index exists). Every value is put in its canonical form
(tasks.migrate.canonical) on its own side; the checksum is sha256 over the canonical rows.
Should PostgreSQL ever return rows in another order, the result is a mismatch and a
rollback: a false alarm, never a false "verified".
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import psycopg
from psycopg import sql

from tasks.migrate.canonical import describe_value, pg_canonical, sqlite_canonical
from tasks.migrate.ddl import relation
from tasks.migrate.plan import TablePlan
from tasks.migrate.values import pg_select

FETCH_ROWS = 2000


@dataclass(frozen=True)
class Mismatch:
    table: str
    row: str  # where in SQLite: "rowid 42", or "row 7 (no rowid)"
    column: str | None  # None: a row present on one side only
    detail: str

    def line(self) -> str:
        where = f"{self.table}, {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.detail}"


@dataclass(frozen=True)
class TableCheck:
    table: str  # SQLite name
    sqlite_rows: int
    pg_rows: int
    sqlite_sha256: str
    pg_sha256: str
    mismatch: Mismatch | None

    @property
    def ok(self) -> bool:
        return self.mismatch is None and self.sqlite_sha256 == self.pg_sha256 and self.sqlite_rows == self.pg_rows


def _feed(digest: Any, row: tuple[str | None, ...]) -> None:
    """One row into the checksum: each value length-prefixed (so no two rows can run
    together into the same bytes), NULL as `-`, which no length starts with."""
    text = "\x1f".join("-" if v is None else f"{len(v)}:{v}" for v in row) + "\x1e"
    digest.update(text.encode("utf-8", "surrogatepass"))


def sqlite_rows(source: sqlite3.Connection, plan: TablePlan) -> Iterator[tuple[object, tuple[str | None, ...]]]:
    """(rowid or None, canonical row) for every row, in copy order."""
    canonical = [sqlite_canonical(c.conversion) for c in plan.columns]
    cursor = source.execute(plan.select_sql(with_locator=True))
    while batch := cursor.fetchmany(FETCH_ROWS):
        for row in batch:
            yield row[0], tuple([f(v) for f, v in zip(canonical, row[1:], strict=True)])


def pg_rows(pg: psycopg.Connection, schema: str, plan: TablePlan) -> Iterator[tuple[str | None, ...]]:
    canonical = [pg_canonical(c.conversion) for c in plan.columns]
    columns = sql.SQL(", ").join(
        sql.SQL(pg_select(c.conversion, sql.Identifier(c.pg_name).as_string(pg))) for c in plan.columns
    )
    statement = sql.SQL("SELECT {} FROM {}").format(columns, relation(schema, plan.pg_name))
    with pg.cursor(name="chatbot_backup_verify") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(statement)
        for row in cursor:
            yield tuple([f(v) for f, v in zip(canonical, row, strict=True)])


def _where(rowid: object, position: int) -> str:
    return f"rowid {rowid}" if rowid is not None else f"row {position} in copy order (no rowid)"


def compare_table(
    pg: psycopg.Connection, source: sqlite3.Connection, schema: str, plan: TablePlan
) -> TableCheck:
    left, right = hashlib.sha256(), hashlib.sha256()
    counts = [0, 0]
    mismatch: Mismatch | None = None
    names = [c.pg_name for c in plan.columns]
    mine: Iterator[tuple[object, tuple[str | None, ...]] | None] = sqlite_rows(source, plan)
    theirs: Iterator[tuple[str | None, ...] | None] = pg_rows(pg, schema, plan)
    for position, (left_row, right_row) in enumerate(zip_longest(mine, theirs), start=1):
        rowid: object = None
        values: tuple[str | None, ...] | None = None
        if left_row is not None:
            rowid, values = left_row
            _feed(left, values)
            counts[0] += 1
        if right_row is not None:
            _feed(right, right_row)
            counts[1] += 1
        if mismatch is not None:
            continue
        if right_row is None:
            mismatch = Mismatch(plan.source.name, _where(rowid, position), None, "missing in PostgreSQL")
        elif values is None:
            mismatch = Mismatch(
                plan.source.name, f"row {position} in copy order", None, "PostgreSQL holds a row SQLite does not"
            )
        elif values != right_row:
            index = next(i for i, (a, b) in enumerate(zip(values, right_row, strict=True)) if a != b)
            mismatch = Mismatch(
                plan.source.name,
                _where(rowid, position),
                names[index],
                f"values differ (SQLite: {describe_value(values[index])}; "
                f"PostgreSQL: {describe_value(right_row[index])})",
            )
    return TableCheck(
        plan.source.name, counts[0], counts[1], left.hexdigest(), right.hexdigest(), mismatch
    )


def sqlite_digest(source: sqlite3.Connection, plan: TablePlan) -> tuple[int, str]:
    """Rows and checksum of the SQLite side alone (to tell a real change from a checkpoint)."""
    digest, rows = hashlib.sha256(), 0
    for _, values in sqlite_rows(source, plan):
        _feed(digest, values)
        rows += 1
    return rows, digest.hexdigest()
