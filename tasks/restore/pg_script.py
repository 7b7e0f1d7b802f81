"""The SQL that `psql` runs around a plain dump in `tasks.restore.postgres`'s one guarded
transaction: the prologue (BEGIN, the commit guard, the transaction's id, and for a live
database the emptying of everything a plain pg_dump emits, with `public` recreated as it
was), and the check block that counts every table's rows against the backup's record
before it allows the COMMIT.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import psycopg
from psycopg import sql

from tasks.core.errors import RestoreError
from tasks.sources.pg_privileges import PRIVILEGES_SQL
from tasks.sources.postgres import USER_TABLES_SQL, may_be_legacy
from tasks.sources.psql import COUNTS_TAG, XID_TAG

# How long the prologue waits for the application's locks before giving up cleanly.
LOCK_TIMEOUT = "60s"
COMMIT_FLAG = "chatbot_backup.commit"
_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"
_IN_SYSTEM = "IN (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))"


def new_token() -> str:
    return secrets.token_hex(8)


def _guard_name(token: str) -> str:
    return f"chatbot_backup_guard_{token}"


def _dollar_tag(body: str) -> str:
    while True:
        tag = f"$cb_{secrets.token_hex(4)}$"
        if tag not in body:
            return tag


# -- the prologue ----------------------------------------------------------------------


def guard_prologue(token: str, first: list[str] | None = None) -> list[str]:
    """BEGIN, `first` (event triggers go before any DDL of ours can fire them), the commit
    guard, and the notice that announces the transaction's id."""
    guard = _guard_name(token)
    refuse = (
        "the restore's transaction was asked to COMMIT before its check ran (a COMMIT, or "
        "SET CONSTRAINTS ALL IMMEDIATE, inside the dump); refused"
    )
    body = (
        f"BEGIN IF pg_catalog.current_setting('{COMMIT_FLAG}', true) IS DISTINCT FROM "
        f"'{token}' THEN RAISE EXCEPTION '{refuse.replace(chr(39), chr(39) * 2)}'; END IF; "
        "RETURN NULL; END"
    )
    tag = _dollar_tag(body)
    notice = (
        "BEGIN PERFORM pg_catalog.set_config('client_min_messages', 'notice', true); "
        f"RAISE NOTICE '{XID_TAG} {token} %', pg_catalog.txid_current(); END"
    )
    return [
        "BEGIN",
        "SET client_encoding = 'UTF8'",  # what this SQL is written in
        f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'",
        *(first or []),
        f"CREATE TEMPORARY TABLE {guard} (xid bigint NOT NULL) ON COMMIT DROP",
        f"CREATE FUNCTION pg_temp.{guard}() RETURNS trigger LANGUAGE plpgsql AS {tag}{body}{tag}",
        f"CREATE CONSTRAINT TRIGGER {guard} AFTER INSERT ON pg_temp.{guard} "
        f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.{guard}()",
        f"INSERT INTO pg_temp.{guard} VALUES (pg_catalog.txid_current())",
        f"DO {tag}{notice}{tag}",
    ]


# Database-level objects a plain pg_dump emits that `DROP SCHEMA … CASCADE` of every user
# schema leaves in place (they depend on nothing in a user schema), as rows of
# (statement that drops it, what it is, whether this role may drop it). `before`: drop
# them before the schemas; `after`: what is left after them.
_NOT_EXTENSION_MEMBER = (
    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = '{catalog}'::regclass "
    "AND d.objid = {alias}.oid AND d.deptype = 'e')"
)
_SUPERUSER = "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)"


def _function_in_system(column: str) -> str:
    return f"({column} = 0 OR {column} IN (SELECT oid FROM pg_catalog.pg_proc WHERE pronamespace {_IN_SYSTEM}))"


def _type_in_system(column: str) -> str:
    return f"{column} IN (SELECT oid FROM pg_catalog.pg_type WHERE typnamespace {_IN_SYSTEM})"


def _type_owned(column: str) -> str:
    return (
        f"(SELECT pg_catalog.pg_has_role(typowner, 'USAGE') FROM pg_catalog.pg_type "
        f"WHERE oid = {column})"
    )


_SURVIVING_FDW = (
    f"w.oid >= 16384 AND {_NOT_EXTENSION_MEMBER.format(catalog='pg_foreign_data_wrapper', alias='w')} "
    f"AND {_function_in_system('w.fdwhandler')} AND {_function_in_system('w.fdwvalidator')}"
)
_BEFORE_SCHEMAS = [
    (
        "SELECT format('DROP EVENT TRIGGER IF EXISTS %I', evtname), "
        "format('event trigger %s (owned by %s; only its owner or a superuser can drop and "
        "recreate it)', evtname, pg_catalog.pg_get_userbyid(evtowner)), "
        "pg_catalog.pg_has_role(evtowner, 'USAGE') FROM pg_catalog.pg_event_trigger e WHERE "
        + _NOT_EXTENSION_MEMBER.format(catalog="pg_event_trigger", alias="e")
    ),
    (
        "SELECT format('DROP PUBLICATION IF EXISTS %I', pubname), "
        "format('publication %s (owned by %s)', pubname, pg_catalog.pg_get_userbyid(pubowner)), "
        "pg_catalog.pg_has_role(pubowner, 'USAGE') FROM pg_catalog.pg_publication"
    ),
    (
        "SELECT NULL, format('subscription %s (a restore cannot replace a subscription inside "
        "its transaction without abandoning its replication slot: drop it first, or disable "
        "it and SET (slot_name = NONE))', subname), false FROM pg_catalog.pg_subscription "
        "WHERE subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
    ),
    (
        "SELECT NULL, format('extension %s (installed by %s; only a superuser can create it "
        "again)', extname, pg_catalog.pg_get_userbyid(extowner)), false "
        f"FROM pg_catalog.pg_extension e WHERE e.oid >= 16384 AND e.extnamespace NOT {_IN_SYSTEM} "
        f"AND NOT {_SUPERUSER} AND NOT coalesce((SELECT v.trusted FROM "
        "pg_catalog.pg_available_extension_versions v WHERE v.name = e.extname "
        "AND v.version = e.extversion), false)"
    ),
    (
        "SELECT NULL, format('%s large objects owned by other roles', count(*)), false "
        "FROM pg_catalog.pg_largeobject_metadata WHERE NOT pg_catalog.pg_has_role(lomowner, 'USAGE') "
        "AND NOT pg_catalog.current_setting('lo_compat_privileges')::boolean HAVING count(*) > 0"
    ),
]
_AFTER_SCHEMAS = [
    (
        # Left in place, one this role does not own is harmless (CREATE EXTENSION IF NOT
        # EXISTS) unless it has a comment: pg_dump writes COMMENT ON EXTENSION for it.
        "SELECT format('DROP EXTENSION IF EXISTS %I CASCADE', extname), "
        "format('extension %s (installed by %s; pg_dump writes COMMENT ON EXTENSION for it, "
        "which only its owner may run)', extname, pg_catalog.pg_get_userbyid(extowner)), "
        "pg_catalog.pg_has_role(extowner, 'USAGE') FROM pg_catalog.pg_extension "
        f"WHERE oid >= 16384 AND extnamespace {_IN_SYSTEM} AND (pg_catalog.pg_has_role(extowner, "
        "'USAGE') OR pg_catalog.obj_description(oid, 'pg_extension') IS NOT NULL)"
    ),
    (
        "SELECT format('DROP FOREIGN DATA WRAPPER IF EXISTS %I CASCADE', fdwname), "
        "format('foreign-data wrapper %s (owned by %s)', fdwname, pg_catalog.pg_get_userbyid(fdwowner)), "
        f"pg_catalog.pg_has_role(fdwowner, 'USAGE') FROM pg_catalog.pg_foreign_data_wrapper w WHERE {_SURVIVING_FDW}"
    ),
    (
        "SELECT format('DROP SERVER IF EXISTS %I CASCADE', srvname), "
        "format('foreign server %s (owned by %s)', srvname, pg_catalog.pg_get_userbyid(srvowner)), "
        "pg_catalog.pg_has_role(srvowner, 'USAGE') FROM pg_catalog.pg_foreign_server s WHERE s.oid >= 16384 AND "
        + _NOT_EXTENSION_MEMBER.format(catalog="pg_foreign_server", alias="s")
        + " AND (s.srvfdw IN (SELECT w.oid FROM pg_catalog.pg_foreign_data_wrapper w WHERE "
        + _SURVIVING_FDW
        + ") OR s.srvfdw IN (SELECT d.objid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension x "
        "ON x.oid = d.refobjid WHERE d.classid = 'pg_foreign_data_wrapper'::regclass AND d.deptype = 'e' "
        f"AND x.extnamespace {_IN_SYSTEM}))"
    ),
    (
        "SELECT format('DROP ACCESS METHOD IF EXISTS %I CASCADE', amname), "
        f"format('access method %s (only a superuser can drop and recreate it)', amname), {_SUPERUSER} "
        "FROM pg_catalog.pg_am a WHERE a.oid >= 16384 AND "
        + _NOT_EXTENSION_MEMBER.format(catalog="pg_am", alias="a")
        + f" AND {_function_in_system('a.amhandler')}"
    ),
    (
        "SELECT format('DROP CAST IF EXISTS (%s AS %s) CASCADE', "
        "pg_catalog.format_type(castsource, NULL), pg_catalog.format_type(casttarget, NULL)), "
        "format('cast from %s to %s', pg_catalog.format_type(castsource, NULL), "
        f"pg_catalog.format_type(casttarget, NULL)), {_type_owned('castsource')} OR "
        f"{_type_owned('casttarget')} FROM pg_catalog.pg_cast c WHERE c.oid >= 16384 AND "
        + _NOT_EXTENSION_MEMBER.format(catalog="pg_cast", alias="c")
        + f" AND {_type_in_system('castsource')} AND {_type_in_system('casttarget')} "
        f"AND {_function_in_system('castfunc')}"
    ),
    (
        "SELECT format('DROP TRANSFORM IF EXISTS FOR %s LANGUAGE %I CASCADE', "
        "pg_catalog.format_type(trftype, NULL), l.lanname), "
        "format('transform for %s language %s', pg_catalog.format_type(trftype, NULL), l.lanname), "
        f"{_type_owned('trftype')} FROM pg_catalog.pg_transform t JOIN pg_catalog.pg_language l "
        "ON l.oid = t.trflang WHERE t.oid >= 16384 AND "
        + _NOT_EXTENSION_MEMBER.format(catalog="pg_transform", alias="t")
        + f" AND {_type_in_system('trftype')} AND {_function_in_system('trffromsql')} "
        f"AND {_function_in_system('trftosql')}"
    ),
]


def _database_level_drops(connection: psycopg.Connection) -> tuple[list[str], list[str]]:
    """(statements before the schema drops, statements after); RestoreError, naming every
    object that this role cannot replace, before anything is touched."""
    problems: list[str] = []

    def collect(query: str) -> list[str]:
        statements = []
        for statement, what, droppable in connection.execute(query).fetchall():
            if droppable and statement:
                statements.append(str(statement))
            else:
                problems.append(str(what))
        return statements

    before = [s for query in _BEFORE_SCHEMAS for s in collect(query)]
    after = [s for query in _AFTER_SCHEMAS for s in collect(query)]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        database = connection.info.dbname
        raise RestoreError(
            f"cannot restore database {database}: it holds what the restoring role "
            f"{connection.info.user} cannot replace: {shown}; nothing was changed"
        )
    return before, after


def reset_prologue(connection: psycopg.Connection, token: str) -> bytes:
    """SQL that opens the guarded transaction and empties the live database, keeping
    `public`'s shape."""
    schemas = [
        str(row[0])
        for row in connection.execute(
            f"SELECT nspname FROM pg_namespace WHERE nspname NOT IN {_SYSTEM_SCHEMAS} "
            "AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%' "
            "ORDER BY nspname"
        )
    ]
    before, after = _database_level_drops(connection)
    statements = guard_prologue(token, before)
    statements += [
        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)).as_string(connection)
        for s in schemas
    ]
    statements.append("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata")
    statements += after
    statements.append("CREATE SCHEMA public")
    statements += _public_schema_shape(connection)
    return _script(statements)


def fresh_prologue(token: str) -> bytes:
    """The guarded transaction for a new, empty database (test-restore's scratch)."""
    return _script(guard_prologue(token))


def _script(statements: list[str]) -> bytes:
    return ("\n".join(f"{s};" for s in statements) + "\n").encode()


def _public_schema_shape(connection: psycopg.Connection) -> list[str]:
    """Owner, privileges and comment of today's `public`, to give the recreated one."""
    row = connection.execute(
        "SELECT pg_get_userbyid(nspowner), obj_description(oid, 'pg_namespace'), "
        "nspacl IS NULL, current_user FROM pg_namespace WHERE nspname = 'public'"
    ).fetchone()
    if row is None:
        return []
    owner, comment, default_acl, me = row
    statements = []
    if owner != me:
        statements.append(
            sql.SQL("ALTER SCHEMA public OWNER TO {}")
            .format(sql.Identifier(owner))
            .as_string(connection)
        )
    if not default_acl:
        grants = connection.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
            "a.privilege_type, a.is_grantable FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = 'public' ORDER BY 1 NULLS FIRST, 2"
        ).fetchall()
        for grantee, privilege, grantable in grants:
            who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
            statements.append(
                sql.SQL("GRANT {} ON SCHEMA public TO {}{}")
                .format(sql.SQL(privilege), who, sql.SQL(" WITH GRANT OPTION" if grantable else ""))
                .as_string(connection)
            )
    if comment is not None:
        statements.append(
            sql.SQL("COMMENT ON SCHEMA public IS {}")
            .format(sql.Literal(comment))
            .as_string(connection)
        )
    return statements


# -- the check block -----------------------------------------------------------------------


def _key_sql(schema: str, table: str) -> str:
    """tasks.sources.postgres.table_key, in SQL."""

    def part(name: str) -> str:
        return (
            f"CASE WHEN {name} ~ '[.\"]' THEN '\"' || replace({name}, '\"', '\"\"') || '\"' "
            f"ELSE {name} END"
        )

    return f"CASE WHEN {schema} = 'public' THEN {part(table)} ELSE {part(schema)} || '.' || {part(table)} END"


def _json_text(expected: dict[str, Any]) -> str:
    """The recorded counts as JSON with names in plain characters: jsonb refuses a \\u00fc
    escape in a database that is not UTF-8 (SQL_ASCII: "conversion between UTF8 and
    SQL_ASCII is not supported"), while the characters themselves reach it converted (or,
    in SQL_ASCII, as the bytes they are). A name that is no text (a lone surrogate) keeps
    its escape."""
    text = json.dumps(expected, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(expected)
    return text


def check_block(
    connection: psycopg.Connection,
    expected: dict[str, int] | None,
    token: str,
    privileges: dict[str, list[Any]] | None = None,
) -> bytes:
    """SQL run after the whole dump: it fails the transaction unless it is still the
    guarded one, every table holds the recorded rows (keys read as tasks.archive.manifest.model
    says) and, when `privileges` were recorded, has the recorded owner and privileges
    (tasks/sources/pg_privileges.py); it reports the rows it found, and allows the COMMIT."""
    guard = _guard_name(token)
    expected_sql = (
        "NULL" if expected is None else sql.Literal(_json_text(expected)).as_string(connection)
    )
    privileges_sql = (
        "NULL" if privileges is None else sql.Literal(_json_text(privileges)).as_string(connection)
    )
    legacy_ok = "true" if expected is not None and may_be_legacy(expected) else "false"
    legacy_key = "CASE WHEN s = 'public' THEN t ELSE s || '.' || t END"
    body = f"""
DECLARE
  expected jsonb := {expected_sql};
  recorded jsonb := {privileges_sql};
  granted jsonb;
  schemas text[] := '{{}}';
  tables text[] := '{{}}';
  counts bigint[] := '{{}}';
  found jsonb;
  legacy jsonb;
  base jsonb;
  r record;
  n bigint;
  k text;
  v text;
BEGIN
  IF pg_catalog.to_regclass('pg_temp.{guard}') IS NULL THEN
    RAISE EXCEPTION 'restore check: the dump ended the restore''s transaction itself (a COMMIT or ROLLBACK of its own)';
  END IF;
  EXECUTE 'SELECT count(*) FROM pg_temp.{guard} WHERE xid = pg_catalog.txid_current()' INTO n;
  IF n <> 1 THEN
    RAISE EXCEPTION 'restore check: the dump ended the restore''s transaction itself (a COMMIT or ROLLBACK of its own)';
  END IF;
  FOR r IN {USER_TABLES_SQL} LOOP
    EXECUTE pg_catalog.format('SELECT count(*) FROM %I.%I', r.nspname, r.relname) INTO n;
    schemas := schemas || r.nspname::text;
    tables := tables || r.relname::text;
    counts := counts || n;
  END LOOP;
  SELECT coalesce(jsonb_object_agg({_key_sql("s", "t")}, c), '{{}}'),
         coalesce(jsonb_object_agg({legacy_key}, c), '{{}}')
    INTO found, legacy FROM unnest(schemas, tables, counts) AS u(s, t, c);
  IF expected IS NOT NULL AND found <> expected THEN
    base := found;
    IF {legacy_ok} AND (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(legacy) x)
        = (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(expected) x) THEN
      base := legacy;
    END IF;
    IF base <> expected THEN
      FOR k, v IN SELECT key, value FROM jsonb_each_text(expected) ORDER BY key LOOP
        IF NOT base ? k THEN
          RAISE EXCEPTION 'restore check: table % is missing, the backup recorded % rows', k, v;
        END IF;
        IF (base ->> k)::bigint <> v::bigint THEN
          RAISE EXCEPTION 'restore check: table % has % rows, the backup recorded %', k, base ->> k, v;
        END IF;
      END LOOP;
      RAISE EXCEPTION 'restore check: % tables restored, the backup recorded %',
        (SELECT count(*) FROM jsonb_object_keys(base)), (SELECT count(*) FROM jsonb_object_keys(expected));
    END IF;
  END IF;
  IF recorded IS NOT NULL THEN
    SELECT coalesce(jsonb_object_agg({_key_sql("p.nspname", "p.relname")},
                                     jsonb_build_array(p.owner, to_jsonb(p.items))), '{{}}')
      INTO granted FROM ({PRIVILEGES_SQL}) p;
    IF granted <> recorded THEN
      FOR k IN SELECT key FROM jsonb_each(recorded) ORDER BY key LOOP
        IF NOT granted ? k THEN
          RAISE EXCEPTION 'restore check: table % is missing', k;
        END IF;
        IF granted -> k -> 0 <> recorded -> k -> 0 THEN
          RAISE EXCEPTION 'restore check: table % belongs to %, the backup recorded %',
            k, granted -> k ->> 0, recorded -> k ->> 0;
        END IF;
        IF granted -> k -> 1 <> recorded -> k -> 1 THEN
          RAISE EXCEPTION 'restore check: the privileges on table % are %, the backup recorded %',
            k, granted -> k -> 1, recorded -> k -> 1;
        END IF;
      END LOOP;
      RAISE EXCEPTION 'restore check: % tables have owners and privileges, the backup recorded %',
        (SELECT count(*) FROM jsonb_object_keys(granted)), (SELECT count(*) FROM jsonb_object_keys(recorded));
    END IF;
  END IF;
  PERFORM pg_catalog.set_config('client_min_messages', 'notice', true);
  RAISE NOTICE '{COUNTS_TAG} {token} %',
    (SELECT coalesce(jsonb_agg(jsonb_build_array(s, t, c)), '[]') FROM unnest(schemas, tables, counts) AS u(s, t, c))::text;
  PERFORM pg_catalog.set_config('{COMMIT_FLAG}', '{token}', true);
END
"""
    tag = _dollar_tag(body)
    # The dump set its own client_encoding; this block is UTF-8.
    return f"\nSET client_encoding = 'UTF8';\nDO {tag}{body}{tag};\n".encode()
