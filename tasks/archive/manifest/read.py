"""Reading MANIFEST.json a piece at a time, straight into an on-disk `EntryStore`.

`json.loads` of a manifest listing 50,000 files built ~40 MB of dicts; here the top-level
object is walked by hand and each element of `files` and `skipped` is decoded on its
own (with the standard `json` decoder), validated, and stored. Memory is one read
buffer and one element, whatever the manifest's size.

What is accepted is what `json.loads` accepted, with two refusals on top: a repeated
top-level key, and a single value (one file entry, the database record) larger than
`MAX_VALUE_CHARS`. Anything malformed is a VerifyError, whatever the bytes.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import Any, BinaryIO

from tasks.archive.manifest.entries import file_entry_from, skipped_from
from tasks.archive.manifest.entry_store import EntryStore
from tasks.archive.manifest.model import Manifest, header_from
from tasks.core.errors import VerifyError

CHUNK_BYTES = 1 << 16
# One entry is a few hundred characters; the database record lists every table. Far
# beyond that is not a manifest of ours, and must not make us buffer without limit.
MAX_VALUE_CHARS = 8 << 20
_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


class _NotJson(Exception):
    """The bytes are not valid JSON."""


class _JsonReader:
    """A text buffer over a byte stream, refilled as the walk reaches its end."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.eof = False

    def more(self, at_least: int = CHUNK_BYTES) -> bool:
        """Read on (at least `at_least` bytes); False once the stream is exhausted."""
        if self.eof:
            return False
        data = self._stream.read(max(at_least, CHUNK_BYTES))
        try:
            decoded = self._utf8.decode(data, final=not data)
        except UnicodeDecodeError:
            raise _NotJson from None
        self.text = self.text[self.pos :] + decoded
        self.pos = 0
        self.eof = not data
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end), not consumed."""
        while True:
            text, pos = self.text, self.pos
            while pos < len(text) and text[pos] in _WHITESPACE:
                pos += 1
            self.pos = pos
            if pos < len(text):
                return text[pos]
            if not self.more():
                return ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _NotJson
        self.pos += 1

    def value(self) -> Any:
        """The next complete JSON value."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                # Maybe only cut off by the buffer's end: read as much again and retry
                # (doubling, so a large value costs linear time), up to a limit.
                pending = len(self.text) - self.pos
                if (
                    not _maybe_cut_off(exc, len(self.text))
                    or pending > MAX_VALUE_CHARS
                    or not self.more(at_least=pending)
                ):
                    raise _NotJson from None
                continue
            except RecursionError:
                raise _NotJson from None
            # A number that ends exactly at the buffer's end may go on in the next read.
            if end == len(self.text) and self.more():
                continue
            self.pos = end
            return value

    def array(self, handle: Callable[[Any], None]) -> None:
        """Each element of the array that comes next, passed to `handle` as it is read."""
        if self.peek() != "[":
            self.value()  # valid JSON of another type: malformed, not invalid
            raise TypeError("not a list")
        self.pos += 1
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            handle(self.value())
            separator = self.peek()
            self.pos += 1
            if separator == "]":
                return
            if separator != ",":
                raise _NotJson


def _maybe_cut_off(error: json.JSONDecodeError, buffered: int) -> bool:
    """Could more text make this error go away? (An error well inside the text cannot.)"""
    # An unterminated string is reported where it starts; every other error where the
    # decoder stopped, which is the buffer's end (give or take an escape) if it was cut.
    return error.msg.startswith("Unterminated string") or error.pos >= buffered - 8


def _walk(reader: _JsonReader, entries: EntryStore) -> dict[str, Any]:
    """The top-level object's fields except `files` and `skipped`, which go to `entries`."""
    fields: dict[str, Any] = {}
    seen: set[str] = set()
    reader.expect("{")
    if reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise _NotJson
            reader.expect(":")
            if key in seen:
                raise ValueError(f"{key} twice")
            seen.add(key)
            if key == "files":
                reader.array(lambda item: entries.add(file_entry_from(item)))
            elif key == "skipped":
                reader.array(lambda item: entries.add_skipped(*skipped_from(item)))
            else:
                fields[key] = reader.value()
            separator = reader.peek()
            reader.pos += 1
            if separator == "}":
                break
            if separator != ",":
                raise _NotJson
    if reader.peek() != "":
        raise _NotJson  # something after the object
    return fields


def read_manifest(stream: BinaryIO) -> Manifest:
    """A validated Manifest from a MANIFEST.json stream; VerifyError for anything malformed."""
    entries = EntryStore()
    try:
        fields = _walk(_JsonReader(stream), entries)
        return header_from(fields, entries)
    except _NotJson:
        entries.close()
        raise VerifyError("MANIFEST.json is not valid JSON") from None
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        entries.close()
        raise VerifyError(f"MANIFEST.json is malformed: {type(exc).__name__}") from None
    except BaseException:
        entries.close()
        raise
