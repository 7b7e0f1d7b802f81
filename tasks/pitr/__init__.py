"""PostgreSQL point-in-time recovery: the `pitr` wing (SPEC: "PostgreSQL point-in-time recovery").

Plain typed building blocks, no Prefect: WAL file names and timelines (`segments`), the
WAL archive folder (`wal_catalog`, `archive`, `archive_offsite`), base backups
(`basebackup`, `base_manifest`, `base_catalog`), laying out and proving a recovery
(`recovery`, `recovery_verify`), which WAL a kept base needs (`retention`), the archiver's
health (`archiver_status`) and the server settings PITR needs (`setup`). The Prefect
`@task` wrappers live in `tasks.steps.pitr`.

`wal-push` and `wal-fetch` run once per 16 MB segment, called by PostgreSQL itself: the
modules they import (`segments`, `wal_catalog`, `archive`) import nothing heavier than
the project's codec, so the command answers well inside its 0.5 s budget.
"""
