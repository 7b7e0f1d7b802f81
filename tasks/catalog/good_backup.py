"""The one "good backup" test: is this file, named like a backup, one that can be counted on?

Rotation (which backups make up the newest 3 it always keeps), the monitor (count, newest,
age) and choosing a backup to restore all ask this one question, so they cannot disagree.
A file named like a backup is good when

- it is not empty, and its sidecar (when there is one) is a `sha256sum` line for exactly
  this file name;
- its `.meta.json` (when there is one) agrees with the file: the size it recorded is the
  file's size, its sha256 is the sidecar's, its kind is the name's kind;
- its content sniffs as its kind: a gzip/zstd stream (as its name says) whose first
  decompressed bytes are a SQLite header (`.db`), plain SQL text (`.sql`), or a tar
  header of a member under the archive's own top folder (`.tar`).

It is cheap on purpose, so that it can run over every backup on every rotation: it reads
the two small sidecars and the head of the file (a few KiB inflated), never the whole
file and never a full hash. What only a full read can find (a flipped byte in the middle,
a cut-off tail without a meta size to show it) is left to the full verification that the
monitor runs on the newest backup of each kind and every restore runs on its file. A
backup made by the guide's shell scripts has no sidecar and no meta: it is good when its
content sniffs right. The verdict carries the reason, for logs and reports.
"""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from tasks.core.errors import VerifyError
from tasks.core.naming import SQLITE_HEADER, BackupName, sidecar_name

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Enough inflated bytes for a tar header (plus a pax header before it) or the comment
# block pg_dump starts with; little enough that judging a backup costs one small read.
HEAD_BYTES = 16 * 1024
_READ_PIECE = 16 * 1024
_FULL_TOP = re.compile(r"full_(?:backup|before_restore)_\d{8}_\d{6}")
# pg_dump's `SET client_encoding = 'LATIN1';`, at the top of every plain dump.
_DECLARED_ENCODING = re.compile(rb"^SET client_encoding = '[A-Z0-9_]+';$", re.MULTILINE)
_SQL_MARKERS = ("CREATE ", "SET ", "INSERT ", "COPY ", "SELECT ", "BEGIN", "\\RESTRICT", "-- ")


@dataclass(frozen=True)
class Verdict:
    """Whether a backup can be counted on, and why (or why not)."""

    good: bool
    reason: str


def judge_backup(
    path: Path,
    name: BackupName,
    size: int,
    meta: dict[str, Any] | None,
    has_sidecar: bool = True,
) -> Verdict:
    """The verdict on one backup file. `meta` is its parsed `.meta.json` (None: none);
    `has_sidecar=False` skips looking for a sidecar the caller knows is not there."""
    if size == 0:
        return Verdict(False, "empty file")
    digest: str | None = None
    if has_sidecar:
        try:
            digest = _sidecar_digest(path)
        except VerifyError as exc:
            return Verdict(False, str(exc))
    if meta:
        problem = _meta_problem(meta, name, size, digest)
        if problem is not None:
            return Verdict(False, problem)
    problem = content_problem(path, name)
    if problem is not None:
        return Verdict(False, problem)
    checked = ["content"]
    if digest is not None:
        checked.append("sidecar")
    if meta:
        checked.append("meta")
    return Verdict(True, f"good ({', '.join(checked)} checked)")


def content_problem(path: Path, name: BackupName) -> str | None:
    """None when the head of `path` is what its name says, else what it is instead."""
    expected = name.compression
    try:
        with open(path, "rb") as raw:
            magic = raw.read(4)
            raw.seek(0)
            if expected == "none":
                head = raw.read(HEAD_BYTES)
            elif expected == "gzip" and magic[:2] == GZIP_MAGIC:
                head = _gzip_head(raw)
            elif expected == "zstd" and magic == ZSTD_MAGIC:
                head = _zstd_head(raw)
            else:
                return f"not a {expected} file"
    except (zlib.error, zstandard.ZstdError, EOFError) as exc:
        return f"damaged {expected} stream at its start ({exc})"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return _content_kind_problem(head, name)


def _content_kind_problem(head: bytes, name: BackupName) -> str | None:
    if name.kind == "full":
        return _tar_problem(head, name.top_folders)
    if name.kind == "base":  # pg_basebackup -Ft: a ustar archive of the data directory
        return None if head[257:262] == b"ustar" else "does not hold a tar archive"
    if name.db_type == "sqlite":
        return None if head.startswith(SQLITE_HEADER) else "does not hold a SQLite database"
    if not head.strip():
        return "the SQL dump is empty"
    return None if looks_like_sql(head) else "does not hold a plain-SQL dump"


def looks_like_sql(head: bytes) -> bool:
    """Text with SQL in it: pg_dump starts with comments, SET lines or `\\restrict`."""
    if not head.strip() or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if _DECLARED_ENCODING.search(head):
            # pg_dump writes in the database's own encoding (LATIN1, WIN1252, SQL_ASCII...)
            # and says so in its first lines; its markers are ASCII in all of them.
            text = head.decode("latin-1")
        elif exc.start < len(head) - 4:
            return False
        else:  # the sniffed window may end inside a multi-byte character
            text = head[: exc.start].decode("utf-8")
    upper = text.upper()
    return any(marker in upper for marker in _SQL_MARKERS)


def _tar_problem(head: bytes, tops: tuple[str, ...]) -> str | None:
    if not head:
        return "the archive is empty"
    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as tar:
            first = tar.next()
    except (tarfile.TarError, EOFError, ValueError):
        return "does not start with a tar header"
    if first is None:
        return "the archive holds no member"
    top = first.name.removeprefix("./").split("/", 1)[0]
    # A copy renamed by hand keeps the top folder of the run that made it: still a full
    # backup (restore-all restores it); only a tar of something else is not.
    if top not in tops and not _FULL_TOP.fullmatch(top):
        return f"its first member {first.name!r} is not under {tops[0]}/"
    return None


def _gzip_head(raw: io.BufferedReader) -> bytes:
    """Up to HEAD_BYTES of the inflated stream (across gzip members, as gunzip reads them)."""
    out = bytearray()
    inflater = zlib.decompressobj(wbits=31)
    while len(out) < HEAD_BYTES:
        piece = inflater.unconsumed_tail or raw.read(_READ_PIECE)
        if not piece:
            break
        out += inflater.decompress(piece, HEAD_BYTES - len(out))
        if inflater.eof:  # a member ended; the next one (if any) starts in unused_data
            rest = inflater.unused_data
            inflater = zlib.decompressobj(wbits=31)
            if rest:
                out += inflater.decompress(rest, HEAD_BYTES - len(out))
    return bytes(out)


def _zstd_head(raw: io.BufferedReader) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    out = bytearray()
    while len(out) < HEAD_BYTES:
        chunk = reader.read(HEAD_BYTES - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _sidecar_digest(path: Path) -> str | None:
    """The sha256 the sidecar records for this exact name; None when there is no sidecar."""
    sidecar = path.with_name(sidecar_name(path.name))
    try:
        text = sidecar.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VerifyError(f"cannot read its sidecar ({exc.strerror or exc})") from None
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            digest = parts[0].lower()
            if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                return digest
    raise VerifyError(f"its sidecar {sidecar.name} is not a sha256sum line for {path.name}")


def _meta_problem(
    meta: dict[str, Any], name: BackupName, size: int, digest: str | None
) -> str | None:
    recorded_size = meta.get("size")
    if isinstance(recorded_size, int) and recorded_size != size:
        return f"{size} bytes, but its meta recorded {recorded_size} (cut short or replaced)"
    recorded_sha = meta.get("sha256")
    if isinstance(recorded_sha, str) and digest is not None and recorded_sha != digest:
        return "its meta and its sidecar record different sha256 (they belong to different files)"
    kind = meta.get("kind")
    if isinstance(kind, str) and kind != name.kind:
        return f"its meta says kind {kind!r}, its name says {name.kind!r}"
    return None
