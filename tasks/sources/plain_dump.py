"""What a plain-SQL pg_dump stream must look like to be restored, checked as it streams.

- The end: pg_dump finishes every plain dump with a `-- PostgreSQL database dump complete`
  comment (then `\\unrestrict KEY` on 15.14+). A file without it was cut short — a
  `pg_dump | gzip` whose pg_dump died, a copy that stopped — even when it ends at a
  statement boundary and would load without an error, replacing tables by empty ones.
- No empty statement right after COPY data: after a lone `;` there, psql 15 takes the
  lines that follow for more COPY data and drops them, silently (exit 0), up to the
  next end of COPY data — rows, statements, the restore's own check and COMMIT. pg_dump
  never writes one; a dump that has one is refused before COMMIT.
- pg_dump's own transaction: it wraps the large objects' data in `BEGIN;` … `COMMIT;`.
  Inside a restore's single transaction that COMMIT would commit everything loaded so
  far, so exactly those two lines (right after the `Type: BLOBS` section header) become
  comments; any other COMMIT in a dump is refused by the restore's commit guard
  (tasks/restore/postgres.py).
The stream is passed through in the same chunks it comes in (plus a few hundred bytes
held back to see patterns that cross chunk boundaries); memory stays flat.
"""

from __future__ import annotations

import re

from tasks.core.errors import RestoreError, VerifyError

TRAILER = "-- PostgreSQL database dump complete"
_TRAILER_AT_END = re.compile(
    rb"-- PostgreSQL database dump complete[ \t\r]*\n(?:--[ \t\r]*\n)?\s*"
    rb"(?:\\unrestrict[ \t]+\S+\s*)?\Z"
)
_TAIL_BYTES = 4096
# The header pg_dump writes before its large objects, then its BEGIN.
_BLOBS_BEGIN = re.compile(rb"; Type: BLOBS; Schema: -; Owner: [^\n]{0,200}\n--\n\nBEGIN;\n")
_BEGIN = b"BEGIN;\n"
_COMMIT = b"\nCOMMIT;\n"
# The end of COPY data, then (blank or comment lines and) an empty statement.
_EMPTY_AFTER_COPY = re.compile(rb"\n\\\.\n(?:[ \t\r\n]|--[^\n]{0,400}\n){0,64};")
_HOLD = 32 * 1024  # longer than any match above
_BEGIN_KEPT = b"-- BEGIN; (pg_dump's; the restore's own transaction holds the large objects)\n"
_COMMIT_KEPT = b"\n-- COMMIT; (pg_dump's; the restore commits once, at its end)\n"


class PlainDumpStream:
    """Feed the decompressed dump through `feed`, then call `finish` at its end."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._carry = b""
        self._in_blobs = False
        self._tail = b""
        self._lines = 0  # lines passed on so far (the rewrites keep line numbers)

    def feed(self, chunk: bytes) -> bytes:
        self._tail = (self._tail + chunk[-_TAIL_BYTES:])[-_TAIL_BYTES:]
        return self._rewrite(self._carry + chunk, final=False)

    def finish(self) -> bytes:
        """What was held back; VerifyError unless the dump ended with pg_dump's trailer."""
        rest = self._rewrite(self._carry, final=True)
        if not _TRAILER_AT_END.search(self._tail):
            raise VerifyError(
                f"{self._name}: the SQL does not end with pg_dump's '{TRAILER}' line, so "
                "the dump was cut short (or is not a whole pg_dump); nothing was changed"
            )
        return rest

    def _rewrite(self, data: bytes, final: bool) -> bytes:
        empty = _EMPTY_AFTER_COPY.search(data)
        if empty is not None:
            line = self._lines + data.count(b"\n", 0, empty.end()) + 1
            raise RestoreError(
                f"psql stopped before COMMIT: {self._name} has a lone ';' right after COPY "
                f"data (SQL line {line}), after which psql 15 silently skips what follows; "
                "not a whole pg_dump, nothing was changed"
            )
        out: list[bytes] = []
        pos = 0
        while True:
            if not self._in_blobs:
                match = _BLOBS_BEGIN.search(data, pos)
                if match is None:
                    break
                out += [data[pos : match.end() - len(_BEGIN)], _BEGIN_KEPT]
                pos = match.end()
                self._in_blobs = True
            else:
                found = data.find(_COMMIT, max(pos - 1, 0))
                if found < 0:
                    break
                out += [data[pos:found], _COMMIT_KEPT]
                pos = found + len(_COMMIT)
                self._in_blobs = False
        keep = 0 if final else min(_HOLD, len(data) - pos)
        out.append(data[pos : len(data) - keep])
        self._carry = data[len(data) - keep :] if keep else b""
        passed = out[0] if len(out) == 1 else b"".join(out)
        self._lines += passed.count(b"\n")
        return passed
