"""Writing MANIFEST.json and MANIFEST.txt a piece at a time, from entries kept on disk.

The JSON is byte for byte what `json.dumps(manifest, indent=2, ensure_ascii=False)`
printed when the whole manifest was one object in memory (older backups and this one
read the same), but only one entry is ever formatted at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any, BinaryIO

from tasks.archive.manifest.entries import DatabaseEntry
from tasks.archive.manifest.model import Manifest

# A file name that is not valid UTF-8 reaches Python as lone surrogates (PEP 383).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_FLUSH_AT = 1 << 16  # characters gathered before a write
SECTIONS = ("uploads", "config", "data")


def _json(value: Any, indent: int) -> str:
    """`value` as json.dumps(indent=2) prints it, nested `indent` spaces deep."""
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + " " * indent)


def _array(key: str, items: Iterable[Any]) -> Iterator[str]:
    opened = False
    for item in items:
        yield (",\n" if opened else f"  {json.dumps(key)}: [\n") + "    " + _json(item, 4)
        opened = True
    yield "\n  ]" if opened else f"  {json.dumps(key)}: []"


def _database(db: DatabaseEntry) -> dict[str, Any]:
    """The database entry; `privileges` only where there are some (PostgreSQL)."""
    fields = asdict(db)
    if fields.get("privileges") is None:
        fields.pop("privileges", None)
    return fields


def json_pieces(manifest: Manifest) -> Iterator[str]:
    yield "{\n"
    fields: list[tuple[str, Any]] = [
        ("name", manifest.name),
        ("created_at", manifest.created_at),
        ("tier", manifest.tier),
        ("host", manifest.host),
        ("db_type", manifest.db_type),
        ("database", None if manifest.database is None else _database(manifest.database)),
    ]
    for key, value in fields:
        yield f"  {json.dumps(key)}: {_json(value, 2)},\n"
    yield from _array("files", (asdict(entry) for entry in manifest.entries.entries()))
    yield ",\n"
    yield from _array("skipped", manifest.entries.skipped())
    yield f',\n  "format": {json.dumps(manifest.format)}\n}}\n'


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(name: str) -> str:
    """A name on one line of MANIFEST.txt: control characters and line breaks escaped.

    A name may hold a newline (any byte but NUL and "/" is legal): shown raw, it would
    split its line in two. Other characters, a backslash included, are shown as they are.
    """
    if name.isprintable():
        return name
    out = []
    for char in name:
        if char.isprintable() or "\ud800" <= char <= "\udfff":  # surrogates: _text_bytes
            out.append(char)
        elif char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def text_lines(manifest: Manifest) -> Iterator[str]:
    entries = manifest.entries
    yield "GPT Chatbot platform — full backup manifest"
    yield f"Backup:     {manifest.name}"
    yield f"Created:    {manifest.created_at}"
    yield f"Tier:       {manifest.tier}"
    yield f"Host:       {manifest.host}"
    yield f"Database:   {manifest.db_type}"
    if manifest.database is not None:
        db = manifest.database
        yield f"DB file:    {db.artifact} ({db.size} bytes, sha256 {db.sha256})"
        yield "Tables:"
        for table, rows in sorted(db.tables.items()):
            yield f"  {table}: {rows} rows"
    yield f"Files:      {entries.count(kind='file')} files, {entries.total_size()} bytes"
    for section in SECTIONS:
        files = entries.count(section=section, kind="file")
        size = entries.total_size(section=section)
        yield f"  {section + '/':9} {files} files, {size} bytes"
    if entries.changed_count():
        yield "Changed while being read (re-run the backup for a clean copy):"
        for path in entries.changed():
            yield f"  {shown(path)}"
    if entries.skipped_count():
        yield "Skipped:"
        for item in entries.skipped():
            yield f"  {shown(item['path'])}: {shown(item['reason'])}"
    yield ""
    yield "Checksums (sha256  size  path):"
    for entry in entries.entries(kind="file"):
        yield f"{entry.sha256}  {entry.size}  {shown(entry.path)}"


def _json_bytes(text: str) -> bytes:
    """Valid UTF-8 JSON, even for file names that are not UTF-8.

    Their lone surrogates are written as `\\udcXX` escapes (plain ASCII, valid JSON);
    `json.loads` turns them back into the same surrogates, and `os.fsencode` into the
    original bytes.
    """
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


def _text_bytes(text: str) -> bytes:
    """UTF-8 text for people; a name that is not UTF-8 shows its odd bytes as `\\xNN`."""
    raw = text.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace").encode("utf-8")


def _write(pieces: Iterable[str], out: BinaryIO, encode: Any) -> None:
    gathered: list[str] = []
    size = 0
    for piece in pieces:
        gathered.append(piece)
        size += len(piece)
        if size >= _FLUSH_AT:
            out.write(encode("".join(gathered)))
            gathered.clear()
            size = 0
    out.write(encode("".join(gathered)))


def write_manifest_json(manifest: Manifest, out: BinaryIO) -> None:
    _write(json_pieces(manifest), out, _json_bytes)


def write_manifest_text(manifest: Manifest, out: BinaryIO) -> None:
    _write((line + "\n" for line in text_lines(manifest)), out, _text_bytes)
