"""The checks of an automated restore test, each a plain function returning an outcome.

SPEC.md, Test restore: backup file exists and is readable; archive integrity;
extraction; manifest verification (every file's size and sha256); database restorable
into a scratch database with the manifest's row counts; configuration files present;
uploaded files intact; application data intact. (The staging-server check lives in
`tasks.verify.staging`.) A check never raises for a problem with the backup: it returns a
failed `CheckOutcome` whose reason says what is wrong, so every check gets reported.
The extraction and the manifest check are restore-all's own (`tasks.archive.verdict`),
so an archive test-restore passes is one restore-all accepts, and the other way round.
"""

from __future__ import annotations

import contextlib
import gzip
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tasks.archive.extracted import Extraction
from tasks.archive.manifest.model import MANIFEST_JSON, Manifest
from tasks.archive.safe_extract import MemberExtraction, extract_archive
from tasks.archive.scan import ArchiveScan, MemberVisitor, scan_archive
from tasks.archive.verdict import (
    ManifestLinks,
    archive_problems,
    entry_problem,
    read_extracted_manifest,
)
from tasks.catalog.records import read_meta
from tasks.core.errors import BackupError, SourceError
from tasks.core.naming import parse_backup_name
from tasks.restore.postgres import SCRATCH, load_checked
from tasks.restore.source import sniff_content
from tasks.sources.postgres import connect, keyed_like, relation_counts
from tasks.sources.psql import create_database, drop_database
from tasks.sources.sqlite import connect as sqlite_connect
from tasks.sources.sqlite import integrity_problem, table_row_counts
from tasks.stream.compress import copy_stream, open_decompressed, sniff_compression
from tasks.verify.backup_file import verify_compressed_file
from tasks.verify.finding import Finding

# The checks, in the order they run and are reported.
BACKUP_FILE = "backup-file"
ARCHIVE_INTEGRITY = "archive-integrity"
EXTRACTION = "extraction"
MANIFEST = "manifest"
DATABASE = "database"
CONFIG_FILES = "config-files"
UPLOADS = "uploads"
APP_DATA = "app-data"
STAGING = "staging-server"

SECTION_CHECKS = {CONFIG_FILES: "config", UPLOADS: "uploads", APP_DATA: "data"}
SCRATCH_DB_PREFIX = "chatbot_restore_test_"
_SHOWN_PROBLEMS = 3


# test-restore's checks pass (ok) or fail (critical): the one finding type.
CheckOutcome = Finding


def _listing(problems: list[str]) -> str:
    shown = "; ".join(problems[:_SHOWN_PROBLEMS])
    more = len(problems) - _SHOWN_PROBLEMS
    return shown + (f"; and {more} more" if more > 0 else "")


# -- 1. backup file ------------------------------------------------------------------


def check_backup_file(path: Path) -> CheckOutcome:
    try:
        if not path.exists():
            return CheckOutcome.failed(BACKUP_FILE, f"{path}: no such file")
        if not path.is_file():
            return CheckOutcome.failed(BACKUP_FILE, f"{path}: not a regular file")
        size = path.stat().st_size
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return CheckOutcome.failed(BACKUP_FILE, f"{path}: cannot read ({exc.strerror})")
    if size == 0:
        return CheckOutcome.failed(BACKUP_FILE, f"{path.name}: empty file")
    return CheckOutcome.ok(BACKUP_FILE, f"{path.name}, {size} bytes, readable")


def is_full_archive(path: Path) -> bool:
    """A full backup by name, or (for a renamed file) by not being a db-only name."""
    parsed = parse_backup_name(path.name)
    if parsed is not None:
        return parsed.kind == "full"
    return ".tar" in path.name


# -- 2. archive integrity --------------------------------------------------------------


def check_archive_integrity(
    path: Path, visit: MemberVisitor | None = None
) -> tuple[CheckOutcome, ArchiveScan | None]:
    """Full archive: sha256 sidecar (if any), the whole compressed stream, every tar header
    (`visit` sees each member on the way)."""
    try:
        scan = scan_archive(path, visit=visit)
    except BackupError as exc:
        return CheckOutcome.failed(ARCHIVE_INTEGRITY, str(exc)), None
    checksum = "sha256 matches its sidecar" if scan.sidecar_checked else "no .sha256 sidecar"
    return (
        CheckOutcome.ok(
            ARCHIVE_INTEGRITY,
            f"{checksum}; {scan.compression} stream and {scan.members} tar members readable",
        ),
        scan,
    )


def check_db_artifact_integrity(path: Path) -> CheckOutcome:
    """Database-only artifact: sha256 sidecar (if any), the whole stream, its format."""
    try:
        verified = verify_compressed_file(path)
    except BackupError as exc:
        return CheckOutcome.failed(ARCHIVE_INTEGRITY, str(exc))
    checksum = "sha256 matches its sidecar" if verified.sidecar_checked else "no .sha256 sidecar"
    return CheckOutcome.ok(
        ARCHIVE_INTEGRITY,
        f"{checksum}; {verified.compression} stream readable ({verified.content_size} bytes)",
    )


# -- 3. extraction ---------------------------------------------------------------------


def check_extraction(
    path: Path, scan: ArchiveScan, workdir: Path
) -> tuple[CheckOutcome, Extraction | None]:
    """Extract into `workdir`, refusing anything that would land outside it."""
    try:
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        free = shutil.disk_usage(workdir).free
    except OSError as exc:
        return CheckOutcome.failed(EXTRACTION, f"cannot use {workdir}: {exc}"), None
    if scan.content_bytes > free:
        return (
            CheckOutcome.failed(
                EXTRACTION,
                f"{workdir} has {free} bytes free, the archive needs {scan.content_bytes}; "
                "set TMPDIR to a larger folder",
            ),
            None,
        )
    links = ManifestLinks()  # exactly the links MANIFEST.json records, as restore-all makes them
    try:
        # The scan counted the bytes; an archive that now holds more is not the one scanned.
        extraction = extract_archive(path, workdir, max_bytes=scan.content_bytes, links=links)
    except BackupError as exc:
        return CheckOutcome.failed(EXTRACTION, str(exc)), None
    except OSError as exc:
        return CheckOutcome.failed(EXTRACTION, f"extraction into {workdir} failed: {exc}"), None
    finally:
        links.close()
    return _extracted(extraction), extraction


def _extracted(extraction: Extraction) -> CheckOutcome:
    reason = (
        f"{len(extraction.files)} files ({extraction.bytes} bytes), {len(extraction.dirs)} "
        f"folders, {len(extraction.symlinks)} links (as MANIFEST.json records them) extracted "
        "safely into a temporary folder"
    )
    if extraction.external_links:
        reason += (
            f" ({len(extraction.external_links)} links not created: no {MANIFEST_JSON} "
            "to check them against)"
        )
    return CheckOutcome.ok(EXTRACTION, reason)


# -- 2 and 3 in one read (test-restore) ------------------------------------------------


@dataclass
class ArchiveChecks:
    """The archive-integrity and extraction checks of one read of a full archive."""

    integrity: CheckOutcome
    scan: ArchiveScan | None  # None: the integrity check failed
    extracted: CheckOutcome | None = None  # None: not run, as the integrity check failed
    extraction: Extraction | None = None


_BLOCK = 4096  # a filesystem block, as most have


class _ExtractOnTheWay:
    """The scan's visitor: extracts each member as the integrity scan passes it. Its first
    problem stops the extraction, not the scan, so the archive's own verdict (checksum,
    stream, every header) is still reached and reported first, as in two reads."""

    def __init__(self, workdir: Path, budget: int, links: ManifestLinks) -> None:
        self.workdir = workdir
        self.budget = budget
        self.used = 0  # the files' blocks so far
        self.extraction = MemberExtraction(workdir, links=links)
        self.problem: str | None = None
        self.out_of_space = False

    @property
    def stopped(self) -> bool:
        return self.problem is not None or self.out_of_space

    def __call__(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        if self.stopped:
            return
        if member.isfile():
            self.used += -(-member.size // _BLOCK) * _BLOCK + _BLOCK  # data and inode, about
            if self.used > self.budget:
                self.out_of_space = True  # said once the scan knows what the archive needs
                return
        try:
            self.extraction.add(tar, member)
        except BackupError as exc:  # an unsafe member: refused, named
            self.problem = str(exc)
        except gzip.BadGzipFile:
            raise  # an OSError, but the stream's damage: the scan's to report
        except OSError as exc:
            self.problem = f"extraction into {self.workdir} failed: {exc}"


def _no_room(workdir: Path, free: int, needed: int) -> CheckOutcome:
    return CheckOutcome.failed(
        EXTRACTION,
        f"{workdir} has {free} bytes free, the archive needs {needed}; "
        "set TMPDIR to a larger folder",
    )


def check_archive_read(path: Path, workdir: Path) -> ArchiveChecks:
    """Archive integrity and extraction into `workdir` in one read of the archive (issue 18:
    the scan and a second read for the extraction were two passes): the file is hashed
    against its sidecar, inflated and every header walked while each member is extracted.
    What was extracted counts only once the whole read passed; else it is left for the
    caller's scratch folder to remove."""
    try:
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        free = shutil.disk_usage(workdir).free
    except OSError as exc:
        integrity, scan = check_archive_integrity(path)
        failed = CheckOutcome.failed(EXTRACTION, f"cannot use {workdir}: {exc}")
        return ArchiveChecks(integrity, scan, failed if scan is not None else None)
    # Stop while a twentieth of the free space is left: the scratch folder is shared
    # (TMPDIR), so never filled to the last block.
    budget = free - free // 20
    recorded = read_meta(path).get("bytes")
    if isinstance(recorded, int) and recorded > budget:  # it will not fit: write nothing
        integrity, scan = check_archive_integrity(path)
        if scan is None:
            return ArchiveChecks(integrity, None)
        return ArchiveChecks(integrity, scan, _no_room(workdir, free, scan.content_bytes))
    links = ManifestLinks()  # exactly the links MANIFEST.json records, as restore-all makes them
    try:
        visitor = _ExtractOnTheWay(workdir, budget, links)
        integrity, scan = check_archive_integrity(path, visitor)
        if scan is None:
            return ArchiveChecks(integrity, None)
        if visitor.out_of_space:
            return ArchiveChecks(integrity, scan, _no_room(workdir, free, scan.content_bytes))
        if visitor.problem is not None:
            return ArchiveChecks(integrity, scan, CheckOutcome.failed(EXTRACTION, visitor.problem))
        try:
            extraction = visitor.extraction.finish()  # the links and the folders' modes
        except BackupError as exc:
            return ArchiveChecks(integrity, scan, CheckOutcome.failed(EXTRACTION, str(exc)))
        except OSError as exc:
            reason = f"extraction into {workdir} failed: {exc}"
            return ArchiveChecks(integrity, scan, CheckOutcome.failed(EXTRACTION, reason))
    finally:
        links.close()
    return ArchiveChecks(integrity, scan, _extracted(extraction), extraction)


# -- 4. manifest -----------------------------------------------------------------------


class _Problems:
    """Counts every problem, keeps the first few to show: memory stays flat."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []

    def add(self, problem: str | None) -> None:
        if problem is not None:
            self.count += 1
            if len(self.first) < _SHOWN_PROBLEMS:
                self.first.append(problem)

    def summary(self) -> str:
        more = self.count - len(self.first)
        return (
            f"{self.count} problems: "
            + "; ".join(self.first)
            + (f"; and {more} more" if more > 0 else "")
        )


def check_manifest(
    scan: ArchiveScan, extraction: Extraction
) -> tuple[CheckOutcome, Manifest | None]:
    """Every entry's size and sha256 (and every link and folder) against what was extracted."""
    if scan.manifest_member is None:
        return CheckOutcome.failed(
            MANIFEST, f"{MANIFEST_JSON} missing: the backup did not finish"
        ), None
    try:
        manifest = read_extracted_manifest(extraction, scan.manifest_member)
    except BackupError as exc:
        return CheckOutcome.failed(MANIFEST, str(exc)), None
    problems = _Problems()
    for problem in archive_problems(extraction, manifest):
        problems.add(problem.text("check"))
    if problems.count:
        return CheckOutcome.failed(MANIFEST, problems.summary()), manifest
    files = manifest.entries.count(kind="file")
    return CheckOutcome.ok(
        MANIFEST,
        f"{files} files, sizes and sha256 match; {manifest.entries.count()} entries in all",
    ), manifest


# -- 5. database -----------------------------------------------------------------------


def count_differences(expected: dict[str, int] | None, restored: dict[str, int]) -> list[str]:
    """One line per table whose restored row count differs from the recorded one (none
    when nothing was recorded); test-restore and the DR drill judge counts the same way."""
    if expected is None:
        return []
    problems = []
    for table in sorted(set(expected) | set(restored)):
        want, got = expected.get(table), restored.get(table)
        if want != got:
            problems.append(
                f"{table}: {'no table' if want is None else want} recorded, "
                f"{'no table' if got is None else got} restored"
            )
    return problems


def _compare_counts(expected: dict[str, int] | None, restored: dict[str, int]) -> str | None:
    problems = count_differences(expected, restored)
    return f"row counts differ: {_listing(problems)}" if problems else None


def restore_sqlite(artifact: Path, workdir: Path) -> dict[str, int]:
    """Decompress into a temporary SQLite file; integrity_check; its row counts."""
    target = workdir / f"restore-test-{secrets.token_hex(4)}.db"
    try:
        with open(artifact, "rb") as raw, open(target, "wb") as out:
            copy_stream(open_decompressed(raw, sniff_compression(artifact)), out)
        problem = integrity_problem(target)
        if problem is not None:
            raise BackupError(f"integrity_check failed on the restored copy: {problem}")
        connection = sqlite_connect(target)  # an escaped URI: any path opens as itself
        try:
            return table_row_counts(connection)
        finally:
            connection.close()
    finally:
        target.unlink(missing_ok=True)


def restore_postgres(
    artifact: Path,
    params: dict[str, str],
    expected: dict[str, int] | None = None,
    variable: str = "ADMIN_DATABASE_URL",
) -> tuple[str, dict[str, int]]:
    """Load the dump into a temporary database (created here, always dropped) by the same
    guarded transaction db-restore runs (so the same end-of-dump and COMMIT checks), then
    count its rows in a fresh session, keyed as `expected` keys them. `variable` names
    the setting the server came from, for a refused CREATE DATABASE."""
    name = SCRATCH_DB_PREFIX + secrets.token_hex(6)
    try:
        create_database(params, name)
    except SourceError as exc:
        if "permission denied" not in str(exc):
            raise
        raise SourceError(
            f"{exc}; the role of {variable} may not create databases: set "
            "RESTORE_TEST_DATABASE_URL to a postgresql:// URL of a role with CREATEDB "
            "(scratch databases are created there and dropped)"
        ) from None
    try:
        load_checked(
            params,
            artifact,
            sniff_compression(artifact),
            None,
            None,
            reset=False,
            dbname=name,
            ownership=SCRATCH,
        )
        with connect(params, dbname=name) as connection:
            return name, keyed_like(expected, relation_counts(connection))
    finally:
        drop_database(params, name)


def check_database(
    artifact: Path | None,
    expected_tables: dict[str, int] | None,
    db_type: str | None,
    pg_params: dict[str, str] | None,
    workdir: Path,
    variable: str = "ADMIN_DATABASE_URL",
) -> CheckOutcome:
    """Restore into a scratch database and compare every table's row count; `variable`
    is the setting `pg_params` came from."""
    if artifact is None or not artifact.is_file():
        return CheckOutcome.failed(DATABASE, "the backup holds no database artifact")
    parsed = parse_backup_name(artifact.name)
    kind = parsed.db_type if parsed is not None and parsed.db_type else db_type
    if kind is None:  # a hand-made file by any name: its content says, as for db-restore
        try:
            held = sniff_content(artifact, sniff_compression(artifact))
        except BackupError as exc:
            return CheckOutcome.failed(DATABASE, str(exc))
        kind = {"sqlite": "sqlite", "sql": "postgres"}.get(held)
    try:
        if kind == "sqlite":
            counts = restore_sqlite(artifact, workdir)
            where = "a temporary SQLite file (integrity_check ok)"
        elif kind == "postgres":
            if pg_params is None:
                return CheckOutcome.failed(
                    DATABASE,
                    "restoring a PostgreSQL dump needs a PostgreSQL server: set "
                    "RESTORE_TEST_DATABASE_URL or ADMIN_DATABASE_URL (a temporary database "
                    "is created there and dropped)",
                )
            scratch, counts = restore_postgres(artifact, pg_params, expected_tables, variable)
            where = f"temporary PostgreSQL database {scratch} (dropped)"
        else:
            return CheckOutcome.failed(DATABASE, f"{artifact.name}: unknown database type")
    except BackupError as exc:
        return CheckOutcome.failed(DATABASE, f"{artifact.name} does not restore: {exc}")
    except (OSError, EOFError, sqlite3.Error) as exc:
        return CheckOutcome.failed(DATABASE, f"{artifact.name} does not restore: {exc}")
    mismatch = _compare_counts(expected_tables, counts)
    if mismatch:
        return CheckOutcome.failed(
            DATABASE, f"{artifact.name} restored into {where}, but {mismatch}"
        )
    compared = (
        "row counts match" if expected_tables is not None else "no recorded row counts to compare"
    )
    return CheckOutcome.ok(
        DATABASE,
        f"{artifact.name} restored into {where}; {len(counts)} tables, "
        f"{sum(counts.values())} rows; {compared}",
    )


# -- 6-8. configuration, uploads, application data ---------------------------------------


def check_section(check: str, manifest: Manifest, extraction: Extraction, top: str) -> CheckOutcome:
    """The manifest's entries under one folder (config/, uploads/, data/) are all intact."""
    section = SECTION_CHECKS[check]
    if f"{top}/{section}" not in extraction.dirs:
        return CheckOutcome.failed(check, f"{section}/ is missing from the archive")
    problems = _Problems()
    files = size = changed = 0
    for entry in manifest.entries.entries(section=section):
        problem = entry_problem(entry, extraction, top)
        problems.add(None if problem is None else problem.text("check"))
        if entry.type == "file":
            files += 1
            size += entry.size
            changed += entry.changed
    if problems.count:
        return CheckOutcome.failed(check, problems.summary())
    reason = f"{files} files ({size} bytes) intact"
    if changed:
        reason += f"; {changed} changed while the backup read them"
    in_section = (s for s in manifest.entries.skipped() if s["path"].startswith(section))
    skipped = list(islice(in_section, _SHOWN_PROBLEMS))
    if skipped:
        notes = ", ".join(f"{s['path']} ({s['reason']})" for s in skipped)
        reason += f"; skipped at backup time: {notes}"
    return CheckOutcome.ok(check, reason)


@contextlib.contextmanager
def scratch_folder(parent: Path | None = None) -> Iterator[Path]:
    """A private temporary folder (TMPDIR unless `parent`), removed with all it holds."""
    folder = Path(tempfile.mkdtemp(prefix="chatbot-test-restore-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
