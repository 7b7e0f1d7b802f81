"""`backup-all`: the full system backup (the guide's `backup_all.sh`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow

from flows.backup_job import BackupJob, BackupRun, run_backup_job
from flows.hooks import FAILURE_HOOKS
from flows.offsite_flow import OffsiteResult
from flows.reporting import human_size, with_progress
from tasks.archive.full_content import ArchiveSummary
from tasks.core.tiers import DEFAULT_TIER, tiers_of
from tasks.steps.full_backup import verify_full_backup, write_full_backup_task

SHOWN_SKIPPED = 20  # lines in the summary; the manifest inside the archive has every one


@dataclass(frozen=True)
class BackupAllResult:
    path: str
    sidecar: str
    size: int
    sha256: str
    db_type: str
    tier: str
    seconds: float
    files: int
    bytes: int
    tables: dict[str, int] = field(default_factory=dict)
    sections: dict[str, int] = field(default_factory=dict)  # files per folder
    changed: list[str] = field(default_factory=list)  # files that changed while read (first 100)
    skipped: list[dict[str, str]] = field(default_factory=list)  # first 100; all in the manifest
    changed_count: int = 0
    skipped_count: int = 0
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    snapshots_removed: list[str] = field(default_factory=list)  # pre-restore snapshots rotated
    # meta-less full backups whose tier rotation read from MANIFEST.json, or could not
    rotation_notes: list[str] = field(default_factory=list)
    offsite: OffsiteResult | None = None

    def summary_lines(self) -> list[str]:
        lines = [
            "Full backup completed",
            f"  file:     {self.path}",
            f"  size:     {human_size(self.size)} ({self.size} bytes)",
            f"  sha256:   {self.sha256}",
            f"  database: {self.db_type} ({len(self.tables)} tables)",
            f"  files:    {self.files} ({human_size(self.bytes)}): "
            + ", ".join(f"{name} {count}" for name, count in self.sections.items()),
            f"  duration: {self.seconds:.1f} s",
            f"  tier:     {self.tier}",
            f"  backups kept: {len(self.kept)}, removed: {len(self.removed)}",
            *(
                [f"  pre-restore snapshots removed: {', '.join(self.snapshots_removed)}"]
                if self.snapshots_removed
                else []
            ),
            *(f"  rotation: {note}" for note in self.rotation_notes),
        ]
        if self.changed_count:
            lines.append(
                f"  changed while read ({self.changed_count}): {', '.join(self.changed[:5])}"
            )
        for item in self.skipped[:SHOWN_SKIPPED]:
            lines.append(f"  skipped: {item.get('path')}: {item.get('reason')}")
        if self.skipped_count > SHOWN_SKIPPED:
            lines.append(
                f"  skipped: and {self.skipped_count - SHOWN_SKIPPED} more (MANIFEST.txt lists them)"
            )
        if self.offsite is not None:
            lines += self.offsite.summary_lines()
        return lines


def _full_result(run: BackupRun[ArchiveSummary]) -> BackupAllResult:
    artifact, summary = run.artifact, run.artifact.detail
    return BackupAllResult(
        path=str(artifact.path),
        sidecar=str(artifact.sidecar),
        size=artifact.size,
        sha256=artifact.sha256,
        db_type=run.settings.db_type,
        tier=run.tier,
        seconds=run.seconds,
        files=summary.files,
        bytes=summary.bytes,
        tables=dict(summary.tables),
        sections={name: counts[0] for name, counts in summary.sections.items()},
        changed=summary.changed,
        skipped=summary.skipped,
        changed_count=summary.changed_count,
        skipped_count=summary.skipped_count,
        kept=run.rotation.kept,
        removed=run.rotation.removed,
        snapshots_removed=run.rotation.snapshots_removed,
        rotation_notes=run.rotation.notes,
    )


def _full_rows(run: BackupRun[ArchiveSummary], result: BackupAllResult) -> list[dict[str, Any]]:
    return [
        *[
            {"item": f"{name}_files", "value": f"{counts[0]} ({counts[1]} bytes)"}
            for name, counts in run.artifact.detail.sections.items()
        ],
        {"item": "changed_while_read", "value": result.changed_count},
        {"item": "skipped", "value": result.skipped_count},
    ]


BACKUP_ALL = BackupJob[ArchiveSummary, BackupAllResult](
    name="backup-all",
    kind="full",
    title="Full backup",
    tiers=tiers_of("full"),
    write=lambda settings, tier: write_full_backup_task(settings, tier),
    verify=lambda artifact: verify_full_backup(artifact),
    result=_full_result,
    rows=_full_rows,
)


@flow(name="backup-all", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
@with_progress("backup-all")
def backup_all(
    retention_days: int | None = None, offsite: bool = False, tier: str = DEFAULT_TIER["full"]
) -> BackupAllResult:
    """Back up the database, uploads, configuration and data folder into one archive."""
    return run_backup_job(BACKUP_ALL, retention_days, offsite, tier)
