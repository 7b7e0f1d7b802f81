"""The guide's Recovery Objectives: RTO per scenario, RPO per data class, as checks.

Thresholds come from the settings (`RTO_*_MINUTES`, `MONITOR_RPO_*_HOURS`), whose defaults
are the guide's tables. The ages are those of the newest backup of each data class *in the
place the drill restores from* (the local folder, or the off-site destination with
`--from-offsite`): what a real recovery would get back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasks.core.errors import ConfigError

COMPLETE_FAILURE = "complete-failure"
DATABASE_CORRUPTION = "database-corruption"
SCENARIOS = (COMPLETE_FAILURE, DATABASE_CORRUPTION)

# scenario -> (the guide's name for it, the settings field of its RTO in minutes)
RTO_SETTINGS = {
    COMPLETE_FAILURE: ("Complete System Failure", "rto_complete_failure_minutes"),
    DATABASE_CORRUPTION: ("Database Corruption", "rto_database_corruption_minutes"),
}


@dataclass(frozen=True)
class DataClass:
    name: str  # the guide's RPO table row
    kinds: tuple[str, ...]  # the backup kinds that hold it ("db", "full")
    setting: str  # the settings field of its RPO in hours


DATA_CLASSES = (
    DataClass("Database", ("db", "full"), "monitor_rpo_database_hours"),
    DataClass("Configuration", ("full",), "monitor_rpo_files_hours"),
    DataClass("Uploaded Files", ("full",), "monitor_rpo_files_hours"),
    DataClass("Logs", ("full",), "monitor_rpo_logs_hours"),
)
# The data a scenario recovers: a database corruption recovers only the database.
SCENARIO_CLASSES = {
    COMPLETE_FAILURE: tuple(c.name for c in DATA_CLASSES),
    DATABASE_CORRUPTION: ("Database",),
}


def check_scenario(scenario: str) -> str:
    if scenario not in SCENARIOS:
        raise ConfigError(f"--scenario: must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    return scenario


@dataclass(frozen=True)
class RtoCheck:
    scenario: str
    label: str
    limit_minutes: float
    took_seconds: float

    @property
    def met(self) -> bool:
        return self.took_seconds <= self.limit_minutes * 60

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.label,
            "limit_minutes": self.limit_minutes,
            "took_seconds": round(self.took_seconds, 3),
            "met": self.met,
        }


@dataclass(frozen=True)
class RpoCheck:
    data_class: str
    limit_hours: float
    newest: datetime | None  # the newest backup holding it, None when there is none
    age_hours: float | None

    @property
    def met(self) -> bool:
        return self.age_hours is not None and self.age_hours <= self.limit_hours

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_class": self.data_class,
            "limit_hours": self.limit_hours,
            "newest_backup": self.newest.isoformat() if self.newest else None,
            "age_hours": None if self.age_hours is None else round(self.age_hours, 3),
            "met": self.met,
        }


def rto_check(scenario: str, settings: Any, took_seconds: float) -> RtoCheck:
    label, field = RTO_SETTINGS[scenario]
    return RtoCheck(scenario, label, float(getattr(settings, field)), took_seconds)


def rpo_checks(
    scenario: str, settings: Any, backups: Iterable[tuple[str, datetime]], now: datetime
) -> list[RpoCheck]:
    """`backups`: (kind, created_at) of every usable backup where the drill restores from."""
    seen = list(backups)
    out = []
    for data_class in DATA_CLASSES:
        if data_class.name not in SCENARIO_CLASSES[scenario]:
            continue
        times = [created for kind, created in seen if kind in data_class.kinds]
        newest = max(times) if times else None
        age = (now - newest).total_seconds() / 3600 if newest is not None else None
        out.append(
            RpoCheck(data_class.name, float(getattr(settings, data_class.setting)), newest, age)
        )
    return out
