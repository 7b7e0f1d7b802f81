"""The migration report in Markdown: tables, rows, checksums, every type choice, what was
not translated (and why), the sequences, and the `.env` change.

The same text goes to stdout, to a Prefect markdown artifact and to
`$BACKUP_DIR/reports/migration_YYYYMMDD_HHMMSS.md`. It names places, never the URL's
password: the target appears as user@host:port/db, and the whole text is redacted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.atomic import ensure_private_dir, write_text_atomic
from tasks.core.naming import timestamp
from tasks.core.redact import redact
from tasks.migrate.outcome import MigrationOutcome, StepResult


@dataclass(frozen=True)
class ReportContext:
    moment: dt.datetime
    final_backup: str | None = None
    env_lines: tuple[str, ...] = ()
    env_written: str | None = None  # where the old .env was kept, when it was written
    env_note: str | None = None
    first_postgres_backup: str | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _step_line(step: StepResult) -> str:
    line = f"- {step.kind} on `{step.table}`: {step.what} — {step.reason}"
    if step.instead is not None:
        state = "created" if step.instead.done else f"not created either ({step.instead.reason})"
        line += f"; instead: {step.instead.what}, {state}"
    return line


def render(outcome: MigrationOutcome, context: ReportContext) -> str:
    status = "COMMITTED" if outcome.committed else "ROLLED BACK"
    lines = [
        f"# SQLite → PostgreSQL migration: {status}",
        "",
        f"- when: {context.moment.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC "
        f"({outcome.seconds:.1f} s)",
        f"- from: {outcome.source}",
        f"- to: {outcome.target}, schema `{outcome.schema or '?'}`",
        f"- final SQLite backup: {context.final_backup or 'none'}"
        + (" (tier monthly: rotation keeps it 365 days)" if context.final_backup else ""),
        f"- tables: {len(outcome.tables)}, rows: {outcome.rows}",
    ]
    if outcome.failure:
        lines += ["", "## Failed", "", outcome.failure]
        if not outcome.committed:
            lines.append("")
            lines.append("Nothing was committed: the target holds nothing of this migration.")
    lines += ["", "## Tables", "", "| table | PostgreSQL | rows (SQLite / PostgreSQL) | sha256 of the values (both sides) |",
              "|---|---|---|---|"]
    for table in outcome.tables:
        check = table.check
        same = check.sqlite_sha256 == check.pg_sha256
        digest = check.pg_sha256 if same else f"{check.sqlite_sha256} / {check.pg_sha256} DIFFER"
        lines.append(
            f"| {_cell(check.table)} | {_cell(table.plan.pg_name)} | {check.sqlite_rows} / {check.pg_rows} | `{digest}` |"
        )
    mismatches = [t.check.mismatch for t in outcome.tables if t.check.mismatch is not None]
    if mismatches:
        lines += ["", "## Verification", ""] + [f"- MISMATCH {m.line()}" for m in mismatches]
    lines += ["", "## Column types", ""]
    for table in outcome.tables:
        lines += [f"### {table.plan.pg_name}", "", "| column | SQLite declared | PostgreSQL | why |", "|---|---|---|---|"]
        for column in table.plan.columns:
            renamed = "" if column.pg_name == column.source.name else f" (was {column.source.name})"
            lines.append(
                f"| {_cell(column.pg_name + renamed)} | {_cell(column.source.declared or '(none)')} | "
                f"{column.choice.pg_type} | {_cell(column.choice.reason)} |"
            )
        lines.append("")
    changed = [
        f"- `{t.plan.pg_name}.{c.pg_name}` ({c.choice.pg_type}): {c.choice.changed}"
        for t in outcome.tables
        for c in t.plan.columns
        if c.choice.changed
    ]
    widened = [f"- `{t.plan.pg_name}`: {w}" for t in outcome.tables for w in t.widened]
    if changed or widened:
        lines += ["## Values kept in another form", ""] + changed + widened + [""]
    refused = [s for s in outcome.steps if not s.done]
    created = [s for s in outcome.steps if s.done]
    lines += [
        "## Keys, defaults, constraints, indexes, foreign keys, views",
        "",
        f"{len(created)} created after the data, {len(refused)} not.",
        "",
    ]
    if refused:
        lines += ["### Not translated", ""] + [_step_line(s) for s in refused] + [""]
    notes = [f"- `{t.plan.pg_name}`: {n}" for t in outcome.tables for n in t.plan.notes]
    notes += [f"- {s.kind} on `{s.table}` ({s.what}): {n}" for s in outcome.steps for n in s.notes]
    if notes:
        lines += ["### Notes", ""] + notes + [""]
    if outcome.sequences:
        lines += ["## Identity sequences", ""]
        lines += [f"- `{t}.{c}`: next value {v + 1}" for t, c, v in outcome.sequences] + [""]
    if outcome.triggers:
        lines += ["## Triggers (not migrated: SQLite trigger bodies do not translate)", ""]
        lines += [f"- {t.name} on {t.table}" for t in outcome.triggers] + [""]
    if outcome.skipped:
        lines += ["## Skipped", ""] + [f"- {s}" for s in outcome.skipped] + [""]
    if context.env_lines:
        lines += ["## `.env` change", "", "```"] + list(context.env_lines) + ["```", ""]
        if context.env_written:
            lines.append(f"Written; the previous `.env` was kept as {context.env_written}.")
        else:
            lines.append("Not written: run again with `--update-env`, or edit `.env` by hand.")
        if context.env_note:
            lines.append(context.env_note)
        lines.append("")
    if context.first_postgres_backup:
        lines += [f"First PostgreSQL backup: {context.first_postgres_backup}", ""]
    lines += list(context.extra)
    return redact("\n".join(lines).rstrip() + "\n")


def report_path(backup_dir: Path, moment: dt.datetime) -> Path:
    return backup_dir / "reports" / f"migration_{timestamp(moment)}.md"


def write_report(backup_dir: Path, moment: dt.datetime, text: str) -> Path:
    """`$BACKUP_DIR/reports/migration_YYYYMMDD_HHMMSS.md`, 0600, written atomically."""
    path = report_path(backup_dir, moment)
    ensure_private_dir(path.parent)
    write_text_atomic(path, redact(text))
    return path
