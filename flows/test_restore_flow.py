"""`test-restore`: the automated restore test (the guide's `test_restore.sh`).

Runs SPEC.md's checks on a full backup (default: the newest in BACKUP_DIR) or on a
database-only artifact, in a private temporary folder that is removed afterwards, and
reports each check as passed or failed with its reason. A check that cannot run
because an earlier one failed is reported as failed ("not run: ..."), so the result
passes only when every check did.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow

from flows.catalog import wants_choice
from flows.hooks import FAILURE_HOOKS
from flows.offsite_flow import fetch_for_restore, release_fetched
from flows.reporting import publish_table, run_logger, with_progress
from flows.restore_job import chosen_backup
from tasks.catalog.listing import LATEST
from tasks.catalog.records import list_backups, read_meta
from tasks.core.naming import BackupName, parse_backup_name
from tasks.core.redact import redact
from tasks.core.settings import Settings, load_settings
from tasks.monitor.metrics import record_restore_proof
from tasks.steps.verify import (
    archive_read_task,
    backup_file_task,
    database_task,
    db_artifact_integrity_task,
    manifest_task,
    section_task,
    staging_task,
)
from tasks.storage.destination import is_remote_url
from tasks.verify.restore_test import (
    APP_DATA,
    ARCHIVE_INTEGRITY,
    BACKUP_FILE,
    CONFIG_FILES,
    DATABASE,
    EXTRACTION,
    MANIFEST,
    STAGING,
    UPLOADS,
    CheckOutcome,
    is_full_archive,
    scratch_folder,
)
from tasks.verify.staging import StagingTarget, check_destination

# Not part of the product's configuration table: test and unusual-setup overrides only.
SSH_CONFIG_VARIABLE = "CHATBOT_BACKUP_SSH_CONFIG"  # an ssh_config file for `ssh -F`
REMOTE_COMMAND_VARIABLE = "CHATBOT_BACKUP_REMOTE_COMMAND"  # chatbot-backup on the staging host

# What is checked after the backup file itself, for each kind of backup.
FULL_CHECKS = (ARCHIVE_INTEGRITY, EXTRACTION, MANIFEST, DATABASE, CONFIG_FILES, UPLOADS, APP_DATA)
DB_CHECKS = (ARCHIVE_INTEGRITY, DATABASE)


@dataclass(frozen=True)
class TestRestoreResult:
    __test__ = False  # a result, not a pytest test class

    backup_file: str
    checks: list[CheckOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.passed]

    def check(self, name: str) -> CheckOutcome | None:
        return next((c for c in self.checks if c.name == name), None)

    def summary_lines(self) -> list[str]:
        width = max((len(c.name) for c in self.checks), default=5)
        lines = [f"Test restore of {self.backup_file}"]
        lines += [
            f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.reason}"
            for c in self.checks
        ]
        if self.passed:
            lines.append(f"All {len(self.checks)} checks passed ({self.seconds:.1f} s)")
        else:
            names = ", ".join(c.name for c in self.failed)
            lines.append(f"{len(self.failed)} of {len(self.checks)} checks failed: {names}")
        return lines


def newest_full_backup(settings: Settings) -> Path | None:
    full = [record for record in list_backups(settings.backups) if record.kind == "full"]
    return full[-1].path if full else None


def staging_target(staging_server: str) -> StagingTarget:
    config = os.environ.get(SSH_CONFIG_VARIABLE)
    return StagingTarget(
        destination=check_destination(staging_server),
        ssh_config=Path(config) if config else None,
        remote_command=os.environ.get(REMOTE_COMMAND_VARIABLE) or "chatbot-backup",
    )


def _full_archive_checks(path: Path, settings: Settings, workdir: Path) -> list[CheckOutcome]:
    later = FULL_CHECKS[1:]
    read = archive_read_task(path, workdir / "archive")  # integrity and extraction, one read
    checks = [read.integrity]
    scan, extraction = read.scan, read.extraction
    if scan is None or read.extracted is None:
        return checks + [
            CheckOutcome.not_run(name, f"{ARCHIVE_INTEGRITY} failed") for name in later
        ]
    checks.append(read.extracted)
    if extraction is None:
        return checks + [CheckOutcome.not_run(n, f"{EXTRACTION} failed") for n in later[1:]]
    manifest_check, manifest = manifest_task(scan, extraction)
    checks.append(manifest_check)
    if manifest is None or scan.top is None:
        return checks + [CheckOutcome.not_run(n, "no usable manifest") for n in later[2:]]
    artifact = (
        extraction.dest / scan.top / manifest.database.artifact
        if manifest.database is not None
        else None
    )
    checks.append(
        database_task(
            artifact,
            manifest.database.tables if manifest.database is not None else None,
            manifest.db_type,
            settings,
            workdir,
        )
    )
    for name in (CONFIG_FILES, UPLOADS, APP_DATA):
        checks.append(section_task(name, manifest, extraction, scan.top))
    return checks


def proof_subject(path: Path, settings: Settings, remote: bool = False) -> BackupName | None:
    """The backup a test-restore of `path` proves, when it is one the monitor reasons about:
    a backup (by its name) in BACKUP_DIR, or an off-site copy of one (`remote`). A file
    elsewhere proves nothing about them: its verdict is not recorded (a failed test of
    some other file must not make the monitor call the newest backup critical)."""
    name = parse_backup_name(path.name)
    if name is None:
        return None
    if remote:
        return name
    try:
        inside = path.resolve().parent == settings.backups.resolve()
    except OSError:
        return None
    return name if inside else None


def _db_artifact_checks(path: Path, settings: Settings, workdir: Path) -> list[CheckOutcome]:
    integrity = db_artifact_integrity_task(path)
    if not integrity.passed:
        return [integrity, CheckOutcome.not_run(DATABASE, f"{ARCHIVE_INTEGRITY} failed")]
    tables = read_meta(path).get("tables")
    expected = tables if isinstance(tables, dict) else None
    return [integrity, database_task(path, expected, None, settings, workdir)]


@flow(name="test-restore", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@with_progress("test-restore")
def test_restore(
    backup_file: str | None = LATEST, staging_server: str | None = None, as_of: str | None = None
) -> TestRestoreResult:
    """Prove that a backup restores: every check of SPEC.md, each passed or failed with a reason.

    No `backup_file` (or `latest`): the newest good full backup; `as_of`: the newest made
    at or before that UTC time (local first, then off-site)."""
    started = time.monotonic()
    settings = load_settings()
    if as_of:
        backup_file = chosen_backup(settings, "test-restore", None, as_of)
    elif wants_choice(backup_file):
        backup_file = None
    target = staging_target(staging_server) if staging_server else None
    logger = run_logger()
    if backup_file and is_remote_url(backup_file):  # the guide: test restores from off-site
        path = fetch_for_restore(backup_file, settings)
    elif backup_file:
        path = settings.resolve(Path(backup_file))
    else:
        path = newest_full_backup(settings) or settings.backups / "full_backup_*.tar.gz"
    checks = [backup_file_task(path)]
    if checks[0].passed:
        with scratch_folder() as workdir:
            if is_full_archive(path):
                checks += _full_archive_checks(path, settings, workdir)
            else:
                checks += _db_artifact_checks(path, settings, workdir)
    else:
        if not backup_file:
            checks[0] = CheckOutcome.failed(
                BACKUP_FILE, f"no full backup in {settings.backups} (full_backup_*.tar.gz)"
            )
        later = FULL_CHECKS if is_full_archive(path) else DB_CHECKS
        checks += [CheckOutcome.not_run(name, f"{BACKUP_FILE} failed") for name in later]
    if target is not None:
        if all(check.passed for check in checks):
            checks.append(staging_task(path, target))
        else:
            checks.append(CheckOutcome.not_run(STAGING, "the local checks failed"))
    release_fetched(path, settings)
    result = TestRestoreResult(
        backup_file=backup_file if backup_file and is_remote_url(backup_file) else str(path),
        checks=checks,
        seconds=time.monotonic() - started,
    )
    for line in result.summary_lines():
        (logger.info if result.passed else logger.warning)(line)
    subject = proof_subject(path, settings, remote=bool(backup_file and is_remote_url(backup_file)))
    if subject is None:
        logger.info(
            "restore proof not recorded in the metrics: %s is not a backup in %s",
            path,
            settings.backups,
        )
    else:
        try:  # the proof's verdict for the metrics file (and the alert rules over it)
            record_restore_proof(
                settings, subject.kind, result.passed, backup_time=subject.created_at.timestamp()
            )
        except Exception as exc:
            logger.warning("restore proof not recorded in the metrics: %s", redact(str(exc)))
    publish_table(
        "test-restore-checks",
        [
            {"check": c.name, "result": "pass" if c.passed else "FAIL", "reason": c.reason}
            for c in checks
        ],
        f"Test restore of {path.name}: "
        + ("all checks passed" if result.passed else f"{len(result.failed)} checks failed"),
    )
    return result


test_restore.__test__ = False  # pytest: a flow, not a test
