"""SQLite DEFAULT expressions for a column of the chosen PostgreSQL type.

Literals, booleans as 0/1, blobs, CURRENT_TIMESTAMP/_DATE/_TIME and the usual
`datetime('now')`, `date('now')`, `strftime('%s','now')` calls translate; a text column
keeps SQLite's own UTC text format for "now". What does not fit the chosen type (2 for
a boolean, 'soon' for a timestamp) or has no counterpart (random()) comes back with the
reason instead, and is reported, never silently dropped.
"""

from __future__ import annotations

from tasks.migrate.expressions import Translation, translate_expression
from tasks.migrate.plan import pg_name
from tasks.migrate.sqltext import SqlTextError, Token, tokenize
from tasks.migrate.types import Conversion
from tasks.migrate.values import jsonb_problem, parse_date, parse_timestamp

_UTC_NOW = "timezone('UTC', now())"
_NOW_TEXT = {
    "CURRENT_TIMESTAMP": f"to_char({_UTC_NOW}, 'YYYY-MM-DD HH24:MI:SS')",
    "CURRENT_DATE": f"to_char({_UTC_NOW}, 'YYYY-MM-DD')",
    "CURRENT_TIME": f"to_char({_UTC_NOW}, 'HH24:MI:SS')",
}
_TEXTUAL = (Conversion.TEXT, Conversion.TEXT_FROM_MIXED)
_NUMBERS = (Conversion.BIGINT, Conversion.IDENTITY, Conversion.DOUBLE, Conversion.NUMERIC)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _now_default(keyword: str, conversion: Conversion) -> Translation:
    if conversion == Conversion.TIMESTAMPTZ and keyword == "CURRENT_TIMESTAMP":
        return Translation("CURRENT_TIMESTAMP")
    if conversion == Conversion.DATE and keyword == "CURRENT_DATE":
        return Translation(f"({_UTC_NOW})::date")
    if conversion in _TEXTUAL:
        return Translation(_NOW_TEXT[keyword], notes=("the same UTC text SQLite writes",))
    return Translation(None, f"{keyword} does not fit a {conversion} column")


def _unwrap(tokens: list[Token]) -> list[Token]:
    while len(tokens) >= 2 and tokens[0].kind == "(" and tokens[-1].kind == ")":
        tokens = tokens[1:-1]
    return tokens


def _call(tokens: list[Token]) -> tuple[str, list[str]] | None:
    """`name('a', 'b')` with string arguments only → (NAME, ['a', 'b'])."""
    if len(tokens) < 3 or tokens[0].kind != "word" or tokens[1].kind != "(" or tokens[-1].kind != ")":
        return None
    arguments = [t for t in tokens[2:-1] if t.kind != ","]
    if not all(t.kind == "str" for t in arguments):
        return None
    return tokens[0].value, [t.value for t in arguments]


def pg_default(text: str, conversion: Conversion) -> Translation:
    """SQLite's DEFAULT expression for a column of the chosen type, or why not."""
    try:
        tokens = _unwrap(tokenize(text))
    except SqlTextError as exc:
        return Translation(None, str(exc))
    if not tokens or (len(tokens) == 1 and tokens[0].is_word("NULL")):
        return Translation(None, None)
    head = tokens[0]
    sign = ""
    if head.kind == "op" and head.text in "+-" and len(tokens) == 2 and tokens[1].kind == "num":
        sign, tokens = ("-" if head.text == "-" else ""), tokens[1:]
        head = tokens[0]
    if len(tokens) == 1:
        if head.kind == "num":
            number = str(int(head.text, 16)) if head.text.lower().startswith("0x") else head.text
            number = sign + number
            if conversion == Conversion.BOOLEAN:
                if number in ("0", "1"):
                    return Translation("false" if number == "0" else "true")
                return Translation(None, f"default {number} is not 0 or 1")
            if conversion in _NUMBERS:
                return Translation(number)
            if conversion in _TEXTUAL or conversion == Conversion.JSONB:
                return Translation(_literal(number))
            return Translation(None, f"default {number} does not fit a {conversion} column")
        if head.is_word("TRUE", "FALSE"):
            if conversion == Conversion.BOOLEAN:
                return Translation(head.value.lower())
            if conversion in _NUMBERS:
                return Translation("1" if head.value == "TRUE" else "0")
            return Translation(None, f"default {head.value} does not fit a {conversion} column")
        if head.is_word("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME"):
            return _now_default(head.value, conversion)
        if head.kind == "str":
            return _string_default(head.value, conversion)
        if head.kind == "blob":
            if conversion in (Conversion.BYTEA, Conversion.BYTEA_FROM_MIXED):
                return Translation(f"'\\x{head.value}'::bytea")
            return Translation(None, f"a blob default does not fit a {conversion} column")
    call = _call(tokens)
    if call is not None:
        name, arguments = call
        if name == "DATETIME" and arguments == ["now"]:
            return _now_default("CURRENT_TIMESTAMP", conversion)
        if name == "DATE" and arguments == ["now"]:
            return _now_default("CURRENT_DATE", conversion)
        if name == "TIME" and arguments == ["now"]:
            return _now_default("CURRENT_TIME", conversion)
        if name == "STRFTIME" and arguments == ["%s", "now"]:
            epoch = "floor(extract(epoch from now()))::bigint"
            if conversion in _NUMBERS:
                return Translation(epoch)
            if conversion in _TEXTUAL:
                return Translation(f"({epoch})::text")
    generic = translate_expression(tokens, pg_name)
    if generic.sql is None:
        return generic
    return Translation(f"({generic.sql})", notes=("translated expression",))


def _string_default(value: str, conversion: Conversion) -> Translation:
    if conversion == Conversion.BOOLEAN:
        if value in ("0", "1"):
            return Translation("false" if value == "0" else "true")
        return Translation(None, f"default {_literal(value)} is not 0 or 1")
    if conversion == Conversion.TIMESTAMPTZ:
        parsed = parse_timestamp(value)
        if parsed is None:
            return Translation(None, f"default {_literal(value)} is not an unambiguous timestamp")
        return Translation(_literal(parsed[0].isoformat()))
    if conversion == Conversion.DATE:
        return Translation(_literal(value)) if parse_date(value) else Translation(
            None, f"default {_literal(value)} is not YYYY-MM-DD"
        )
    if conversion == Conversion.JSONB:
        problem = jsonb_problem(value)
        return Translation(_literal(value)) if problem is None else Translation(None, f"default: {problem}")
    if conversion in (Conversion.BYTEA, Conversion.BYTEA_FROM_MIXED):
        return Translation(f"convert_to({_literal(value)}, 'UTF8')")
    return Translation(_literal(value))
