"""Off-site copies: the `--offsite` step of the backup jobs and `offsite-sync`.

`check_offsite` runs before a backup job does any work (a bad destination, missing
credentials or impossible encryption stop it there); `copy_offsite` is the task group the
backup flows call once their local backup is safe. `offsite-sync` is the guide's "manual
sync": every local backup missing off-site is copied and verified, then off-site
retention runs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from flows.hooks import FAILURE_HOOKS
from flows.reporting import human_size, publish_links, publish_table, run_logger
from tasks.catalog.records import list_backups
from tasks.core.errors import BackupError, ConfigError, DestinationError, SourceError, VerifyError
from tasks.core.redact import redact
from tasks.core.settings import Settings, load_settings
from tasks.monitor.metrics import record_offsite_status
from tasks.offsite.catalog import RemotePrune
from tasks.offsite.copy import OffsiteCopy
from tasks.offsite.encryption import encryption_from_settings
from tasks.offsite.fetch import fetch_backup
from tasks.offsite.remote import STAGING_DIR
from tasks.offsite.verify import RemoteCheck
from tasks.steps.offsite import (
    prune_offsite,
    upload_offsite,
    verify_offsite,
)
from tasks.storage.destination import Destination, open_destinations


def check_offsite(settings: Settings) -> Destination:
    """Everything that can be checked without the network, before any work starts
    (every destination listed); returns the first."""
    destinations = open_destinations(settings)
    encryption_from_settings(settings)
    return destinations[0]


def _copy_rows(copies: list[OffsiteCopy]) -> list[dict[str, Any]]:
    return [
        {
            "backup": c.name,
            "remote": c.url,
            "size_bytes": c.size,
            "sha256": c.sha256,
            "action": _action(c),
            "encrypted": "age" if c.encrypted else "no",
            "attempts": c.attempts,
            "duration_s": f"{c.seconds:.2f}",
        }
        for c in copies
    ]


def _action(c: OffsiteCopy) -> str:
    if c.repaired is not None:
        return f"repaired (the copy there: {c.repaired})"
    return "uploaded" if c.uploaded else "already there"


@dataclass(frozen=True)
class DestinationOutcome:
    """What one destination of an off-site step got."""

    destination: str
    scheme: str
    copies: list[OffsiteCopy] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)  # left by retention: still locked
    error: str | None = None  # the copy failed
    error_class: type[BackupError] = DestinationError
    transient: bool = False
    prune_error: str | None = None

    def summary_lines(self) -> list[str]:
        lines = [f"  off-site: {self.destination}"]
        if self.error:
            lines.append(f"    FAILED: {self.error}")
        for c in self.copies:
            action = "uploaded and verified" if c.uploaded else "already there, identical"
            if c.repaired is not None:
                action = f"damaged copy replaced ({c.repaired}), uploaded and verified"
            lines.append(f"    {c.remote_name}: {action} ({human_size(c.size)}, sha256 {c.sha256})")
        if self.error is None:
            lines.append(f"    off-site backups removed by retention: {len(self.removed)}")
        if self.locked:
            lines.append(
                f"    left by retention, still under Object Lock: {', '.join(self.locked)}"
            )
        if self.prune_error:
            lines.append(f"    off-site retention not applied: {self.prune_error}")
        return lines


@dataclass(frozen=True)
class OffsiteResult:
    """The off-site step of a backup run: one outcome per destination."""

    destination: str  # every destination, comma-separated (display forms)
    scheme: str  # the first destination's
    copies: list[OffsiteCopy] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    prune_error: str | None = None
    outcomes: list[DestinationOutcome] = field(default_factory=list)

    @property
    def uploaded(self) -> int:
        return sum(1 for c in self.copies if c.uploaded)

    @property
    def failed(self) -> list[DestinationOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    def summary_lines(self) -> list[str]:
        return [line for o in self.outcomes for line in o.summary_lines()]


def _copy_to(
    settings: Settings,
    dest: Destination,
    paths: list[Path],
    kind: str,
    known_sha256: Mapping[str, str],
) -> DestinationOutcome:
    """Copy and verify at one destination, then its retention; never raises for it."""
    text = dest.source_text
    try:
        copies = [
            upload_offsite(settings, path, known_sha256.get(path.name), destination=text)
            for path in paths
        ]
    except Exception as exc:
        record_offsite_status(settings, kind, dest.scheme, False, dest.display)
        detail = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        return DestinationOutcome(
            dest.display,
            dest.scheme,
            error=redact(detail),
            error_class=type(exc)
            if isinstance(exc, VerifyError | ConfigError)
            else DestinationError,
            transient=bool(getattr(exc, "transient", False)),
        )
    record_offsite_status(settings, kind, dest.scheme, True, dest.display)
    pruned, prune_error = RemotePrune(), None
    try:
        pruned = prune_offsite(settings, datetime.now(UTC), destination=text)
    except BackupError as exc:  # the copies are verified; retention can wait for next time
        prune_error = redact(str(exc))
        run_logger().warning("off-site retention at %s not applied: %s", dest.display, prune_error)
    return DestinationOutcome(
        dest.display,
        dest.scheme,
        copies,
        pruned.removed,
        sorted(pruned.locked),
        prune_error=prune_error,
    )


def copy_offsite(
    settings: Settings,
    paths: list[Path],
    kind: str,
    known_sha256: Mapping[str, str] | None = None,
) -> OffsiteResult:
    """Copy new backups to every off-site destination (verified), then off-site retention.

    Called by the backup flows after their local backup is safe. Each destination is
    copied and verified on its own: one failing does not stop the others. When any
    failed, the run fails naming them (each failed destination's
    `chatbot_offsite_backup_status` is 0) and the local backup is kept.
    """
    started = time.monotonic()
    destinations = open_destinations(settings)
    logger = run_logger()
    outcomes = [_copy_to(settings, d, paths, kind, known_sha256 or {}) for d in destinations]
    result = OffsiteResult(
        destination=", ".join(d.display for d in destinations),
        scheme=destinations[0].scheme,
        copies=[c for o in outcomes for c in o.copies],
        removed=[n for o in outcomes for n in o.removed],
        seconds=time.monotonic() - started,
        prune_error="; ".join(o.prune_error for o in outcomes if o.prune_error) or None,
        outcomes=outcomes,
    )
    for line in result.summary_lines():
        (logger.error if line.startswith("    FAILED") else logger.info)(line)
    publish_table(
        "offsite-copy",
        _copy_rows(result.copies)
        + [{"remote": o.destination, "action": f"FAILED: {o.error}"} for o in result.failed],
        f"Off-site copy to {result.destination}",
    )
    publish_links(
        "offsite-copy-link",
        [(c.url, c.remote_name) for c in result.copies],
        f"Verified off-site copy at {result.destination}",
    )
    if result.failed:
        names = ", ".join(p.name for p in paths)
        failed = "; ".join(f"{o.destination}: {o.error}" for o in result.failed)
        ok = len(outcomes) - len(result.failed)
        classes = {o.error_class for o in result.failed}
        error_class = next(iter(classes)) if len(classes) == 1 else DestinationError
        raise error_class(
            f"off-site copy failed at {len(result.failed)} of {len(outcomes)} destination(s) "
            f"({ok} verified) — {failed} (the local backup {names} is kept)",
            transient=all(o.transient for o in result.failed),
        )
    return result


# --------------------------------------------------------------------------- offsite-sync


@dataclass(frozen=True)
class OffsiteSyncResult:
    destination: str
    scheme: str
    copies: list[OffsiteCopy] = field(default_factory=list)
    skipped_local: list[str] = field(default_factory=list)  # vanished during the sync
    removed: list[str] = field(default_factory=list)
    checks: list[RemoteCheck] = field(default_factory=list)
    seconds: float = 0.0
    locked: list[str] = field(default_factory=list)

    @property
    def uploaded(self) -> int:
        return sum(1 for c in self.copies if c.uploaded)

    @property
    def already_there(self) -> int:
        return sum(1 for c in self.copies if not c.uploaded)

    @property
    def repaired(self) -> int:
        """Uploaded again: the copy there did not match its sidecar (counted in uploaded)."""
        return sum(1 for c in self.copies if c.repaired is not None)

    def summary_lines(self) -> list[str]:
        lines = [
            "Off-site sync completed",
            f"  destination:   {self.destination}",
            f"  uploaded:      {self.uploaded}",
            f"  already there: {self.already_there}",
            *([f"  repaired:      {self.repaired}"] if self.repaired else []),
            f"  removed by off-site retention: {len(self.removed)}",
            f"  duration:      {self.seconds:.1f} s",
        ]
        for c in self.copies:
            if c.repaired is not None:
                lines.append(f"    repaired {c.url}: {c.repaired}; uploaded again and verified")
            elif c.uploaded:
                lines.append(f"    uploaded {c.url} ({human_size(c.size)})")
        for name in self.removed:
            lines.append(f"    removed {name}")
        if self.locked:
            lines.append(f"  left by retention (Object Lock): {', '.join(self.locked)}")
        if self.checks:
            ok = sum(1 for c in self.checks if c.status in ("ok", "archived"))
            lines.append(
                f"  verified:      {ok} of {len(self.checks)} copies read back and matched"
            )
        return lines


@dataclass
class _SyncPart:
    copies: list[OffsiteCopy] = field(default_factory=list)
    failures: list[tuple[str, BackupError]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    checks: list[RemoteCheck] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)


def _sync_one(settings: Settings, dest: Destination, verify: bool) -> _SyncPart:
    part = _SyncPart()
    text = dest.source_text
    kinds: dict[str, bool] = {}
    # Newest first: if the destination goes away midway, the most recent are across.
    for record in reversed(list_backups(settings.backups)):
        try:
            part.copies.append(upload_offsite(settings, record.path, destination=text))
            kinds.setdefault(record.kind, True)
        except SourceError:
            part.skipped.append(record.path.name)
        except BackupError as exc:
            part.failures.append((record.path.name, exc))
            kinds[record.kind] = False
            if exc.transient:  # unreachable for a whole window: the rest would wait too
                break
    if not part.failures:
        if verify:
            part.checks = verify_offsite(settings, destination=text)
        pruned = prune_offsite(settings, datetime.now(UTC), destination=text)
        part.removed, part.locked = pruned.removed, sorted(pruned.locked)
    for kind, ok in kinds.items():
        record_offsite_status(settings, kind, dest.scheme, ok, dest.display)
    return part


@flow(name="offsite-sync", log_prints=False, **FAILURE_HOOKS)  # type: ignore[call-overload]
def offsite_sync(verify: bool = False) -> OffsiteSyncResult:
    """Copy every local backup that is missing off-site (verified), then off-site retention,
    at every destination in turn (one failing does not stop the others).

    With `verify`, every finished off-site copy is also read back and compared with its
    sidecar; a copy that was altered fails the run (and is left in place for inspection).
    """
    started = time.monotonic()
    settings = load_settings()
    check_offsite(settings)
    destinations = open_destinations(settings)
    logger = run_logger()
    parts: list[tuple[Destination, _SyncPart]] = []
    for dest in destinations:
        try:
            parts.append((dest, _sync_one(settings, dest, verify)))
        except BackupError as exc:
            parts.append((dest, _SyncPart(failures=[("(retention)", exc)])))
    result = OffsiteSyncResult(
        ", ".join(d.display for d in destinations),
        destinations[0].scheme,
        [c for _, p in parts for c in p.copies],
        sorted({n for _, p in parts for n in p.skipped}),
        [n for _, p in parts for n in p.removed],
        [c for _, p in parts for c in p.checks],
        time.monotonic() - started,
        [n for _, p in parts for n in p.locked],
    )
    for line in result.summary_lines():
        logger.info(line)
    rows = _copy_rows(result.copies) + [
        {"backup": c.remote_name, "action": f"verify: {c.status}", "remote": c.detail}
        for c in result.checks
    ]
    publish_table("offsite-sync", rows, f"Off-site sync to {result.destination}")
    publish_links(
        "offsite-copy-link",
        [(c.url, c.remote_name) for c in result.copies if c.uploaded],
        f"Verified off-site copy at {result.destination}",
    )
    _raise_for(parts)
    return result


def _raise_for(parts: list[tuple[Destination, _SyncPart]]) -> None:
    bad = [(d, c) for d, p in parts for c in p.checks if c.status not in ("ok", "archived")]
    if bad:
        dest, first = bad[0]
        raise VerifyError(
            f"off-site verification: {len(bad)} copies failed — "
            f"{dest.url(first.remote_name)}: {first.detail}"
        )
    failed = [(d, p.failures) for d, p in parts if p.failures]
    if failed:
        words = []
        for dest, failures in failed:
            name, first_error = failures[0]
            words.append(f"{dest.display}: {len(failures)} not copied — {name}: {first_error}")
        verify = any(isinstance(e, VerifyError) for _, f in failed for _, e in f)
        raise (VerifyError if verify else DestinationError)(
            f"off-site sync failed at {len(failed)} of {len(parts)} destination(s) — "
            + "; ".join(words)
        )


# --------------------------------------------------------------------------- restores


def fetch_for_restore(url: str, settings: Settings) -> Path:
    """A remote backup (`s3://...`, `user@host:/...`), downloaded, verified and decrypted
    into `BACKUP_DIR/.offsite-staging`, for db-restore, restore-all and test-restore.

    Hand the path to `release_fetched` when done; a run that dies leaves it to the next
    run's sweep of that folder.
    """
    run_logger().info("fetching %s", redact(url))
    return fetch_backup(url, settings)


def release_fetched(path: Path, settings: Settings) -> None:
    """Remove a file `fetch_for_restore` made (and only such a file)."""
    if path.parent.parent == settings.backups / STAGING_DIR:
        shutil.rmtree(path.parent, ignore_errors=True)
