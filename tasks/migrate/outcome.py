"""What a migration did: per table, per step after the data, and in all (for the report).

`MigrationFailed` carries what was done until the failure, so that a rolled-back
migration's report can still say which table and row did not match.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tasks.core.errors import BackupError
from tasks.migrate.catalog import SqliteCatalog, Trigger
from tasks.migrate.plan import TablePlan
from tasks.migrate.verify import TableCheck


@dataclass(frozen=True)
class StepResult:
    kind: str
    table: str
    what: str
    done: bool
    reason: str | None = None  # why not done
    notes: tuple[str, ...] = ()
    instead: StepResult | None = None  # the fallback that ran instead


@dataclass(frozen=True)
class TableResult:
    plan: TablePlan
    check: TableCheck
    widened: tuple[str, ...] = ()  # columns given a wider type while copying, and why
    seconds: float = 0.0


@dataclass(frozen=True)
class MigrationOutcome:
    source: str
    target: str
    schema: str
    tables: tuple[TableResult, ...] = ()
    steps: tuple[StepResult, ...] = ()
    sequences: tuple[tuple[str, str, int], ...] = ()  # table, column, value set
    triggers: tuple[Trigger, ...] = ()
    skipped: tuple[str, ...] = ()
    committed: bool = False
    seconds: float = 0.0
    failure: str | None = None

    @property
    def rows(self) -> int:
        return sum(t.check.pg_rows for t in self.tables)


class MigrationFailed(Exception):
    """The migration stopped before COMMIT (or its final check failed): `error` is what
    to report and exit with, `outcome` what was done until then (for the report)."""

    def __init__(self, error: BackupError, outcome: MigrationOutcome) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome = outcome


@dataclass
class Progress:
    source: str
    target: str
    schema: str = ""
    tables: list[TableResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    sequences: list[tuple[str, str, int]] = field(default_factory=list)
    catalog: SqliteCatalog | None = None
    started: float = field(default_factory=time.monotonic)

    def outcome(self, committed: bool = False, failure: str | None = None) -> MigrationOutcome:
        return MigrationOutcome(
            self.source,
            self.target,
            self.schema,
            tuple(self.tables),
            tuple(self.steps),
            tuple(self.sequences),
            self.catalog.triggers if self.catalog else (),
            self.catalog.skipped if self.catalog else (),
            committed,
            time.monotonic() - self.started,
            failure,
        )
