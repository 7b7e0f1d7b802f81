"""migrate-to-postgres through the real CLI: SQLite → a throwaway PostgreSQL database.

Every value is compared by the test's own reading of both databases (not the product's
normalisation): SQLite's value and PostgreSQL's, by the type the column got. Also: new
rows get ids past every old one (AUTOINCREMENT counter included), foreign keys and
CHECKs are enforced, ON DELETE CASCADE is kept; targets that are not empty or not
reachable are refused before the question and before anything is written; a value
PostgreSQL mangles (an event trigger on the target) is caught before COMMIT, exit 6,
the target left empty; `--update-env` switches `.env` and takes the first PostgreSQL
backup, which db-restore brings back exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import (
    PG_ADMIN,
    Platform,
    create_database,
    drop_database,
    pg_dump_text,
    pg_url,
)
from tests.support.chatbot_sqlite import make_chatbot_db

MESSAGES = 110_000


def pg_connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(**{**PG_ADMIN, "dbname": dbname}, autocommit=True)  # type: ignore[arg-type]


def relations(dbname: str) -> list[str]:
    with pg_connect(dbname) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%' AND relkind IN ('r', 'v', 'S', 'p', 'm')"
            )
        ]


# -- the test's own comparison ---------------------------------------------------------


def _float_bits(value: float) -> bytes:
    return struct.pack(">d", value)


def same_value(sqlite_value: Any, pg_value: Any, pg_type: str) -> bool:
    """Does PostgreSQL hold what SQLite held, for a column that became `pg_type`?"""
    if sqlite_value is None or pg_value is None:
        return sqlite_value is None and pg_value is None
    if pg_type == "bigint":
        return type(sqlite_value) is int and sqlite_value == pg_value
    if pg_type == "boolean":
        return sqlite_value in (0, 1) and bool(sqlite_value) is pg_value
    if pg_type == "double precision":
        return isinstance(sqlite_value, float) and _float_bits(sqlite_value) == _float_bits(pg_value)
    if pg_type == "numeric":
        if isinstance(sqlite_value, float) and pg_value.is_infinite():
            return float(pg_value) == sqlite_value
        if isinstance(sqlite_value, float):
            return float(pg_value) == sqlite_value and pg_value.as_tuple().exponent < 0
        return Decimal(sqlite_value) == pg_value and pg_value.as_tuple().exponent == 0
    if pg_type == "text":
        if isinstance(sqlite_value, float):
            return pg_value == repr(sqlite_value)
        return pg_value == (sqlite_value if isinstance(sqlite_value, str) else str(sqlite_value))
    if pg_type == "bytea":
        if isinstance(sqlite_value, str):
            sqlite_value = sqlite_value.encode("utf-8", "surrogateescape")
        elif isinstance(sqlite_value, (int, float)):
            sqlite_value = (repr(sqlite_value) if isinstance(sqlite_value, float) else str(sqlite_value)).encode()
        return bytes(pg_value) == bytes(sqlite_value)
    if pg_type == "jsonb":
        loaded = json.loads(pg_value) if isinstance(pg_value, str) else pg_value
        return json.loads(str(sqlite_value)) == loaded
    if pg_type == "timestamp with time zone":
        parsed = dt.datetime.fromisoformat(str(sqlite_value).replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed == pg_value
    if pg_type == "date":
        return dt.date.fromisoformat(sqlite_value) == pg_value
    raise AssertionError(f"unexpected type {pg_type}")


def pg_types(conn: psycopg.Connection, table: str) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    )


def compare_databases(sqlite_path: Path, dbname: str) -> dict[str, int]:
    """Every row and value of every SQLite table against PostgreSQL; rows per table.

    Rows are paired by primary key on both sides (byte order for text keys)."""
    source = sqlite3.connect(sqlite_path)
    source.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    tables = [
        r[0]
        for r in source.execute(
            "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    counted = {}
    with pg_connect(dbname) as pg:
        pg.execute("SET TimeZone = 'UTC'")
        for table in tables:
            types = pg_types(pg, table.lower())
            info = source.execute(f'PRAGMA table_xinfo("{table}")').fetchall()
            columns = [r[1] for r in info]
            keys = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
            assert keys, f"{table} has no primary key to pair rows by"
            mine = source.execute(
                f'SELECT {", ".join(chr(34) + c + chr(34) for c in columns)} FROM "{table}" '
                f'ORDER BY {", ".join(chr(34) + k + chr(34) for k in keys)}'
            ).fetchall()
            order = ", ".join(
                f'"{k.lower()}"' + (' COLLATE "C"' if types[k.lower()] == "text" else "") for k in keys
            )
            names = ", ".join('"' + c.lower() + '"' for c in columns)
            theirs = pg.execute(f'SELECT {names} FROM "{table.lower()}" ORDER BY {order}').fetchall()
            assert len(mine) == len(theirs), (table, len(mine), len(theirs))
            for row_a, row_b in zip(mine, theirs, strict=True):
                for column, a, b in zip(columns, row_a, row_b, strict=True):
                    assert same_value(a, b, types[column.lower()]), (table, column, a, b)
            counted[table] = len(mine)
    source.close()
    return counted


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def target() -> Iterator[str]:
    name = f"cbmig_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


def migrate(platform: Platform, dbname: str, *extra: str, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return platform.run("migrate-to-postgres", "--target-url", pg_url(dbname), *extra,
                        input=input, extra_env=env)


# -- the realistic database -------------------------------------------------------------------


@pytest.mark.slow
def test_the_platform_database_migrates_value_by_value(platform: Platform, target: str) -> None:
    make_chatbot_db(platform.db_path, messages=MESSAGES, conversations=3000)
    before = platform.db_path.read_bytes()
    started = time.monotonic()
    done = migrate(platform, target, "--yes")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    print(f"migrate-to-postgres, {MESSAGES} messages: {took:.1f} s")
    counts = compare_databases(platform.db_path, target)
    assert counts["messages"] > 100_000
    assert platform.db_path.read_bytes() == before  # the SQLite database is not touched

    # The report: stdout, the file, the final SQLite backup.
    [report] = (platform.backups / "reports").glob("migration_*.md")
    text = report.read_text()
    assert "COMMITTED" in text and f"| messages | messages | {counts['messages']} / {counts['messages']} |" in text
    assert text.strip() in done.stdout
    assert [p.name for p in platform.backup_files("admin_sqlite_*.db.gz")]
    assert "ADMIN_DB_TYPE=postgres" in done.stdout and "ADMIN_DATABASE_URL=postgresql://postgres@127.0.0.1" in text
    assert not (platform.root / ".env").exists()  # not without --update-env
    assert "messages_touch on messages" in text  # the trigger is listed as not migrated

    source = sqlite3.connect(platform.db_path)
    sequence = dict(source.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    highest = source.execute("SELECT max(id) FROM messages").fetchone()[0]
    assert sequence["messages"] > highest  # the newest rows were deleted
    with pg_connect(target) as pg:
        # Inserting works, and the id is past everything SQLite ever handed out.
        new_id = pg.execute(
            "INSERT INTO messages (conversation_id, role, content) VALUES (1, 'user', 'hi') RETURNING id"
        ).fetchone()[0]
        assert new_id == sequence["messages"] + 1
        agent = pg.execute("INSERT INTO agents (name) VALUES ('new one') RETURNING id, is_active, model, created_at").fetchone()
        assert agent[0] == sequence["agents"] + 1 and agent[1] is True and agent[2] == "gpt-4o-mini"
        assert agent[3] is not None
        # Foreign keys are enforced, CHECKs too, and ON DELETE CASCADE is kept.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            pg.execute("INSERT INTO messages (conversation_id, role, content) VALUES (999999, 'user', 'x')")
        with pytest.raises(psycopg.errors.CheckViolation):
            pg.execute("INSERT INTO messages (conversation_id, role, content) VALUES (1, 'robot', 'x')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            pg.execute("INSERT INTO agents (name) VALUES ('new one')")
        agent_id = pg.execute("SELECT agent_id FROM conversations WHERE id = 1").fetchone()[0]
        conversations = pg.execute("SELECT count(*) FROM conversations WHERE agent_id = %s", (agent_id,)).fetchone()[0]
        pg.execute("DELETE FROM agents WHERE id = %s", (agent_id,))
        assert pg.execute("SELECT count(*) FROM messages WHERE conversation_id = 1").fetchone()[0] == 0
        assert conversations > 0
        assert pg.execute("SELECT count(*) FROM agent_stats").fetchone()[0] > 0  # the view
        assert pg.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('messages_conversation', 'conversations_live')"
        ).fetchone()[0] == 2


def test_a_target_that_holds_tables_is_refused_before_anything(platform: Platform, target: str) -> None:
    make_chatbot_db(platform.db_path, messages=50)
    with pg_connect(target) as pg:
        pg.execute("CREATE TABLE keep_me (id int)")
        pg.execute("INSERT INTO keep_me VALUES (1)")
    done = migrate(platform, target)  # no --yes: it must not even ask
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "already holds 1 relation(s) (table public.keep_me)" in done.stderr
    assert "Are you sure" not in done.stdout
    assert relations(target) == ["keep_me"]
    assert not platform.backups.exists() or not any(platform.backups.iterdir())


def test_an_unreachable_target_is_refused_before_the_question(platform: Platform) -> None:
    make_chatbot_db(platform.db_path, messages=50)
    done = platform.run("migrate-to-postgres", "--target-url", "postgresql://postgres@127.0.0.1:9/nowhere")
    assert done.returncode == 3, done.stderr
    assert "cannot connect to PostgreSQL at 127.0.0.1:9/nowhere" in done.stderr
    assert "Are you sure" not in done.stdout
    assert not platform.backups.exists() or not any(platform.backups.iterdir())


def test_not_confirmed_writes_nothing(platform: Platform, target: str) -> None:
    make_chatbot_db(platform.db_path, messages=50)
    done = migrate(platform, target, input="no\n")
    assert done.returncode == 1, done.stderr
    assert "Are you sure you want to continue? (yes/no)" in done.stdout
    assert "not confirmed, nothing was written" in done.stderr
    assert relations(target) == []
    assert not platform.backups.exists() or not any(platform.backups.iterdir())
    done = migrate(platform, target, input="YES\n")
    assert done.returncode == 0, done.stderr
    assert "messages" in relations(target)


def test_the_help_says_what_it_does_every_flag_and_the_variables(platform: Platform) -> None:
    done = platform.run("migrate-to-postgres", "--help")
    assert done.returncode == 0
    for needed in ("--target-url", "--yes", "--update-env", "ADMIN_DB_PATH", "BACKUP_DIR",
                   "MIGRATE_TARGET_DATABASE_URL", "one transaction", "exit status"):
        assert needed in done.stdout, needed


# -- values that do not fit ---------------------------------------------------------------------

_ODD_SCHEMA = """
CREATE TABLE odd (
    id INTEGER PRIMARY KEY,
    count INTEGER,          -- text in an INTEGER column
    amount INTEGER,         -- a real among integers
    label TEXT,             -- a blob in a TEXT column
    note TEXT,              -- text with a NUL character
    raw TEXT,               -- text that is not UTF-8
    flag BOOLEAN,           -- 2 among 0/1
    doc JSON,               -- one value is no JSON, another repeats a key
    seen DATETIME,          -- values that do not parse
    mixed_zone TIMESTAMP,   -- naive and zoned times together
    clean_zone TIMESTAMP,   -- every value names its offset
    loose,                  -- no declared type, every storage class
    price DECIMAL(10,2)     -- integers and reals
);
"""


def make_odd_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(_ODD_SCHEMA)
    rows = [
        (1, 5, 10, "plain", "fine", "a", 0, '{"a": 1}', "2025-01-02 03:04:05", "2025-01-02 03:04:05",
         "2025-01-02T03:04:05Z", 1, 19.99),
        (2, "five", 11, b"\x00blob\xff", "nul\x00inside", "b", 1, "not json", "yesterday",
         "2025-01-02T03:04:05+02:00", "2025-06-01 12:00:00.123456-05:30", 2.5, 20),
        (3, None, 2.5, None, None, None, 2, '{"k": 1, "k": 2}', None, None, None, "text", None),
        (4, 7, None, "ünï", "ok", "c", None, None, "2025-13-01 00:00:00", None, None, b"\x01\x02", 0.5),
        (5, 8, 3, "x", "y", "d", 1, "[1, 2.50]", None, None, None, None, -3),
    ]
    db.executemany("INSERT INTO odd VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("INSERT INTO odd (id, raw) VALUES (6, CAST(x'ff6e6f74207574663821' AS TEXT))")
    db.commit()
    db.close()


def test_values_that_do_not_fit_are_kept_as_the_report_says(platform: Platform, target: str) -> None:
    make_odd_db(platform.db_path)
    done = migrate(platform, target, "--yes")
    assert done.returncode == 0, done.stderr
    with pg_connect(target) as pg:
        types = pg_types(pg, "odd")
    assert types == {
        "id": "bigint",
        "count": "text",
        "amount": "numeric",
        "label": "bytea",
        "note": "bytea",
        "raw": "bytea",
        "flag": "bigint",
        "doc": "text",
        "seen": "text",
        "mixed_zone": "text",
        "clean_zone": "timestamp with time zone",
        "loose": "bytea",
        "price": "numeric",
    }
    compare_databases(platform.db_path, target)
    text = done.stdout
    assert "## Values kept in another form" in text
    for column in ("odd.count", "odd.label", "odd.note", "odd.raw", "odd.loose"):
        assert f"`{column}`" in text, column
    assert "raw: 1 text value(s) are not valid UTF-8, the first at rowid 6" in text
    assert "declared 'BOOLEAN' but holds values other than 0/1" in text
    assert "declared 'JSON' but not every value is JSON that jsonb keeps" in text
    with pg_connect(target) as pg:
        # text in an INTEGER column: the integers kept as their decimal text, the text as it was
        assert pg.execute("SELECT count FROM odd ORDER BY id").fetchall() == [("5",), ("five",), (None,), ("7",), ("8",)] + [(None,)]
        assert pg.execute("SELECT raw FROM odd WHERE id = 6").fetchone()[0] == b"\xffnot utf8!"
        assert pg.execute("SELECT note FROM odd WHERE id = 2").fetchone()[0] == b"nul\x00inside"


# -- verification catches what the target does to the data --------------------------------------

_MANGLER = """
CREATE FUNCTION mangle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id = 4242 THEN NEW.content := NEW.content || ' (changed)'; END IF;
  RETURN NEW;
END $$;
CREATE FUNCTION add_mangler() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
    IF r.object_identity = 'public.messages' THEN
      EXECUTE 'CREATE TRIGGER mangle BEFORE INSERT ON public.messages FOR EACH ROW EXECUTE FUNCTION mangle()';
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER add_mangler ON ddl_command_end EXECUTE FUNCTION add_mangler();
"""


def test_a_value_changed_on_the_way_rolls_back_exit_6(platform: Platform, target: str) -> None:
    make_chatbot_db(platform.db_path, messages=6000)
    with pg_connect(target) as pg:
        pg.execute(_MANGLER)  # an event trigger is no table: the target counts as empty
    done = migrate(platform, target, "--yes")
    assert done.returncode == 6, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "verification failed: messages, rowid 4242, column content" in line
    assert "rolled back, nothing was committed" in line
    assert relations(target) == []
    [report] = (platform.backups / "reports").glob("migration_*.md")
    text = report.read_text()
    assert "ROLLED BACK" in text and "MISMATCH messages, rowid 4242, column content" in text
    assert "A new session sees the target empty." in text


# -- --update-env, the first PostgreSQL backup, and the round trip ------------------------------


def test_update_env_switches_and_the_migrated_database_round_trips(platform: Platform, target: str) -> None:
    make_chatbot_db(platform.db_path, messages=3000)
    env_file = platform.root / ".env"
    old = "# the platform\nADMIN_DB_TYPE=sqlite\nexport UPLOADS_DIR=./data/uploads\nOPENAI_KEY='sk-x'\n"
    env_file.write_text(old)
    env_file.chmod(0o640)
    done = migrate(platform, target, "--yes", "--update-env")
    assert done.returncode == 0, done.stderr
    [kept] = platform.root.glob(".env.before_migration_*")
    assert kept.read_text() == old and oct(kept.stat().st_mode & 0o777) == "0o640"
    new = env_file.read_text()
    assert new == old.replace("ADMIN_DB_TYPE=sqlite", "ADMIN_DB_TYPE=postgres") + f"ADMIN_DATABASE_URL={pg_url(target)}\n"
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"
    [first] = platform.backup_files("admin_postgres_*.sql.gz")
    assert f"First PostgreSQL backup: {first}" in done.stdout
    assert platform.backup_files("admin_sqlite_*.db.gz")

    # Now the installation runs on PostgreSQL (from .env): restore the first backup over a
    # changed database and get exactly the migrated one back.
    migrated = pg_dump_text(target)
    with pg_connect(target) as pg:
        pg.execute("DELETE FROM messages WHERE id < 100")
    restored = platform.run("db-restore", "--yes", str(first))
    assert restored.returncode == 0, restored.stderr
    assert pg_dump_text(target) == migrated
    again = platform.run("db-backup")
    assert again.returncode == 0, again.stderr
    compare_databases(platform.db_path, target)


def test_a_postgres_installation_is_not_migrated_again(platform: Platform, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    platform.set(monkeypatch, ADMIN_DB_TYPE="postgres", ADMIN_DATABASE_URL=pg_url(target))
    done = migrate(platform, target, "--yes")
    assert done.returncode == 3, done.stderr
    assert "ADMIN_DB_TYPE is postgres already" in done.stderr


def test_environment_overriding_env_file_is_said_loudly(platform: Platform, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_chatbot_db(platform.db_path, messages=100)
    platform.set(monkeypatch, ADMIN_DB_TYPE="sqlite")
    done = migrate(platform, target, "--yes", "--update-env")
    assert done.returncode == 3, done.stderr
    assert "migrated and committed, .env updated and the first PostgreSQL backup taken" in done.stderr
    assert "set in the environment and wins over .env" in done.stderr
    assert platform.backup_files("admin_postgres_*.sql.gz")
    assert "ADMIN_DB_TYPE=postgres" in (platform.root / ".env").read_text()
