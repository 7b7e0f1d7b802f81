"""The canonical form both sides of a migration are compared in.

A tag for the kind of value plus an exact text, so that an integer, a real and a text
never compare equal by accident. For the exact conversions the SQLite side is
canonicalised from the value's own storage class and the PostgreSQL side from the type
read back, independently: a wrong type choice (reals stored in bigint, say) shows as a
mismatch. For the two mixed conversions the canonical form is the stated conversion's
result (numbers as decimal text), which is what the report promises.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tasks.migrate.types import Conversion
from tasks.migrate.values import UTC, canonical_json, number_text, parse_timestamp

Canonical = Callable[[Any], "str | None"]


def _real(value: float) -> str:
    return "r:" + repr(float(value))


def _by_storage_class(value: Any) -> str | None:
    """The canonical form of a SQLite value from its own storage class alone."""
    if value is None:
        return None
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        return _real(value)
    if isinstance(value, str):
        return "t:" + value
    if isinstance(value, (bytes, memoryview)):
        return "b:" + bytes(value).hex()
    return "?:" + repr(value)


def _sqlite_timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return _by_storage_class(value)
    parsed = parse_timestamp(value)
    return "d:" + parsed[0].astimezone(UTC).isoformat() if parsed else "?:unparsable " + value


def _sqlite_date(value: Any) -> str | None:
    return "d:" + value if isinstance(value, str) else _by_storage_class(value)


def _sqlite_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return "j:" + canonical_json(value)
    except (TypeError, ValueError):
        return "?:not JSON"


def _sqlite_text_from_mixed(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return "t:" + value
    if isinstance(value, (int, float)):
        return "t:" + number_text(value)
    return _by_storage_class(value)


def _sqlite_bytes_from_mixed(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return "b:" + value.hex()
    if isinstance(value, (int, float)):
        return "b:" + number_text(value).encode("ascii").hex()
    return _by_storage_class(value)


def _sqlite_int(value: Any) -> str | None:
    return f"i:{value}" if type(value) is int else _by_storage_class(value)


def _sqlite_text(value: Any) -> str | None:
    return "t:" + value if type(value) is str else _by_storage_class(value)


_SQLITE_CANONICAL: dict[Conversion, Canonical] = {
    Conversion.BIGINT: _sqlite_int,
    Conversion.IDENTITY: _sqlite_int,
    Conversion.BOOLEAN: _sqlite_int,
    Conversion.DOUBLE: _by_storage_class,
    Conversion.NUMERIC: _by_storage_class,
    Conversion.TEXT: _sqlite_text,
    Conversion.BYTEA: _by_storage_class,
    Conversion.JSONB: _sqlite_json,
    Conversion.TIMESTAMPTZ: _sqlite_timestamp,
    Conversion.DATE: _sqlite_date,
    Conversion.TEXT_FROM_MIXED: _sqlite_text_from_mixed,
    Conversion.BYTEA_FROM_MIXED: _sqlite_bytes_from_mixed,
}


def sqlite_canonical(conversion: Conversion) -> Canonical:
    """How a SQLite value of a column with this conversion is canonicalised."""
    return _SQLITE_CANONICAL[conversion]


def canonical_sqlite(value: Any, conversion: Conversion) -> str | None:
    return _SQLITE_CANONICAL[conversion](value)


def _pg_generic(value: Any) -> str | None:
    """The canonical form of a value psycopg returned, from its Python type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return f"i:{int(value)}"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        return _real(value)
    if isinstance(value, Decimal):
        if value.is_infinite():
            return _real(float(value))
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return f"i:{int(value)}"
        return _real(float(value))
    if isinstance(value, str):
        return "t:" + value
    if isinstance(value, (bytes, memoryview)):
        return "b:" + bytes(value).hex()
    if isinstance(value, dt.datetime):
        return "d:" + value.astimezone(UTC).isoformat()
    if isinstance(value, dt.date):
        return "d:" + value.isoformat()
    return "?:" + repr(value)


def _pg_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return "j:" + canonical_json(value)
    except (TypeError, ValueError):
        return "?:not JSON"


def _pg_text(value: Any) -> str | None:
    return "t:" + value if type(value) is str else _pg_generic(value)


def _pg_int(value: Any) -> str | None:
    return f"i:{value}" if type(value) is int else _pg_generic(value)


def pg_canonical(conversion: Conversion) -> Canonical:
    """How a value PostgreSQL returned for a column with this conversion is canonicalised."""
    if conversion == Conversion.JSONB:
        return _pg_json
    if conversion in (Conversion.TEXT, Conversion.TEXT_FROM_MIXED):
        return _pg_text
    if conversion in (Conversion.BIGINT, Conversion.IDENTITY):
        return _pg_int
    return _pg_generic


def canonical_pg(value: Any, conversion: Conversion) -> str | None:
    return pg_canonical(conversion)(value)


def describe_value(canonical: str | None) -> str:
    """What a canonical value is, without showing it (values may be private data)."""
    if canonical is None:
        return "NULL"
    kind = {"i": "an integer", "r": "a real", "t": "a text", "b": "bytes", "j": "JSON",
            "d": "a date/time"}.get(canonical[:1], "a value")
    body = canonical[2:]
    if canonical[:1] == "b":
        return f"{kind} ({len(body) // 2} bytes)"
    if canonical[:1] in ("t", "j"):
        return f"{kind} ({len(body)} characters)"
    return kind
