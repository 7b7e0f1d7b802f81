"""SQLite's SQL text: tokens, and the parts of CREATE TABLE / VIEW / INDEX statements.

SQLite's pragmas tell columns, keys, indexes and foreign keys, but not CHECK
constraints, column collations, AUTOINCREMENT or DEFERRABLE: those are read here from
the CREATE statement SQLite keeps in `sqlite_schema`. Expressions are made PostgreSQL in
`tasks.migrate.expressions`. Nothing here touches a database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
