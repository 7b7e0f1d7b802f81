"""Leaving a plain pg_dump's owners and privileges out as it streams.

A backup holds each object's owner (`ALTER <kind> <name> OWNER TO <role>;`, right after
the object) and its privileges (`GRANT`/`REVOKE`, and `ALTER DEFAULT PRIVILEGES`, at the
end). Loading them needs every one of those roles, and membership in each owner: a
scratch database (test-restore, dr-drill) is loaded by a role that has neither, and an
operator restoring onto a new server may not have made the roles yet (`--no-owner`,
`--no-privileges`, as pg_restore's `-O`, `-x`). There, those statements are left out
and the objects belong to the loading role; without the owners, `ALTER DEFAULT
PRIVILEGES FOR ROLE r` becomes the loading role's own.

The statements are found as psql would find them, not by pattern over the text: a
lexer follows quotes (`'...'`, `E'...'`, `"..."`, `$tag$...$tag$`), comments and psql's
backslash lines, so a name or a function body that holds `OWNER TO x;` or `GRANT` is
never taken for a statement. COPY data (between `COPY ... FROM stdin;` and its `\\.`
line) is skipped with one search, never lexed: a row may hold anything. A `;` inside
parentheses (a rule's actions) or a `BEGIN ATOMIC` body ends a "statement" here where
psql would go on; harmless, since neither may hold GRANT, REVOKE, ALTER or COPY, so
no piece of one is ever taken for a statement to leave out. Only statements
whose first word says so are dropped; everything else — comments, blank lines, COPY
data — passes through byte for byte. Memory is bounded by the longest statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_IDENT = rb"A-Za-z0-9_\x80-\xff$"
# Where lexing must look: a statement's end, the start of a quoted token or a comment, a
# psql backslash command. `$tag$` and `E'` only where no identifier goes on before them
# (`a$b$` is a name, `$1` a parameter).
_SPECIAL = re.compile(
    rb"[;'\"\\]|--|/\*"
    rb"|(?<![" + _IDENT + rb"])\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$"
    rb"|(?<![" + _IDENT + rb"])[Ee]'"
)
_BLOCK_COMMENT_PART = re.compile(rb"/\*|\*/")
_QUOTE_OR_BACKSLASH = re.compile(rb"['\\]")
# What may come before a statement's first word: blank space and comments.
_LEADING = re.compile(rb"(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.S)
_COPY_FROM_STDIN = re.compile(rb"COPY .* FROM stdin;\Z", re.S)
_END_OF_COPY_DATA = b"\n\\.\n"
_OWNER_TAIL = re.compile(rb"\sOWNER TO (?:\"(?:[^\"]|\"\")+\"|[^\s;\"]+);\Z")
_PRIVILEGE_STARTS = (b"GRANT ", b"REVOKE ", b"ALTER DEFAULT PRIVILEGES ")
_FOR_ROLE = re.compile(rb"ALTER DEFAULT PRIVILEGES FOR ROLE (?:\"(?:[^\"]|\"\")+\"|[^\s\"]+) ")


@dataclass(frozen=True)
class Leave:
    """What to leave out of the dump."""

    owners: bool = False
    privileges: bool = False

    def __bool__(self) -> bool:
        return self.owners or self.privileges


KEEP_ALL = Leave()


@dataclass(frozen=True)
class Ownership:
    """How a restore treats the backup's owners and privileges: what it leaves out, and
    what the backup recorded of them, which the restore proves when it left nothing
    out (tasks/sources/pg_privileges.py; None: nothing recorded, nothing compared)."""

    leave: Leave = KEEP_ALL
    recorded: dict[str, list[Any]] | None = None

    @property
    def proved(self) -> dict[str, list[Any]] | None:
        return None if self.leave else self.recorded


# The default everywhere: the dump as it is, nothing recorded to compare.
AS_DUMPED = Ownership()


class OwnershipFilter:
    """Feed the dump through `feed`, then call `finish`; what comes out is the dump
    without the statements `leave` names. `dropped` counts them."""

    def __init__(self, leave: Leave) -> None:
        self._leave = leave
        self._carry = b""
        self._in_copy_data = False
        self.dropped = 0

    def feed(self, chunk: bytes) -> bytes:
        return self._run(self._carry + chunk, final=False)

    def finish(self) -> bytes:
        return self._run(self._carry, final=True)

    def _run(self, data: bytes, final: bool) -> bytes:
        out: list[bytes] = []
        done = 0  # data[:done] is decided (passed on or dropped)
        while done < len(data):
            if self._in_copy_data:
                end = data.find(_END_OF_COPY_DATA, max(done - 1, 0))
                if end < 0:
                    # Keep the last bytes back: the end marker may begin in them.
                    keep = 0 if final else min(len(_END_OF_COPY_DATA) - 1, len(data) - done)
                    out.append(data[done : len(data) - keep])
                    done = len(data) - keep
                    break
                end += len(_END_OF_COPY_DATA) - 1  # the statement part resumes at its \n
                out.append(data[done:end])
                done = end
                self._in_copy_data = False
                continue
            statement_end = self._statement_end(data, done, final)
            if statement_end is None:
                break
            end, spans = statement_end
            out.append(self._decide(data, done, end, spans))
            done = end
        if final and done < len(data):
            out.append(data[done:])  # an unfinished last statement: psql will say what it is
            done = len(data)
        self._carry = data[done:]
        return b"".join(out)

    def _statement_end(
        self, data: bytes, start: int, final: bool
    ) -> tuple[int, list[tuple[int, int]]] | None:
        """(end of the statement that starts at `start`, just past its `;` or backslash
        line; the quoted tokens in it), or None when the data ends first."""
        spans: list[tuple[int, int]] = []
        pos = start
        while True:
            found = _SPECIAL.search(data, pos)
            if found is None:
                return None
            token, at = found.group(), found.start()
            if token == b";":
                return at + 1, spans
            if token == b"\\":  # psql's own command, to the end of its line
                line_end = data.find(b"\n", at)
                if line_end < 0:
                    return (len(data), spans) if final else None
                return line_end + 1, spans
            if token == b"--":
                line_end = data.find(b"\n", at)
                if line_end < 0:
                    return None
                pos = line_end + 1
                continue
            if token == b"/*":
                close = _block_comment_end(data, at)
                if close is None:
                    return None
                pos = close
                continue
            close = _quoted_end(data, at, token, final)
            if close is None:
                return None
            spans.append((at, close))
            pos = close

    def _decide(self, data: bytes, start: int, end: int, spans: list[tuple[int, int]]) -> bytes:
        lead = _LEADING.match(data, start, end)
        first = lead.end() if lead else start
        text = data[first:end]
        if _COPY_FROM_STDIN.match(text):
            self._in_copy_data = True
            return data[start:end]
        if self._leave.privileges and text.startswith(_PRIVILEGE_STARTS):
            self.dropped += 1
            return data[start:first]
        if (
            self._leave.owners
            and text.startswith(b"ALTER ")
            and _is_owner_statement(text, [(s - first, e - first) for s, e in spans if s >= first])
        ):
            self.dropped += 1
            return data[start:first]
        if self._leave.owners and (role := _FOR_ROLE.match(text)):
            # Another role's default privileges need its membership; with the owners
            # left out the objects are the restoring role's, so its own are meant.
            return data[start:first] + b"ALTER DEFAULT PRIVILEGES " + text[role.end() :]
        return data[start:end]


def _is_owner_statement(text: bytes, spans: list[tuple[int, int]]) -> bool:
    """`ALTER ... OWNER TO role;` with the OWNER TO outside every quoted token."""
    tail = _OWNER_TAIL.search(text)
    if tail is None:
        return False
    at = tail.start()
    return not any(s <= at < e for s, e in spans)


def _quoted_end(data: bytes, at: int, token: bytes, final: bool) -> int | None:
    """Just past the quoted token that opens with `token` at `at`; None when the data
    ends first (or, at the very end, when it never closes: psql will say so)."""
    if token.startswith(b"$"):
        close = data.find(token, at + len(token))
        return None if close < 0 else close + len(token)
    quote = token[-1:]
    escapes = token[:1] in (b"E", b"e")
    pos = at + len(token)
    while True:
        if escapes:
            found = _QUOTE_OR_BACKSLASH.search(data, pos)
            close = -1 if found is None else found.start()
        else:
            close = data.find(quote, pos)
        if close < 0:
            return None
        if escapes and data[close : close + 1] == b"\\":
            pos = close + 2
            continue
        if close + 1 == len(data):
            # A doubled quote may go on in the next chunk.
            return close + 1 if final else None
        if data[close + 1 : close + 2] == quote:
            pos = close + 2
            continue
        return close + 1


def _block_comment_end(data: bytes, at: int) -> int | None:
    """Just past the (nested) block comment that opens at `at`."""
    depth, pos = 0, at
    while True:
        found = _BLOCK_COMMENT_PART.search(data, pos)
        if found is None:
            return None
        depth += 1 if found.group() == b"/*" else -1
        pos = found.end()
        if depth == 0:
            return pos
