"""What each SQLite column really holds: counts of every storage class, and the checks
the type decision needs (only 0/1? valid JSON for jsonb? timestamps that parse?).

The counts come from one aggregate scan per table in SQLite itself (`typeof()`); JSON,
timestamp and date columns are then read value by value in Python, because jsonb and
timestamptz accept more than is safe (duplicate keys, `now`, `01/02/2024`). Text that
is not valid UTF-8 cannot be seen from SQL: `invalid_utf8` finds it, and the copy calls
it when SQLite's text does not decode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from tasks.migrate.catalog import Column, Table, quote_sqlite
from tasks.migrate.types import CLASSES, ColumnFacts, affinity, declared_intent
from tasks.migrate.values import jsonb_problem, parse_date, parse_timestamp

_COLUMNS_PER_SCAN = 40


@dataclass(frozen=True)
class ColumnProfile:
    counts: dict[str, int]
    first: dict[str, int | None]  # rowid of the first value of each class (rowid tables)
    not_0_1: int = 0
    text_with_nul: int = 0
    invalid_utf8: int = 0
    json_ok: bool = False
    timestamps: str | None = None
    dates: bool = False
    first_odd: int | None = None  # rowid of the first value that decided against the intent

    def facts(self, column: Column, rowid_alias: bool) -> ColumnFacts:
        return ColumnFacts(
            declared=column.declared,
            counts=dict(self.counts),
            rowid_alias=rowid_alias,
            only_0_1=self.not_0_1 == 0,
            text_fits=self.text_with_nul == 0 and self.invalid_utf8 == 0,
            json_ok=self.json_ok,
            timestamps=self.timestamps,
            dates=self.dates,
        )


@dataclass(frozen=True)
class TableProfile:
    rows: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)


def _scan_expressions(column: str, rowid: str | None) -> list[str]:
    q = quote_sqlite(column)
    parts = [f"sum(typeof({q})='{kind}')" for kind in CLASSES]
    if rowid is not None:
        r = quote_sqlite(rowid)
        parts += [f"min(CASE WHEN typeof({q})='{kind}' THEN {r} END)" for kind in CLASSES]
    else:
        parts += ["NULL"] * len(CLASSES)
    parts.append(f"sum(typeof({q})='integer' AND {q} NOT IN (0, 1))")
    parts.append(f"sum(typeof({q})='text' AND instr(CAST({q} AS BLOB), x'00') > 0)")
    return parts


def _int(value: object) -> int:
    return int(value) if value is not None else 0  # type: ignore[call-overload]


def _checked_values(
    connection: sqlite3.Connection, table: Table, column: Column
) -> Iterator[tuple[int | None, object]]:
    """Non-NULL values of one column with their rowids, streamed (sqlite3.OperationalError
    when some text does not decode: the caller then leaves the column unchecked)."""
    rowid = quote_sqlite(table.rowid_name) if table.rowid_name else "NULL"
    q = quote_sqlite(column.name)
    cursor = connection.execute(
        f"SELECT {rowid}, {q} FROM {quote_sqlite(table.name)} WHERE {q} IS NOT NULL"
    )
    while batch := cursor.fetchmany(2000):
        yield from batch


def _json_check(values: Iterable[tuple[int | None, object]]) -> tuple[bool, int | None]:
    for rowid, value in values:
        if jsonb_problem(value) is not None:
            return False, rowid
    return True, None


def _timestamp_check(values: Iterable[tuple[int | None, object]]) -> tuple[str | None, int | None]:
    forms: set[bool] = set()
    for rowid, value in values:
        parsed = parse_timestamp(value) if isinstance(value, str) else None
        if parsed is None:
            return None, rowid
        forms.add(parsed[1])
        if len(forms) > 1:
            return None, rowid  # some name their offset, some do not: ambiguous
    return ("zoned" if forms == {True} else "naive"), None


def _date_check(values: Iterable[tuple[int | None, object]]) -> tuple[bool, int | None]:
    for rowid, value in values:
        if not isinstance(value, str) or parse_date(value) is None:
            return False, rowid
    return True, None


def profile_table(
    connection: sqlite3.Connection, table: Table, invalid: dict[str, tuple[int, int | None]] | None = None
) -> TableProfile:
    """One aggregate scan (per 40 columns), then the value checks of typed columns."""
    invalid = invalid or {}
    name = quote_sqlite(table.name)
    rows = _int(connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
    columns: dict[str, ColumnProfile] = {}
    for start in range(0, len(table.columns), _COLUMNS_PER_SCAN):
        chunk = table.columns[start : start + _COLUMNS_PER_SCAN]
        expressions = [e for c in chunk for e in _scan_expressions(c.name, table.rowid_name)]
        result = connection.execute(f"SELECT {', '.join(expressions)} FROM {name}").fetchone()
        width = 2 * len(CLASSES) + 2
        for offset, column in enumerate(chunk):
            values = result[offset * width : (offset + 1) * width]
            counts = {kind: _int(values[i]) for i, kind in enumerate(CLASSES)}
            first = {kind: values[len(CLASSES) + i] for i, kind in enumerate(CLASSES)}
            bad_utf8, first_bad = invalid.get(column.name, (0, None))
            profile = ColumnProfile(
                counts=counts,
                first=first,
                not_0_1=_int(values[-2]),
                text_with_nul=_int(values[-1]),
                invalid_utf8=bad_utf8,
                first_odd=first_bad,
            )
            columns[column.name] = _typed_checks(connection, table, column, profile)
    return TableProfile(rows, columns)


def _typed_checks(
    connection: sqlite3.Connection, table: Table, column: Column, profile: ColumnProfile
) -> ColumnProfile:
    if affinity(column.declared) != "NUMERIC" or profile.invalid_utf8:
        return profile
    intent = declared_intent(column.declared)
    if intent not in ("json", "timestamp", "date"):
        return profile
    held = {kind for kind, count in profile.counts.items() if count}
    if not held or "blob" in held:
        return profile
    if intent != "json" and held != {"text"}:
        return profile
    values = _checked_values(connection, table, column)
    try:
        if intent == "json":
            ok, odd = _json_check(values)
            return replace(profile, json_ok=ok, first_odd=odd)
        if intent == "timestamp":
            form, odd = _timestamp_check(values)
            return replace(profile, timestamps=form, first_odd=odd)
        ok, odd = _date_check(values)
        return replace(profile, dates=ok, first_odd=odd)
    except sqlite3.OperationalError as exc:
        if "decode" in str(exc).lower():
            return profile  # text that is not UTF-8: the copy finds it and widens the column
        raise


def invalid_utf8(connection: sqlite3.Connection, table: Table) -> dict[str, tuple[int, int | None]]:
    """Per column: how many text values are not valid UTF-8, and the first one's rowid."""
    found: dict[str, tuple[int, int | None]] = {}
    rowid = quote_sqlite(table.rowid_name) if table.rowid_name else "NULL"
    for column in table.columns:
        q = quote_sqlite(column.name)
        count, first = 0, None
        cursor = connection.execute(
            f"SELECT {rowid}, CAST({q} AS BLOB) FROM {quote_sqlite(table.name)} WHERE typeof({q})='text'"
        )
        for row_id, data in cursor:
            try:
                bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                count += 1
                first = row_id if first is None else first
        if count:
            found[column.name] = (count, first)
    return found
