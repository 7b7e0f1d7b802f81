"""Values on their way: SQLite → COPY, and the facts the type choice needs about them.

`to_pg(conversion)` turns a value read from SQLite into what COPY sends for the chosen
PostgreSQL type; `sqlite_select`/`pg_select` say how a column is read on either side.
Also here: whether a text is JSON that jsonb keeps unchanged (and its one canonical
spelling), the one strict timestamp syntax accepted for timestamptz, and how reals are
written for numeric. The forms both sides are compared in live in `canonical`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tasks.migrate.types import Conversion

UTC = dt.UTC

# -- timestamps ----------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def parse_timestamp(text: str) -> tuple[dt.datetime, bool] | None:
    """(the instant, whether the text named its offset), for the strict ISO-8601 forms
    SQLite's date functions write; None for anything else (ambiguous or not a date).
    A text without offset is read as UTC, as SQLite's own date functions do."""
    if _TIMESTAMP.match(text) is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)  # the regex allowed only ISO forms
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC), False
        return moment.astimezone(UTC), True  # the instant; the offset is not kept
    except (ValueError, OverflowError):  # 2024-02-30, 25:00, a leap second, year 0
        return None


def parse_date(text: str) -> dt.date | None:
    if _DATE.match(text) is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


# -- JSON ----------------------------------------------------------------------------


class _NotForJsonb(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotForJsonb(f"{name} is not JSON")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _NotForJsonb("an object repeats a key (jsonb keeps only the last)")
    return dict(pairs)


_STRICT_DECODER = json.JSONDecoder(
    parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant, object_pairs_hook=_pairs
)


def _load_json(text: str) -> Any:
    return _STRICT_DECODER.decode(text)


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise _NotForJsonb("a string holds \\u0000, which jsonb refuses")
        value.encode("utf-8")  # a lone surrogate (\ud800) raises
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def jsonb_problem(value: object) -> str | None:
    """None when jsonb keeps `value` (a JSON text, or a number SQLite stored for one)."""
    if isinstance(value, bool) or value is None:
        return "not JSON text"
    if isinstance(value, int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "not a finite number"
    if not isinstance(value, str):
        return "not text"
    try:
        _check_strings(_load_json(value))
    except _NotForJsonb as exc:
        return str(exc)
    except UnicodeEncodeError:
        return "a string holds a lone surrogate"
    except (ValueError, RecursionError):
        return "does not parse as JSON"
    return None


def _number(value: object) -> object:
    """json.dumps's `default` for the Decimals `_load_json` makes: integral values as
    exact ints, others as NUL-tagged text (jsonb strings never hold NUL, so the tag
    cannot be taken for a string of the document)."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        return "\x00" + str(value.normalize())
    raise TypeError(f"not JSON: {type(value).__name__}")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_number)


def canonical_json(value: object) -> str:
    """A JSON value in one spelling: keys sorted, no blanks, numbers by value."""
    if isinstance(value, bool):
        raise TypeError("not JSON text")
    if isinstance(value, int):
        loaded: Any = value
    elif isinstance(value, float):
        loaded = Decimal(repr(value))
    else:
        assert isinstance(value, str)
        loaded = _DECODER.decode(value)
    return _ENCODER.encode(loaded)


# -- numbers -------------------------------------------------------------------------


def real_as_numeric(value: float) -> str:
    """A real for a numeric column: its shortest exact decimal, always with a fraction
    digit, so that numeric's scale keeps telling reals (scale > 0) from integers."""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def number_text(value: int | float) -> str:
    """A number as decimal text (for the mixed conversions): integers as written, reals
    in Python's shortest form that reads back as the same double."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


# -- SQLite value → COPY value ---------------------------------------------------------


def _to_boolean(value: Any) -> Any:
    return None if value is None else value == 1


def _to_numeric(value: Any) -> Any:
    return real_as_numeric(value) if isinstance(value, float) else value


def _to_jsonb(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value)
    return value


def _to_date(value: Any) -> Any:
    return None if value is None else dt.date.fromisoformat(value)


def _to_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value)
    return value


def _to_bytes(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number_text(value).encode("ascii")
    if isinstance(value, str):  # read through CAST(... AS BLOB): should not happen
        return value.encode("utf-8", "surrogatepass")
    return value


_TO_PG: dict[Conversion, Callable[[Any], Any] | None] = {
    Conversion.BIGINT: None,
    Conversion.IDENTITY: None,
    Conversion.BOOLEAN: _to_boolean,
    Conversion.DOUBLE: None,
    Conversion.NUMERIC: _to_numeric,
    Conversion.TEXT: None,
    Conversion.BYTEA: None,
    Conversion.JSONB: _to_jsonb,
    # The text itself: it passed parse_timestamp's strict ISO syntax, which PostgreSQL
    # reads the same way (a text without offset in the session's TimeZone, UTC).
    Conversion.TIMESTAMPTZ: None,
    Conversion.DATE: _to_date,
    Conversion.TEXT_FROM_MIXED: _to_text,
    Conversion.BYTEA_FROM_MIXED: _to_bytes,
}


def to_pg(conversion: Conversion) -> Callable[[Any], Any] | None:
    """The converter for COPY, or None when the value goes as it was read."""
    return _TO_PG[conversion]


def sqlite_select(conversion: Conversion, column_sql: str) -> str:
    """How the column is read from SQLite (text as its bytes for the bytea conversion)."""
    if conversion == Conversion.BYTEA_FROM_MIXED:
        return f"CASE typeof({column_sql}) WHEN 'text' THEN CAST({column_sql} AS BLOB) ELSE {column_sql} END"
    return column_sql


def pg_select(conversion: Conversion, column_sql: str) -> str:
    """How the column is read back from PostgreSQL for the comparison."""
    return f"{column_sql}::text" if conversion == Conversion.JSONB else column_sql
