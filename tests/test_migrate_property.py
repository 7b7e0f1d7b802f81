"""Hypothesis: generated SQLite tables (odd names, loose declared types, values of every
storage class) migrate, verify, and read back value by value as the report says.

The migration's building blocks run in-process (tasks.migrate.transaction.migrate: the
same code the flow's task calls) against a throwaway database per example; the test
then compares every value with its own reading of both sides (tests.test_migrate). Bounded:
a fixed number of derandomized examples, no deadline.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.migrate.plan import SYSTEM_COLUMNS
from tasks.migrate.source import watch_source
from tasks.migrate.target import describe, target_params
from tasks.migrate.transaction import migrate
from tests.conftest import PG_ADMIN, create_database, drop_database, pg_url
from tests.test_migrate import pg_types, same_value

DECLARED = ["", "INT", "INTEGER", "TEXT", "BLOB", "REAL", "NUMERIC", "BOOLEAN", "JSON", "DATETIME",
            "VARCHAR(10)", "FLOATING POINT", "STRING", "DECIMAL(5,2)", "DATE", "TIMESTAMP", "ANY"]
NAME_CHARS = list("abcxyzABCXYZ_ -'\"é日1.$")

names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=12).filter(
    lambda n: not n.lower().startswith("sqlite_")
    and n.lower() not in SYSTEM_COLUMNS | {"rowid", "oid", "_rowid_"}
)
values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, -1]),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=12),
    st.sampled_from(['{"a": 1}', "[1, 2.5, null]", '{"k": 1, "k": 2}', "12", "2025-01-02 03:04:05",
                     "2025-01-02T03:04:05Z", "2025-02-30 00:00:00", "2025-01-02", "nul\x00", "", "true"]),
)


@st.composite
def tables(draw: st.DrawFn) -> list[tuple[str, list[tuple[str, str]], bool, list[list[object]]]]:
    table_names = draw(st.lists(names, min_size=1, max_size=3, unique_by=str.lower))
    found = []
    for table in table_names:
        columns = draw(
            st.lists(st.tuples(names, st.sampled_from(DECLARED)), min_size=1, max_size=5,
                     unique_by=lambda c: c[0].lower())
        )
        keyed = draw(st.booleans())
        rows = draw(st.lists(st.lists(values, min_size=len(columns), max_size=len(columns)), max_size=12))
        found.append((table, columns, keyed, rows))
    return found


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def build(path: Path, spec: list[tuple[str, list[tuple[str, str]], bool, list[list[object]]]]) -> None:
    db = sqlite3.connect(path)
    for table, columns, keyed, rows in spec:
        parts = (["id INTEGER PRIMARY KEY"] if keyed and all(c.lower() != "id" for c, _ in columns) else [])
        parts += [f"{q(c)} {t}".strip() for c, t in columns]
        db.execute(f"CREATE TABLE {q(table)} ({', '.join(parts)})")
        marks = ", ".join("?" for _ in columns)
        db.executemany(f"INSERT INTO {q(table)} ({', '.join(q(c) for c, _ in columns)}) VALUES ({marks})", rows)
    db.commit()
    db.close()


def read_back(path: Path, dbname: str) -> int:
    source = sqlite3.connect(path)
    source.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    compared = 0
    with psycopg.connect(**{**PG_ADMIN, "dbname": dbname}) as pg:  # type: ignore[arg-type]
        pg.execute("SET TimeZone = 'UTC'")
        for (table,) in source.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall():
            columns = [r[1] for r in source.execute(f"PRAGMA table_info({q(table)})")]
            pg_table = "".join(c.lower() if "A" <= c <= "Z" else c for c in table)
            types = pg_types(pg, pg_table)
            assert len(types) == len(columns), (table, types)
            mine = source.execute(f"SELECT {', '.join(q(c) for c in columns)} FROM {q(table)} ORDER BY rowid").fetchall()
            lowered = ["".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in c) for c in columns]
            theirs = pg.execute(
                f"SELECT {', '.join(q(c) for c in lowered)} FROM {q(pg_table)} ORDER BY ctid"
            ).fetchall()
            assert len(mine) == len(theirs)
            for a_row, b_row in zip(mine, theirs, strict=True):
                for column, a, b in zip(lowered, a_row, b_row, strict=True):
                    assert same_value(a, b, types[column]), (table, column, a, b, types[column])
                    compared += 1
    source.close()
    return compared


@pytest.mark.slow
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(spec=tables())
def test_generated_tables_migrate_and_verify(tmp_path_factory: pytest.TempPathFactory, spec: list) -> None:  # type: ignore[type-arg]
    folder = tmp_path_factory.mktemp("prop")
    path = folder / "admin.db"
    build(path, spec)
    dbname = f"cbprop_{uuid.uuid4().hex[:10]}"
    create_database(dbname)
    watch = watch_source(path)
    try:
        params = target_params(pg_url(dbname))
        outcome = migrate(watch, params, describe(params))
        assert outcome.committed
        assert all(t.check.ok for t in outcome.tables)
        assert len(outcome.tables) == len(spec)
        read_back(path, dbname)
    finally:
        watch.close()
        drop_database(dbname)
