"""What SQLite schemas hold beyond tables, migrated in-process against a real PostgreSQL:
mixed-case names, keys over NULLs, orphaned foreign keys, CHECKs and defaults that do
and do not translate, views that read views, index names PostgreSQL would have taken."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tasks.core.errors import SourceError
from tasks.migrate.outcome import MigrationFailed, MigrationOutcome
from tasks.migrate.report import ReportContext, render
from tasks.migrate.source import watch_source
from tasks.migrate.target import describe, target_params
from tasks.migrate.transaction import migrate
from tests.conftest import PG_ADMIN, create_database, drop_database, pg_url

SCHEMA = """
CREATE TABLE "Parent" (
    Id INTEGER PRIMARY KEY AUTOINCREMENT,
    Code TEXT UNIQUE COLLATE NOCASE,
    flag BOOLEAN NOT NULL DEFAULT 0 CHECK (flag IN (0, 1)),
    created TEXT DEFAULT CURRENT_TIMESTAMP,
    n INT DEFAULT (random()) CHECK (typeof(n) = 'integer'),
    "user" INT CHECK ("user" >= 0)
);
CREATE TABLE child (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER REFERENCES "Parent" (Id) ON DELETE SET NULL,
    k TEXT
);
CREATE TABLE loose_pk (code TEXT PRIMARY KEY, v);
CREATE INDEX "Parent_pkey" ON "Parent" (created);
CREATE INDEX child_lower ON child (lower(k));
CREATE INDEX parent_flagged ON "Parent" (Code) WHERE flag = 1;
CREATE VIEW a_view AS SELECT id FROM b_view WHERE id > 1;
CREATE VIEW b_view AS SELECT id, k FROM child;
CREATE VIEW typed AS SELECT typeof(k) AS t FROM child;
CREATE TRIGGER child_touch AFTER INSERT ON child BEGIN SELECT 1; END;
"""


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[tuple[MigrationOutcome, str]]:
    path = tmp_path / "admin.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.executemany('INSERT INTO "Parent" (Code, flag, n, "user") VALUES (?, ?, ?, ?)',
                   [("a", 0, 1, 0), ("B", 1, 2, 5), ("c", 1, 3, 7)])
    db.execute('DELETE FROM "Parent" WHERE Id = 3')  # sqlite_sequence stays at 3
    db.executemany("INSERT INTO child (parent_id, k) VALUES (?, ?)", [(1, "x"), (2, "Y"), (99, "orphan")])
    db.executemany("INSERT INTO loose_pk VALUES (?, ?)", [("k1", 1), (None, 2), (None, 3)])
    db.commit()
    db.close()
    name = f"cbschema_{uuid.uuid4().hex[:10]}"
    create_database(name)
    watch = watch_source(path)
    try:
        params = target_params(pg_url(name))
        yield migrate(watch, params, describe(params)), name
    finally:
        watch.close()
        drop_database(name)


def steps(outcome: MigrationOutcome) -> dict[str, tuple[bool, str | None]]:
    return {f"{s.kind} {s.table}: {s.what}": (s.done, s.reason) for s in outcome.steps}


def test_schema_objects_are_created_or_reported(migrated: tuple[MigrationOutcome, str]) -> None:
    outcome, name = migrated
    assert outcome.committed and all(t.check.ok for t in outcome.tables)
    found = steps(outcome)
    assert found["check parent: CHECK (flag IN ( 0 , 1 ))"] == (True, None)
    assert found['check parent: CHECK ("user" >= 0)'] == (True, None)
    done, reason = found["check parent: CHECK (typeof ( n ) = 'integer')"]
    assert not done and "typeof() has no faithful counterpart" in (reason or "")
    done, reason = found["default parent: DEFAULT of n (random())"]
    assert not done and "random() has no faithful counterpart" in (reason or "")
    assert found["default parent: DEFAULT of flag (0)"] == (True, None)
    assert found["view typed: view typed"][0] is False
    assert found["view a_view: view a_view"] == (True, None)  # created after b_view, which it reads
    assert found["index parent: index Parent_pkey"] == (True, None)
    assert found["index child: index child_lower"] == (True, None)
    assert found["index parent: index parent_flagged"] == (True, None)
    done, reason = found["primary key loose_pk: PRIMARY KEY (code)"]
    assert not done and "null" in (reason or "").lower()
    [fallback] = [s.instead for s in outcome.steps if s.kind == "primary key" and s.table == "loose_pk"]
    assert fallback is not None and fallback.done
    [orphan_key] = [s for s in outcome.steps if s.kind == "foreign key" and s.table == "child"]
    assert orphan_key.done and "created NOT VALID" in orphan_key.notes[0]
    assert ("parent", "id", 3) in outcome.sequences  # AUTOINCREMENT's counter, not max(id) = 2

    text = render(outcome, ReportContext(dt.datetime.now(dt.UTC)))
    assert "### Not translated" in text and "typeof() has no faithful counterpart" in text
    assert "child_touch on child" in text
    assert "Id (was Id)" not in text and "id (was Id)" in text
    assert "COLLATE NOCASE" in text

    with psycopg.connect(**{**PG_ADMIN, "dbname": name}, autocommit=True) as pg:  # type: ignore[arg-type]
        assert pg.execute("SELECT relname FROM pg_class WHERE relname IN ('parent', 'Parent')").fetchall() == [("parent",)]
        assert pg.execute("INSERT INTO parent (code) VALUES ('d') RETURNING id, flag").fetchone() == (4, False)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            pg.execute("INSERT INTO child (parent_id, k) VALUES (12345, 'new orphan')")
        pg.execute("DELETE FROM parent WHERE id = 1")
        assert pg.execute("SELECT parent_id FROM child WHERE k = 'x'").fetchone() == (None,)  # ON DELETE SET NULL
        with pytest.raises(psycopg.errors.CheckViolation):
            pg.execute("UPDATE parent SET \"user\" = -1 WHERE id = 2")
        assert pg.execute("SELECT count(*) FROM a_view").fetchone() == (2,)
        # SQLite's index took the name PostgreSQL gives primary keys; the key got another
        assert pg.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'parent' AND indexname LIKE 'parent\\_pkey%'"
        ).fetchone() == (2,)


def test_a_write_to_sqlite_during_the_migration_stops_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "admin.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")  # the application keeps writing beside a reader
    db.executescript("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE b (id INTEGER PRIMARY KEY);")
    db.executemany("INSERT INTO a (v) VALUES (?)", [("x",), ("y",)])
    db.commit()
    name = f"cbschema_{uuid.uuid4().hex[:10]}"
    create_database(name)
    watch = watch_source(path)

    def meanwhile(message: str) -> None:
        if message.startswith("a:"):  # table a copied and compared: the application writes
            db.execute("UPDATE a SET v = 'changed' WHERE id = 1")
            db.commit()

    try:
        params = target_params(pg_url(name))
        with pytest.raises(MigrationFailed) as failed:
            migrate(watch, params, describe(params), meanwhile)
        assert isinstance(failed.value.error, SourceError)
        assert "the SQLite database changed while it was being migrated (table a)" in str(failed.value.error)
        with psycopg.connect(**{**PG_ADMIN, "dbname": name}) as pg:  # type: ignore[arg-type]
            assert pg.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        # Only a checkpoint, no change of the data: no refusal.
        watch.close()
        watch = watch_source(path)
        checkpoint = sqlite3.connect(path)

        def checkpointing(message: str) -> None:
            if message.startswith("a:"):
                checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        assert migrate(watch, params, describe(params), checkpointing).committed
        checkpoint.close()
    finally:
        watch.close()
        db.close()
        drop_database(name)
