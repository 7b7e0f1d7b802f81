"""The migration plan: each SQLite table and column with its PostgreSQL name and type.

Names: SQLite compares identifiers ignoring ASCII case and so does PostgreSQL for
unquoted names, by folding them to lower case; tables and columns are therefore created
with ASCII-lower-cased names, so that the application's unquoted SQL keeps working.
Names PostgreSQL cannot hold as they are (longer than 63 bytes, empty, a system column
such as `xmin`) stop the migration before anything is written: renaming them would
break the application silently.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace

from tasks.core.errors import SourceError
from tasks.migrate.catalog import Column, SqliteCatalog, Table, quote_sqlite
from tasks.migrate.profile import ColumnProfile, TableProfile, profile_table
from tasks.migrate.types import Conversion, TypeChoice, by_storage, choose_type
from tasks.migrate.values import sqlite_select

PG_NAME_BYTES = 63
SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})


def pg_name(name: str) -> str:
    """SQLite name → PostgreSQL name: ASCII letters lower-cased, nothing else changed."""
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in name)


def name_problems(catalog: SqliteCatalog) -> list[str]:
    problems = []
    relations = [t.name for t in catalog.tables] + [v.name for v in catalog.views]
    for name in relations:
        problems += _one_name_problem(name, "table or view")
    for table in catalog.tables:
        for column in table.columns:
            problems += _one_name_problem(column.name, f"column of {table.name!r}")
            if pg_name(column.name) in SYSTEM_COLUMNS:
                problems.append(
                    f"column {table.name}.{column.name} has the name of a PostgreSQL system column"
                )
    return problems


def _one_name_problem(name: str, what: str) -> list[str]:
    if not name:
        return [f"a {what} has an empty name"]
    if len(name.encode("utf-8")) > PG_NAME_BYTES:
        return [f"{what} {name!r} is longer than PostgreSQL's {PG_NAME_BYTES}-byte limit"]
    if "\x00" in name:
        return [f"{what} {name!r} holds a NUL character"]
    return []


def check_names(catalog: SqliteCatalog) -> None:
    problems = name_problems(catalog)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise SourceError(
            f"cannot migrate these names as they are: {shown}. Rename them in SQLite "
            "(and in the application) first; nothing was written"
        )


@dataclass(frozen=True)
class ColumnPlan:
    source: Column
    pg_name: str
    choice: TypeChoice
    profile: ColumnProfile

    @property
    def conversion(self) -> Conversion:
        return self.choice.conversion


@dataclass(frozen=True)
class TablePlan:
    source: Table
    pg_name: str
    rows: int
    columns: tuple[ColumnPlan, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def column(self, sqlite_name: str) -> ColumnPlan | None:
        lowered = sqlite_name.lower()
        return next((c for c in self.columns if c.source.name.lower() == lowered), None)

    def select_sql(self, with_locator: bool = False) -> str:
        """The SELECT that reads the rows to copy (and, later, to compare) from SQLite."""
        parts = [sqlite_select(c.conversion, quote_sqlite(c.source.name)) for c in self.columns]
        if with_locator:
            parts.insert(0, quote_sqlite(self.source.rowid_name) if self.source.rowid_name else "NULL")
        return f"SELECT {', '.join(parts)} FROM {quote_sqlite(self.source.name)}{self.source.order_by()}"

    def with_choice(self, sqlite_name: str, choice: TypeChoice) -> TablePlan:
        columns = tuple(
            replace(c, choice=choice) if c.source.name == sqlite_name else c for c in self.columns
        )
        return replace(self, columns=columns)


def _table_notes(table: Table) -> list[str]:
    notes = []
    if table.virtual:
        notes.append("a virtual table in SQLite: copied as a plain table (its module's behaviour is not)")
    if table.rowid_alias is None and not table.without_rowid and not table.virtual:
        notes.append("has no INTEGER PRIMARY KEY: SQLite's hidden rowid is not copied")
    for column in table.columns:
        if column.generated:
            notes.append(f"{column.name} is a generated column in SQLite: copied as a plain column with its values")
        if column.collation and column.collation != "BINARY":
            notes.append(
                f"{column.name} has COLLATE {column.collation} in SQLite: PostgreSQL compares it byte by byte"
            )
    if table.parse_problem:
        notes.append(f"{table.parse_problem}: its CHECK constraints are not copied")
    return notes


def plan_table(
    connection: sqlite3.Connection, table: Table, invalid: dict[str, tuple[int, int | None]] | None = None
) -> TablePlan:
    profile: TableProfile = profile_table(connection, table, invalid)
    columns = []
    for column in table.columns:
        measured = profile.columns[column.name]
        facts = measured.facts(column, rowid_alias=column.name == table.rowid_alias)
        choice = choose_type(facts)
        columns.append(ColumnPlan(column, pg_name(column.name), choice, measured))
    return TablePlan(table, pg_name(table.name), profile.rows, tuple(columns), tuple(_table_notes(table)))


def fallback_choice(column: ColumnPlan, why: str) -> TypeChoice | None:
    """A wider type for a column PostgreSQL refused a value of; None when none is left."""
    facts = column.profile.facts(column.source, rowid_alias=False)
    if column.conversion in (Conversion.BYTEA_FROM_MIXED, Conversion.BYTEA):
        return None
    wider = by_storage(facts, why)
    if wider.conversion == column.conversion or column.conversion in (
        Conversion.TEXT,
        Conversion.TEXT_FROM_MIXED,
    ):
        return TypeChoice(
            Conversion.BYTEA_FROM_MIXED,
            f"{why}; stored as bytes",
            changed="text values are stored as their bytes and numbers as their decimal text",
        )
    return wider
