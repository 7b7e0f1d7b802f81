"""SQLite's own catalog: tables, columns, keys, indexes, foreign keys, views, triggers.

Read from the pragmas (`table_list`, `table_xinfo`, `index_list`, `index_info`,
`foreign_key_list`) and `sqlite_schema`, plus what only the CREATE text says (CHECK
constraints, column collations, AUTOINCREMENT, DEFERRABLE), and `sqlite_sequence`
for AUTOINCREMENT counters. Internal tables (`sqlite_*`) and the shadow tables of
virtual tables are left out; a virtual table is read as a plain one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from tasks.migrate.sqltext import (
    ParsedTable,
    Reference,
    SqlTextError,
    Token,
    parse_create_table,
)


def quote_sqlite(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Column:
    name: str
    declared: str
    not_null: bool
    default: str | None  # the DEFAULT expression's text, as SQLite keeps it
    pk_position: int  # 1-based position in the primary key, 0 when not part of it
    generated: bool
    collation: str | None = None
    checks: tuple[tuple[Token, ...], ...] = ()


@dataclass(frozen=True)
class ForeignKey:
    id: int
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...] | None  # None: the parent's primary key
    on_update: str
    on_delete: str
    deferred: bool = False


@dataclass(frozen=True)
class Index:
    name: str
    unique: bool
    origin: str  # c: CREATE INDEX, u: UNIQUE constraint, pk: PRIMARY KEY
    partial: bool
    columns: tuple[str | None, ...]  # None: an expression
    sql: str | None


@dataclass(frozen=True)
class Table:
    name: str
    sql: str
    virtual: bool
    without_rowid: bool
    strict: bool
    columns: tuple[Column, ...]
    rowid_alias: str | None  # the INTEGER PRIMARY KEY column, when there is one
    autoincrement: bool
    sequence: int | None  # sqlite_sequence's counter (AUTOINCREMENT tables)
    checks: tuple[tuple[Token, ...], ...]
    foreign_keys: tuple[ForeignKey, ...]
    indexes: tuple[Index, ...]
    rowid_name: str | None  # how this table's rowid can be selected, if at all
    parse_problem: str | None = None

    @property
    def primary_key(self) -> tuple[str, ...]:
        keyed = sorted((c.pk_position, c.name) for c in self.columns if c.pk_position)
        return tuple(name for _, name in keyed)

    def order_by(self) -> str:
        """The order rows are copied and compared in (the same SQL both times)."""
        if self.rowid_name is not None:
            return f" ORDER BY {quote_sqlite(self.rowid_name)}"
        if self.without_rowid and self.primary_key:
            return " ORDER BY " + ", ".join(quote_sqlite(c) for c in self.primary_key)
        return ""


@dataclass(frozen=True)
class View:
    name: str
    sql: str


@dataclass(frozen=True)
class Trigger:
    name: str
    table: str


@dataclass(frozen=True)
class SqliteCatalog:
    tables: tuple[Table, ...]
    views: tuple[View, ...]
    triggers: tuple[Trigger, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)  # shadow tables, with why

    def table(self, name: str) -> Table | None:
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)


def _rows(connection: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in connection.execute(sql).fetchall()]


def _rowid_name(columns: tuple[Column, ...], alias: str | None) -> str | None:
    if alias is not None:
        return alias
    taken = {c.name.lower() for c in columns}
    return next((n for n in ("rowid", "_rowid_", "oid") if n not in taken), None)


def _parsed(sql: str) -> tuple[ParsedTable | None, str | None]:
    try:
        return parse_create_table(sql), None
    except (SqlTextError, StopIteration, IndexError) as exc:
        return None, f"could not read its CREATE TABLE text ({exc or type(exc).__name__})"


def _indexes(connection: sqlite3.Connection, table: str) -> tuple[Index, ...]:
    found = []
    quoted = quote_sqlite(table)
    sql_of = {
        str(name): (str(sql) if sql is not None else None)
        for name, sql in _rows(
            connection, f"SELECT name, sql FROM sqlite_schema WHERE type='index' AND tbl_name={sqlite_literal(table)}"
        )
    }
    for _, name, unique, origin, partial in _rows(connection, f"PRAGMA index_list({quoted})"):
        info = _rows(connection, f"PRAGMA index_info({quote_sqlite(str(name))})")
        columns = tuple(None if c is None else str(c) for _, _, c in sorted(info, key=lambda r: int(r[0])))  # type: ignore[call-overload]
        found.append(
            Index(str(name), bool(unique), str(origin), bool(partial), columns, sql_of.get(str(name)))
        )
    return tuple(found)


def sqlite_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _foreign_keys(
    connection: sqlite3.Connection, table: str, references: list[Reference]
) -> tuple[ForeignKey, ...]:
    groups: dict[int, list[tuple[object, ...]]] = {}
    for row in _rows(connection, f"PRAGMA foreign_key_list({quote_sqlite(table)})"):
        groups.setdefault(int(row[0]), []).append(row)  # type: ignore[call-overload]
    keys = []
    for fk_id, rows in sorted(groups.items()):
        rows.sort(key=lambda r: int(r[1]))  # type: ignore[call-overload]
        parent = str(rows[0][2])
        columns = tuple(str(r[3]) for r in rows)
        targets = [r[4] for r in rows]
        parent_columns = None if any(t is None for t in targets) else tuple(str(t) for t in targets)
        deferred = any(
            ref.deferred
            and ref.parent.lower() == parent.lower()
            and tuple(c.lower() for c in ref.child_columns) == tuple(c.lower() for c in columns)
            for ref in references
        )
        keys.append(
            ForeignKey(fk_id, columns, parent, parent_columns, str(rows[0][5]), str(rows[0][6]), deferred)
        )
    return tuple(keys)


def _sequences(connection: sqlite3.Connection) -> dict[str, int]:
    exists = connection.execute(
        "SELECT 1 FROM sqlite_schema WHERE type='table' AND name='sqlite_sequence'"
    ).fetchone()
    if not exists:
        return {}
    return {
        str(name).lower(): int(seq)  # type: ignore[call-overload]
        for name, seq in _rows(connection, "SELECT name, seq FROM sqlite_sequence")
        if seq is not None
    }


def read_table(
    connection: sqlite3.Connection, name: str, kind: str, without_rowid: bool, strict: bool,
    sequences: dict[str, int],
) -> Table:
    sql_row = connection.execute(
        "SELECT sql FROM sqlite_schema WHERE type='table' AND name=?", (name,)
    ).fetchone()
    sql = str(sql_row[0]) if sql_row and sql_row[0] is not None else ""
    parsed, problem = _parsed(sql) if kind == "table" else (None, None)
    raw_columns = _rows(connection, f"PRAGMA table_xinfo({quote_sqlite(name)})")
    parsed_columns = {c.name.lower(): c for c in parsed.columns} if parsed else {}
    columns = []
    for _, col_name, declared, not_null, default, pk, hidden in raw_columns:
        if kind == "virtual" and int(hidden) == 1:  # type: ignore[call-overload]
            continue  # a virtual table's hidden columns (fts5's rank, ...) hold no data
        extra = parsed_columns.get(str(col_name).lower())
        columns.append(
            Column(
                name=str(col_name),
                declared=str(declared or ""),
                not_null=bool(not_null),
                default=None if default is None else str(default),
                pk_position=int(pk),  # type: ignore[call-overload]
                generated=int(hidden) in (2, 3),  # type: ignore[call-overload]
                collation=extra.collation if extra else None,
                checks=tuple(tuple(c) for c in extra.checks) if extra else (),
            )
        )
    keyed = [c for c in columns if c.pk_position]
    alias = None
    if not without_rowid and kind == "table" and len(keyed) == 1 and keyed[0].declared.strip().upper() == "INTEGER":
        alias = keyed[0].name
    frozen = tuple(columns)
    return Table(
        name=name,
        sql=sql,
        virtual=kind == "virtual",
        without_rowid=without_rowid,
        strict=strict,
        columns=frozen,
        rowid_alias=alias,
        autoincrement=bool(parsed and parsed.autoincrement),
        sequence=sequences.get(name.lower()),
        checks=tuple(tuple(c) for c in parsed.checks) if parsed else (),
        foreign_keys=_foreign_keys(connection, name, parsed.references if parsed else []),
        indexes=_indexes(connection, name) if kind == "table" else (),
        rowid_name=None if without_rowid else _rowid_name(frozen, alias),
        parse_problem=problem,
    )


def read_catalog(connection: sqlite3.Connection) -> SqliteCatalog:
    """Everything to migrate from the `main` database of `connection`."""
    listed = _rows(connection, "PRAGMA main.table_list")
    sequences = _sequences(connection)
    tables, skipped = [], []
    for _, name, kind, _, without_rowid, strict in sorted(listed, key=lambda r: str(r[1])):
        name = str(name)
        if name.lower().startswith("sqlite_") or kind == "view":
            continue
        if kind == "shadow":
            skipped.append(f"{name} (shadow table of a virtual table; the virtual table is copied)")
            continue
        if kind not in ("table", "virtual"):
            continue
        tables.append(
            read_table(connection, name, str(kind), bool(without_rowid), bool(strict), sequences)
        )
    views = tuple(
        View(str(n), str(s))
        for n, s in _rows(connection, "SELECT name, sql FROM sqlite_schema WHERE type='view' ORDER BY name")
    )
    triggers = tuple(
        Trigger(str(n), str(t))
        for n, t in _rows(
            connection, "SELECT name, tbl_name FROM sqlite_schema WHERE type='trigger' ORDER BY name"
        )
    )
    return SqliteCatalog(tuple(tables), views, triggers, tuple(skipped))


__all__ = [
    "Column",
    "ForeignKey",
    "Index",
    "SqliteCatalog",
    "Table",
    "Trigger",
    "View",
    "quote_sqlite",
    "read_catalog",
]
