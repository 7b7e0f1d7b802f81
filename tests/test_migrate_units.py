"""The migration's pure parts, as tables: affinity, type choice, values, SQL translation,
defaults, `.env` editing; plus the target checks and the `ps` hiding on real things."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tasks.core.errors import ConfigError
from tasks.migrate.canonical import canonical_pg, canonical_sqlite
from tasks.migrate.defaults import pg_default
from tasks.migrate.envfile import quote_value, update_env_file, updated_text
from tasks.migrate.expressions import translate_expression
from tasks.migrate.sqltext import parse_create_table, tokenize
from tasks.migrate.target import check_target
from tasks.migrate.types import ColumnFacts, Conversion, affinity, choose_type
from tasks.migrate.values import canonical_json, jsonb_problem, parse_timestamp, real_as_numeric
from tests.conftest import PG_ADMIN, create_database, drop_database, pg_url

# -- SQLite's affinity rules (datatype3.html, section 3.1 and its examples) -------------------


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("INT", "INTEGER"), ("INTEGER", "INTEGER"), ("TINYINT", "INTEGER"), ("BIGINT", "INTEGER"),
        ("UNSIGNED BIG INT", "INTEGER"), ("INT8", "INTEGER"), ("FLOATING POINT", "INTEGER"),
        ("CHARACTER(20)", "TEXT"), ("VARCHAR(255)", "TEXT"), ("NATIVE CHARACTER(70)", "TEXT"),
        ("NVARCHAR(100)", "TEXT"), ("TEXT", "TEXT"), ("CLOB", "TEXT"),
        ("BLOB", "BLOB"), ("", "BLOB"),
        ("REAL", "REAL"), ("DOUBLE", "REAL"), ("DOUBLE PRECISION", "REAL"), ("FLOAT", "REAL"),
        ("NUMERIC", "NUMERIC"), ("DECIMAL(10,5)", "NUMERIC"), ("BOOLEAN", "NUMERIC"),
        ("DATE", "NUMERIC"), ("DATETIME", "NUMERIC"), ("STRING", "NUMERIC"), ("JSON", "NUMERIC"),
    ],
)
def test_affinity_follows_sqlite(declared: str, expected: str) -> None:
    assert affinity(declared) == expected


def facts(declared: str, **counts: int) -> ColumnFacts:
    return ColumnFacts(declared=declared, counts=counts)


@pytest.mark.parametrize(
    ("column", "conversion"),
    [
        (ColumnFacts("INTEGER", {"integer": 3}, rowid_alias=True), Conversion.IDENTITY),
        (facts("INTEGER", integer=5), Conversion.BIGINT),
        (facts("INTEGER", integer=5, text=1), Conversion.TEXT_FROM_MIXED),
        (facts("INTEGER", integer=5, real=1), Conversion.NUMERIC),
        (facts("INTEGER", integer=5, blob=1), Conversion.BYTEA_FROM_MIXED),
        (facts("REAL", real=2), Conversion.DOUBLE),
        (facts("TEXT", text=2), Conversion.TEXT),
        (ColumnFacts("TEXT", {"text": 2}, text_fits=False), Conversion.BYTEA_FROM_MIXED),
        (facts("TEXT", text=2, blob=1), Conversion.BYTEA_FROM_MIXED),
        (facts("BLOB", blob=2), Conversion.BYTEA),
        (facts("", integer=1, real=1, text=1, blob=1), Conversion.BYTEA_FROM_MIXED),
        (facts("", integer=1), Conversion.BIGINT),
        (ColumnFacts("BOOLEAN", {"integer": 4}, only_0_1=True), Conversion.BOOLEAN),
        (ColumnFacts("BOOLEAN", {"integer": 4}, only_0_1=False), Conversion.BIGINT),
        (ColumnFacts("BOOLEAN", {"integer": 4, "text": 1}), Conversion.TEXT_FROM_MIXED),
        (ColumnFacts("JSON", {"text": 3, "integer": 1}, json_ok=True), Conversion.JSONB),
        (ColumnFacts("JSON", {"text": 3}, json_ok=False), Conversion.TEXT),
        (ColumnFacts("JSON", {"text": 3, "blob": 1}, json_ok=True), Conversion.BYTEA_FROM_MIXED),
        (ColumnFacts("DATETIME", {"text": 3}, timestamps="naive"), Conversion.TIMESTAMPTZ),
        (ColumnFacts("TIMESTAMP", {"text": 3}, timestamps="zoned"), Conversion.TIMESTAMPTZ),
        (ColumnFacts("DATETIME", {"text": 3}, timestamps=None), Conversion.TEXT),
        (ColumnFacts("DATETIME", {"text": 3, "integer": 1}, timestamps="naive"), Conversion.TEXT_FROM_MIXED),
        (ColumnFacts("DATETIME", {"integer": 3}), Conversion.BIGINT),
        (ColumnFacts("DATE", {"text": 3}, dates=True), Conversion.DATE),
        (facts("DECIMAL(10,2)", integer=2, real=2), Conversion.NUMERIC),
        (facts("DECIMAL(10,2)", integer=2), Conversion.NUMERIC),
        (facts("BOOLEAN"), Conversion.BOOLEAN),  # no values: the declaration decides
        (facts("DATETIME"), Conversion.TIMESTAMPTZ),
        (facts("VARCHAR(10)"), Conversion.TEXT),
        (facts(""), Conversion.BYTEA),
    ],
)
def test_the_type_keeps_every_value(column: ColumnFacts, conversion: Conversion) -> None:
    choice = choose_type(column)
    assert choice.conversion == conversion, choice.reason
    mixed = conversion in (Conversion.TEXT_FROM_MIXED, Conversion.BYTEA_FROM_MIXED)
    assert (choice.changed is not None) == mixed  # a changed representation is always said


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("real", "text"),
    [(1.5, "1.5"), (5.0, "5.0"), (1e20, "100000000000000000000.0"), (-0.0, "-0.0"),
     (0.1 + 0.2, "0.30000000000000004"), (float("inf"), "Infinity"), (1e-5, "0.00001")],
)
def test_reals_for_numeric_keep_their_value_and_a_fraction_digit(real: float, text: str) -> None:
    assert real_as_numeric(real) == text


def test_canonical_json_compares_json_by_value() -> None:
    assert canonical_json('{"b": 1, "a": [1.0, 1e2, 1.50]}') == canonical_json('{"a":[1,100,1.5],"b":1}')
    assert canonical_json('{"a": 1}') != canonical_json('{"a": "1"}')
    assert canonical_json('"\\u00e9"') == canonical_json('"é"')
    assert canonical_json(12) == canonical_json("12") and canonical_json(1.25) == canonical_json("1.25")
    assert canonical_json("[9007199254740993]") != canonical_json("[9007199254740992]")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"a": [1, {"b": null}]}', None), ("12", None), (3, None), (2.5, None), ('"x"', None),
        ('{"a": 1, "a": 2}', "repeats a key"), ('"nul \\u0000"', "\\u0000"), ("NaN", "not JSON"),
        ("not json", "does not parse"), ('"\\ud800"', "lone surrogate"), (float("inf"), "finite"),
        ("", "does not parse"),
    ],
)
def test_jsonb_problem(value: object, problem: str | None) -> None:
    found = jsonb_problem(value)
    assert (found is None) if problem is None else (found is not None and problem in found), found


@pytest.mark.parametrize(
    ("text", "utc", "zoned"),
    [
        ("2025-01-02 03:04:05", "2025-01-02T03:04:05+00:00", False),
        ("2025-01-02T03:04", "2025-01-02T03:04:00+00:00", False),
        ("2025-01-02 03:04:05.5Z", "2025-01-02T03:04:05.500000+00:00", True),
        ("2025-01-02 03:04:05+02:00", "2025-01-02T01:04:05+00:00", True),
        ("2025-01-02 03:04:05-0530", "2025-01-02T08:34:05+00:00", True),
        ("2025-02-30 00:00:00", None, None), ("01/02/2025 10:00", None, None), ("now", None, None),
        ("2025-01-02", None, None), ("2025-01-02 23:59:60", None, None),
        ("2025-01-02 03:04:05.1234567", None, None), (" 2025-01-02 03:04:05", None, None),
    ],
)
def test_only_unambiguous_timestamps_parse(text: str, utc: str | None, zoned: bool | None) -> None:
    parsed = parse_timestamp(text)
    if utc is None:
        assert parsed is None
    else:
        assert parsed is not None and parsed[0].astimezone(UTC).isoformat() == utc and parsed[1] is zoned


def test_canonical_forms_tell_classes_apart_and_match_across_sides() -> None:
    assert canonical_sqlite(5, Conversion.BIGINT) == canonical_pg(5, Conversion.BIGINT)
    assert canonical_sqlite(5, Conversion.BIGINT) != canonical_pg(5.0, Conversion.DOUBLE)
    assert canonical_sqlite(1, Conversion.BOOLEAN) == canonical_pg(True, Conversion.BOOLEAN)
    from decimal import Decimal

    assert canonical_sqlite(5.0, Conversion.NUMERIC) == canonical_pg(Decimal("5.0"), Conversion.NUMERIC)
    assert canonical_sqlite(5, Conversion.NUMERIC) == canonical_pg(Decimal("5"), Conversion.NUMERIC)
    assert canonical_sqlite(5.0, Conversion.NUMERIC) != canonical_pg(Decimal("5"), Conversion.NUMERIC)
    assert canonical_sqlite(5, Conversion.TEXT_FROM_MIXED) == canonical_pg("5", Conversion.TEXT_FROM_MIXED)
    assert canonical_sqlite("5", Conversion.TEXT) == canonical_pg("5", Conversion.TEXT)
    stamp = datetime(2025, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert canonical_sqlite("2025-01-02 03:04:05+02:00", Conversion.TIMESTAMPTZ) == canonical_pg(
        stamp, Conversion.TIMESTAMPTZ
    )


# -- SQL text ------------------------------------------------------------------------------


def test_create_table_text_gives_checks_autoincrement_collations_and_deferrable_keys() -> None:
    parsed = parse_create_table(
        """CREATE TABLE "t x" (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             [name] VARCHAR(10) COLLATE NOCASE CHECK (length(name) > 0) NOT NULL,
             `p` INT REFERENCES parent (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
             q TEXT DEFAULT 'a,b(c)' CHECK (q <> 'x'), -- comment, with a comma
             CONSTRAINT both CHECK (p > 0 OR q IS NOT NULL),
             FOREIGN KEY (q) REFERENCES other (code)
           )"""
    )
    assert [c.name for c in parsed.columns] == ["id", "name", "p", "q"]
    assert parsed.autoincrement
    assert parsed.columns[1].collation == "NOCASE"
    assert [len(c.checks) for c in parsed.columns] == [0, 1, 0, 1]
    assert len(parsed.checks) == 1
    assert [(r.child_columns, r.parent, r.deferred) for r in parsed.references] == [
        (("p",), "parent", True),
        (("q",), "other", False),
    ]


def _pg(tokens: str, **kw: object) -> tuple[str | None, str | None]:
    from tasks.migrate.plan import pg_name

    done = translate_expression(tokenize(tokens), pg_name, **kw)  # type: ignore[arg-type]
    return done.sql, done.problem


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("a == 1 AND b <> 'x''y'", "a = 1 AND b <> 'x''y'"),
        ('"Mixed" IS NOT NULL', '"mixed" IS NOT NULL'),
        ("a IS 5", "a IS NOT DISTINCT FROM 5"),
        ("a IS NOT b", "a IS DISTINCT FROM b"),
        ("ifnull(a, 0) > max(b, c, 1)", "coalesce(a, 0) > greatest(b, c, 1)"),
        ("x'00ff' = b", "'\\x00ff'::bytea = b"),
        ("CAST(a AS INTEGER) + 0x10", "CAST(a AS bigint) + 16"),
        ("flag IN (0, 1)", None),
        ("name LIKE 'a%'", "name ILIKE 'a%'"),
        ("name COLLATE NOCASE = 'a'", "name = 'a'"),
        ("t.flag = TRUE", None),
    ],
)
def test_expressions_translate(sqlite: str, postgres: str | None) -> None:
    sql_text, problem = _pg(sqlite, booleans=frozenset({"flag"}))
    assert problem is None
    if postgres is None:
        assert "(flag)::int" in (sql_text or "") or "(t.flag)::int" in (sql_text or ""), sql_text
    else:
        assert sql_text == postgres


@pytest.mark.parametrize(
    "sqlite", ["typeof(a) = 'text'", "a GLOB 'x*'", "a REGEXP 'x'", "datetime(a) > 0", "a = ?", "a ->> '$.x'"]
)
def test_what_has_no_counterpart_is_refused_with_a_reason(sqlite: str) -> None:
    sql_text, problem = _pg(sqlite)
    assert sql_text is None and problem


def test_known_columns_are_quoted_so_reserved_words_stay_names() -> None:
    sql_text, _ = _pg("user > 0 AND Offset < 3", quote_bare=frozenset({"user", "offset"}))
    assert sql_text == '"user" > 0 AND "offset" < 3'


@pytest.mark.parametrize(
    ("default", "conversion", "expected"),
    [
        ("0", Conversion.BOOLEAN, "false"), ("1", Conversion.BOOLEAN, "true"),
        ("TRUE", Conversion.BOOLEAN, "true"), ("'1'", Conversion.BOOLEAN, "true"),
        ("-5", Conversion.BIGINT, "-5"), ("0.7", Conversion.DOUBLE, "0.7"),
        ("'gpt'", Conversion.TEXT, "'gpt'"), ("5", Conversion.TEXT, "'5'"),
        ("CURRENT_TIMESTAMP", Conversion.TIMESTAMPTZ, "CURRENT_TIMESTAMP"),
        ("(datetime('now'))", Conversion.TIMESTAMPTZ, "CURRENT_TIMESTAMP"),
        ("CURRENT_TIMESTAMP", Conversion.TEXT, "to_char(timezone('UTC', now()), 'YYYY-MM-DD HH24:MI:SS')"),
        ("(strftime('%s', 'now'))", Conversion.BIGINT, "floor(extract(epoch from now()))::bigint"),
        ("'{}'", Conversion.JSONB, "'{}'"), ("x'00'", Conversion.BYTEA, "'\\x00'::bytea"),
        ("'2025-01-01 00:00:00'", Conversion.TIMESTAMPTZ, "'2025-01-01T00:00:00+00:00'"),
        ("NULL", Conversion.TEXT, None),
    ],
)
def test_defaults_translate_for_the_chosen_type(default: str, conversion: Conversion, expected: str | None) -> None:
    done = pg_default(default, conversion)
    assert done.sql == expected and done.problem is None


@pytest.mark.parametrize(
    ("default", "conversion"),
    [("2", Conversion.BOOLEAN), ("'yes'", Conversion.BOOLEAN), ("'soon'", Conversion.TIMESTAMPTZ),
     ("(random())", Conversion.BIGINT), ("'{bad'", Conversion.JSONB)],
)
def test_defaults_that_do_not_fit_say_why(default: str, conversion: Conversion) -> None:
    done = pg_default(default, conversion)
    assert done.sql is None and done.problem


# -- .env --------------------------------------------------------------------------------

URL = "postgresql://app:p%40ss%27w@db.internal:5432/chatbot_admin"


def test_env_text_changes_only_the_two_variables() -> None:
    old = "# comment\nexport ADMIN_DB_TYPE = sqlite\nOTHER=1\nADMIN_DATABASE_URL=old\nLAST=x"
    new = updated_text(old, {"ADMIN_DB_TYPE": "postgres", "ADMIN_DATABASE_URL": URL})
    assert new == f"# comment\nexport ADMIN_DB_TYPE = postgres\nOTHER=1\nADMIN_DATABASE_URL={URL}\nLAST=x"
    appended = updated_text("A=1", {"ADMIN_DB_TYPE": "postgres"})
    assert appended == "A=1\nADMIN_DB_TYPE=postgres\n"
    assert quote_value("postgresql://u:a b#c@h/d") == "'postgresql://u:a b#c@h/d'"
    with pytest.raises(ConfigError):
        quote_value("x'\\y z")


def test_env_file_is_replaced_atomically_and_the_old_one_kept(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SECRET=1\nADMIN_DB_TYPE=sqlite\n")
    env.chmod(0o640)
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    change = update_env_file(env, "postgresql://u:p w#@h/db", moment)
    assert change.kept_as == tmp_path / ".env.before_migration_20260102_030405"
    assert change.kept_as.read_text() == "SECRET=1\nADMIN_DB_TYPE=sqlite\n"
    assert env.read_text() == "SECRET=1\nADMIN_DB_TYPE=postgres\nADMIN_DATABASE_URL='postgresql://u:p w#@h/db'\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o640 == stat.S_IMODE(change.kept_as.stat().st_mode)
    assert change.shown == ("ADMIN_DB_TYPE=postgres", "ADMIN_DATABASE_URL=postgresql://u:***@h/db")
    again = update_env_file(env, "postgresql://u:x@h/db", moment)  # same second: a new name
    assert again.kept_as == tmp_path / ".env.before_migration_20260102_030406"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".env", ".env.before_migration_20260102_030405", ".env.before_migration_20260102_030406"
    ]


def test_a_missing_env_file_is_created_private(tmp_path: Path) -> None:
    change = update_env_file(tmp_path / ".env", URL, datetime.now(UTC))
    assert change.kept_as is None
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600


# -- the target, on the machine's PostgreSQL -------------------------------------------------


def test_a_target_that_is_not_utf8_or_not_writable_is_refused() -> None:
    name = f"cbmig_{uuid.uuid4().hex[:8]}"
    role = f"cbmig_role_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(**PG_ADMIN, autocommit=True) as admin:  # type: ignore[arg-type]
        admin.execute(f"CREATE DATABASE {name}_ascii ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
        admin.execute(f"CREATE ROLE {role} LOGIN")
    create_database(name)
    try:
        with pytest.raises(ConfigError, match="uses encoding SQL_ASCII"):
            check_target(pg_url(f"{name}_ascii"))
        with pytest.raises(ConfigError, match="may not create tables in schema public"):
            check_target(pg_url(name, user=role))
        assert check_target(pg_url(name)).schema == "public"
    finally:
        drop_database(name)
        drop_database(f"{name}_ascii")
        with psycopg.connect(**PG_ADMIN, autocommit=True) as admin:  # type: ignore[arg-type]
            admin.execute(f"DROP ROLE IF EXISTS {role}")


# -- ps ---------------------------------------------------------------------------------------


def test_the_password_leaves_the_process_arguments() -> None:
    url = "postgresql://app:s3cr%40t-pw@127.0.0.1:5432/db"
    code = textwrap.dedent(
        """
        import sys, time
        from tasks.migrate.cmdline import hide_in_cmdline
        print(hide_in_cmdline(sys.argv[2]), flush=True)
        time.sleep(30)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, "--target-url", url], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "True"
        shown = Path(f"/proc/{child.pid}/cmdline").read_bytes()
        seen_by_ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(child.pid)], capture_output=True, text=True).stdout
    finally:
        child.kill()
        child.wait()
    for text in (shown.decode(), seen_by_ps):
        assert "s3cr" not in text and "@t-pw" not in text, text
        assert "postgresql://app:" in text and "@127.0.0.1:5432/db" in text
