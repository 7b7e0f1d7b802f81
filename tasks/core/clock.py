"""The one place the product reads the wall clock, so that tests can move time.

Backup names, rotation and the monitor all ask `utc_now()`; a soak test of a year of
backups replaces it instead of waiting a year.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
