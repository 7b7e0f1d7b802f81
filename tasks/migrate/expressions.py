"""SQLite expressions (CHECK, partial-index WHERE, index expressions, view bodies,
defaults) made PostgreSQL, token by token.

What has no faithful PostgreSQL counterpart is refused with a reason rather than
guessed, and what translates is still tried inside a savepoint by the caller, so that
PostgreSQL itself has the last word. Nothing here touches a database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.migrate.sqltext import Token, closing_paren, identifier_value, split_top_level
from tasks.migrate.types import affinity

_KEYWORDS = frozenset(
    """AND OR NOT IN IS NULL BETWEEN CASE WHEN THEN ELSE END CAST AS ESCAPE EXISTS SELECT FROM
    WHERE GROUP BY HAVING ORDER LIMIT OFFSET JOIN LEFT RIGHT INNER OUTER CROSS NATURAL ON USING
    UNION ALL DISTINCT INTERSECT EXCEPT ASC DESC NULLS FIRST LAST WITH RECURSIVE VALUES
    CURRENT_TIMESTAMP CURRENT_DATE CURRENT_TIME FILTER OVER PARTITION WINDOW ROWS RANGE
    UNBOUNDED PRECEDING FOLLOWING CURRENT ROW""".split()
)
# PostgreSQL reserved words a SQLite schema may use as bare names (`user`, `offset`...).
PG_RESERVED = frozenset(
    """ALL ANALYSE ANALYZE AND ANY ARRAY AS ASC ASYMMETRIC AUTHORIZATION BINARY BOTH CASE CAST
    CHECK COLLATE COLLATION COLUMN CONCURRENTLY CONSTRAINT CREATE CROSS CURRENT_CATALOG
    CURRENT_DATE CURRENT_ROLE CURRENT_SCHEMA CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER DEFAULT
    DEFERRABLE DESC DISTINCT DO ELSE END EXCEPT FALSE FETCH FOR FOREIGN FREEZE FROM FULL GRANT
    GROUP HAVING ILIKE IN INITIALLY INNER INTERSECT INTO IS ISNULL JOIN LATERAL LEADING LEFT
    LIKE LIMIT LOCALTIME LOCALTIMESTAMP NATURAL NOT NOTNULL NULL OFFSET ON ONLY OR ORDER OUTER
    OVERLAPS PLACING PRIMARY REFERENCES RETURNING RIGHT SELECT SESSION_USER SIMILAR SOME
    SYMMETRIC SYSTEM_USER TABLE TABLESAMPLE THEN TO TRAILING TRUE UNION UNIQUE USER USING
    VARIADIC VERBOSE WHEN WHERE WINDOW WITH""".split()
)
_FUNCTION_NAMES = {"IFNULL": "coalesce", "INSTR": "strpos", "SUBSTRING": "substr"}
# SQLite functions whose PostgreSQL namesake differs in meaning or does not exist.
_UNTRANSLATABLE_FUNCTIONS = frozenset(
    """DATE TIME DATETIME JULIANDAY UNIXEPOCH STRFTIME TYPEOF PRINTF FORMAT HEX UNHEX QUOTE
    RANDOM RANDOMBLOB ZEROBLOB LIKELY UNLIKELY LIKELIHOOD IIF TOTAL GROUP_CONCAT CHAR UNICODE
    GLOB LIKE SOUNDEX CHANGES TOTAL_CHANGES LAST_INSERT_ROWID SQLITE_VERSION SQLITE_SOURCE_ID
    LOAD_EXTENSION INSTR_BYTES OCTET_LENGTH""".split()
)
_NO_COUNTERPART = ("GLOB", "REGEXP", "MATCH")


def quote_pg(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pg_cast_type(words: Sequence[str]) -> str:
    """The PostgreSQL type for `CAST(x AS <words>)`, by SQLite's affinity rules."""
    return {
        "INTEGER": "bigint",
        "TEXT": "text",
        "BLOB": "bytea",
        "REAL": "double precision",
        "NUMERIC": "numeric",
    }[affinity(" ".join(words))]


@dataclass(frozen=True)
class Translation:
    """`sql` when the expression translated, else `problem` says why not."""

    sql: str | None
    problem: str | None = None
    notes: tuple[str, ...] = ()


def _join(parts: list[str]) -> str:
    out = ""
    for part in parts:
        call = part == "(" and bool(out) and (out[-1].isalnum() or out[-1] in '_"')
        if not out or out.endswith(("(", ".")) or part in (")", ",", ".") or call:
            out += part
        else:
            out += " " + part
    return out


def translate_expression(
    tokens: Sequence[Token],
    rename: Callable[[str], str],
    *,
    quote_bare: frozenset[str] = frozenset(),
    booleans: frozenset[str] = frozenset(),
) -> Translation:
    """SQLite expression tokens as PostgreSQL text.

    `rename` maps a SQLite name to its PostgreSQL name (the caller's naming rule).
    Quoted names are always renamed and quoted; bare words are renamed and quoted when
    their lower-cased form is in `quote_bare` (known columns), else left for PostgreSQL
    to fold. A reference to a column in `booleans` (0/1 in SQLite, boolean now) is read
    as `(col)::int`, so comparisons written against 0 and 1 keep their meaning.
    """
    out: list[str] = []
    notes: list[str] = []
    cast_depths: list[int] = []  # paren depths of open CAST( groups
    depth = 0
    index = 0
    items = list(tokens)
    while index < len(items):
        token = items[index]
        following = items[index + 1] if index + 1 < len(items) else None
        if token.kind == "param":
            return Translation(None, "it uses a bound parameter")
        if token.kind == "blob":
            out.append(f"'\\x{token.value}'::bytea")
        elif token.kind == "str":
            out.append(token.text)
        elif token.kind == "num":
            out.append(str(int(token.text, 16)) if token.text.lower().startswith("0x") else token.text)
        elif token.kind == "op":
            if token.text in ("->", "->>"):
                return Translation(None, f"SQLite's JSON operator {token.text} has no faithful counterpart")
            out.append("=" if token.text == "==" else token.text)
        elif token.kind == "(":
            depth += 1
            out.append("(")
        elif token.kind == ")":
            if cast_depths and cast_depths[-1] == depth:
                cast_depths.pop()
            depth -= 1
            out.append(")")
        elif token.kind in (",", "."):
            out.append(token.kind)
        elif token.kind == ";":
            pass
        elif token.kind == "word" and following is not None and following.kind == "(":
            name = token.value
            if name in _UNTRANSLATABLE_FUNCTIONS:
                return Translation(None, f"SQLite's {token.text}() has no faithful counterpart")
            if name == "CAST":
                cast_depths.append(depth + 1)
                out.append("CAST")
            elif name in ("MIN", "MAX"):
                arguments = split_top_level(items[index + 2 : closing_paren(items, index + 1)])
                many = len(arguments) > 1
                out.append(("least" if name == "MIN" else "greatest") if many else name.lower())
            elif name in _KEYWORDS or name in ("IN", "EXISTS", "VALUES"):
                out.append(name)
            else:
                out.append(_FUNCTION_NAMES.get(name, token.text))
        elif token.kind == "word" and token.value == "AS" and cast_depths and cast_depths[-1] == depth:
            end = index + 1
            words = []
            while end < len(items) and items[end].kind != ")":
                if items[end].kind in ("word", "id"):
                    words.append(identifier_value(items[end]))
                end += 1
            out.append(f"AS {pg_cast_type(words)}")
            index = end
            continue
        elif token.kind == "word" and token.value in _NO_COUNTERPART:
            return Translation(None, f"SQLite's {token.value} operator has no faithful counterpart")
        elif token.kind == "word" and token.value == "COLLATE":
            if following is not None:
                notes.append(f"COLLATE {identifier_value(following)} dropped")
            index += 2
            continue
        elif token.kind == "word" and token.value == "LIKE":
            out.append("ILIKE")
            notes.append("LIKE became ILIKE (SQLite's LIKE ignores ASCII case)")
        elif token.kind == "word" and token.value in ("TRUE", "FALSE"):
            out.append("1" if token.value == "TRUE" else "0")
        elif token.kind == "word" and token.value == "IS":
            negated = following is not None and following.is_word("NOT")
            after = items[index + (2 if negated else 1)] if index + (2 if negated else 1) < len(items) else None
            if after is not None and after.is_word("NULL"):
                out.append("IS NOT" if negated else "IS")
            else:
                out.append("IS DISTINCT FROM" if negated else "IS NOT DISTINCT FROM")
            index += 2 if negated else 1
            continue
        elif token.kind == "word" and token.value in _KEYWORDS and token.value.lower() not in quote_bare:
            out.append(token.value)
        elif token.is_name:
            original = identifier_value(token)
            renamed = rename(original)
            quoted = token.kind == "id" or renamed.lower() in quote_bare or renamed != original
            text = quote_pg(renamed) if quoted else token.text
            is_qualifier = following is not None and following.kind == "."
            if renamed in booleans and not is_qualifier:
                if len(out) >= 2 and out[-1] == ".":
                    qualifier = out[-2]
                    del out[-2:]
                    text = f"{qualifier}.{text}"
                out.append(f"({text})::int")
            else:
                out.append(text)
        else:
            return Translation(None, f"cannot read {token.text!r}")
        index += 1
    return Translation(_join(out), None, tuple(notes))
