"""SQLite's SQL text: tokens, the parts of a CREATE TABLE, and expressions made PostgreSQL.

SQLite's pragmas tell columns, keys, indexes and foreign keys, but not CHECK
constraints, column collations, AUTOINCREMENT or DEFERRABLE: those are read here from
the CREATE statement SQLite keeps in `sqlite_schema`. Expressions (CHECK, partial-index
WHERE, index expressions, view bodies) are translated token by token; what has no
faithful PostgreSQL counterpart is refused with a reason rather than guessed, and what
translates is still tried inside a savepoint by the caller, so that PostgreSQL itself
has the last word. Nothing here touches a database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))
  | (?P<blob>[xX]'(?P<hex>[0-9a-fA-F]*)')
  | (?P<str>'(?:[^']|'')*')
  | (?P<dq>"(?:[^"]|"")*")
  | (?P<bq>`(?:[^`]|``)*`)
  | (?P<br>\[[^\]]*\])
  | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*)
  | (?P<param>[?](?:\d*)|[:@$][A-Za-z0-9_]+)
  | (?P<op>\|\||<<|>>|<=|>=|==|!=|<>|->>|->|[-+*/%<>=&|~])
  | (?P<punct>[(),;.])
    """,
    re.VERBOSE | re.DOTALL,
)


class SqlTextError(ValueError):
    """SQL text this module cannot read."""


@dataclass(frozen=True)
class Token:
    """`kind`: word, id (a quoted identifier), str, blob, num, param, op, or the
    punctuation itself. `value`: the identifier unquoted, the word upper-cased, the string
    literal's content, the blob's hex digits; else the text."""

    kind: str
    text: str
    value: str

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words

    @property
    def is_name(self) -> bool:
        return self.kind in ("word", "id")


def tokenize(sql: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        if match is None:
            raise SqlTextError(f"unexpected character {sql[position]!r} at offset {position}")
        position = match.end()
        kind = match.lastgroup
        text = match.group(0)
        if kind == "ws" or kind == "hex":
            continue
        if kind == "blob":
            tokens.append(Token("blob", text, match.group("hex").lower()))
        elif kind == "str":
            tokens.append(Token("str", text, text[1:-1].replace("''", "'")))
        elif kind == "dq":
            tokens.append(Token("id", text, text[1:-1].replace('""', '"')))
        elif kind == "bq":
            tokens.append(Token("id", text, text[1:-1].replace("``", "`")))
        elif kind == "br":
            tokens.append(Token("id", text, text[1:-1]))
        elif kind == "word":
            tokens.append(Token("word", text, text.upper()))
        elif kind == "punct":
            tokens.append(Token(text, text, text))
        else:
            assert kind is not None
            tokens.append(Token(kind, text, text))
    return tokens


def closing_paren(tokens: Sequence[Token], opening: int) -> int:
    """Index of the `)` matching the `(` at `opening`."""
    depth = 0
    for index in range(opening, len(tokens)):
        if tokens[index].kind == "(":
            depth += 1
        elif tokens[index].kind == ")":
            depth -= 1
            if depth == 0:
                return index
    raise SqlTextError("unbalanced parentheses")


def split_top_level(tokens: Sequence[Token], separator: str = ",") -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "(":
            depth += 1
        elif token.kind == ")":
            depth -= 1
        if token.kind == separator and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    return [part for part in parts if part]


def identifier_value(token: Token) -> str:
    """A name as SQLite stores it: quoted names unquoted, bare words as written."""
    return token.value if token.kind == "id" else token.text


# -- CREATE TABLE ------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One REFERENCES clause: which child columns (None: the column it is written on)."""

    child_columns: tuple[str, ...]
    parent: str
    deferred: bool


@dataclass
class ParsedColumn:
    name: str
    checks: list[list[Token]] = field(default_factory=list)
    collation: str | None = None


@dataclass
class ParsedTable:
    columns: list[ParsedColumn] = field(default_factory=list)
    checks: list[list[Token]] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    autoincrement: bool = False


_TABLE_CONSTRAINT_WORDS = ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN")
_COLUMN_CONSTRAINT_WORDS = (
    "CONSTRAINT",
    "PRIMARY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
)


def parse_create_table(sql: str) -> ParsedTable:
    """The column list of `CREATE TABLE name (...)`, as far as the pragmas cannot tell."""
    tokens = tokenize(sql)
    opening = next((i for i, t in enumerate(tokens) if t.kind == "("), None)
    if opening is None:
        raise SqlTextError("no column list")
    body = tokens[opening + 1 : closing_paren(tokens, opening)]
    table = ParsedTable()
    for item in split_top_level(body):
        if item[0].is_word(*_TABLE_CONSTRAINT_WORDS):
            _read_table_constraint(item, table)
        else:
            table.columns.append(_read_column(item, table))
    return table


def _paren_group(tokens: Sequence[Token], index: int) -> tuple[list[Token], int]:
    """The tokens inside the parenthesis at `index`, and the index after it."""
    if index >= len(tokens) or tokens[index].kind != "(":
        raise SqlTextError("expected (")
    end = closing_paren(tokens, index)
    return list(tokens[index + 1 : end]), end + 1


def _read_column(item: list[Token], table: ParsedTable) -> ParsedColumn:
    column = ParsedColumn(identifier_value(item[0]))
    index = 1
    while index < len(item):
        token = item[index]
        if token.kind == "(":
            index = closing_paren(item, index) + 1
            continue
        if token.is_word("CHECK"):
            expression, index = _paren_group(item, index + 1)
            column.checks.append(expression)
            continue
        if token.is_word("COLLATE") and index + 1 < len(item):
            column.collation = identifier_value(item[index + 1]).upper()
            index += 2
            continue
        if token.is_word("AUTOINCREMENT"):
            table.autoincrement = True
        if token.is_word("REFERENCES"):
            reference, index = _read_reference(item, index, (column.name,))
            table.references.append(reference)
            continue
        index += 1
    return column


def _read_table_constraint(item: list[Token], table: ParsedTable) -> None:
    index = 2 if item[0].is_word("CONSTRAINT") else 0
    if index >= len(item):
        return
    head = item[index]
    if head.is_word("CHECK"):
        expression, _ = _paren_group(item, index + 1)
        table.checks.append(expression)
    elif head.is_word("FOREIGN"):
        opening = next(i for i in range(index, len(item)) if item[i].kind == "(")
        columns, after = _paren_group(item, opening)
        names = tuple(identifier_value(t) for t in columns if t.is_name)
        refs = next((i for i in range(after, len(item)) if item[i].is_word("REFERENCES")), None)
        if refs is not None:
            reference, _ = _read_reference(item, refs, names)
            table.references.append(reference)
    elif head.is_word("PRIMARY") and any(t.is_word("AUTOINCREMENT") for t in item):
        table.autoincrement = True


def _read_reference(
    item: list[Token], index: int, child_columns: tuple[str, ...]
) -> tuple[Reference, int]:
    """REFERENCES parent [(cols)] [ON ... | MATCH ...]* [[NOT] DEFERRABLE [INITIALLY ...]]."""
    parent = identifier_value(item[index + 1])
    index += 2
    if index < len(item) and item[index].kind == "(":
        _, index = _paren_group(item, index)
    deferred = False
    stop = ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "DEFAULT", "COLLATE", "REFERENCES",
            "GENERATED", "AS", "NULL")
    while index < len(item) and not item[index].is_word(*stop):
        if item[index].is_word("NOT") and index + 1 < len(item) and item[index + 1].is_word("NULL"):
            break
        if (
            item[index].is_word("DEFERRABLE")
            and not (index > 0 and item[index - 1].is_word("NOT"))
            and index + 2 < len(item)
            and item[index + 1].is_word("INITIALLY")
            and item[index + 2].is_word("DEFERRED")
        ):
            deferred = True
        index += 1
    return Reference(child_columns, parent, deferred), index


# -- CREATE VIEW / CREATE INDEX -------------------------------------------------------


@dataclass(frozen=True)
class ParsedView:
    column_names: tuple[str, ...] | None
    body: list[Token]


def parse_create_view(sql: str) -> ParsedView:
    tokens = tokenize(sql)
    depth = 0
    for index, token in enumerate(tokens):
        if token.kind == "(":
            depth += 1
        elif token.kind == ")":
            depth -= 1
        elif depth == 0 and token.is_word("AS"):
            head = tokens[:index]
            columns = None
            if head and head[-1].kind == ")":
                opening = max(i for i, t in enumerate(head) if t.kind == "(")
                columns = tuple(identifier_value(t) for t in head[opening + 1 : -1] if t.is_name)
            return ParsedView(columns, tokens[index + 1 :])
    raise SqlTextError("no AS in CREATE VIEW")


@dataclass(frozen=True)
class ParsedIndex:
    items: list[list[Token]]
    where: list[Token] | None


def parse_create_index(sql: str) -> ParsedIndex:
    tokens = tokenize(sql)
    on = next(i for i, t in enumerate(tokens) if t.is_word("ON"))
    opening = next(i for i in range(on, len(tokens)) if tokens[i].kind == "(")
    inside, after = _paren_group(tokens, opening)
    where = None
    if after < len(tokens) and tokens[after].is_word("WHERE"):
        where = [t for t in tokens[after + 1 :] if t.kind != ";"]
    return ParsedIndex(split_top_level(inside), where)


# -- expressions ---------------------------------------------------------------------

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
    from tasks.migrate.types import affinity

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
