"""The SQLite → PostgreSQL migration wing (SPEC: "SQLite to PostgreSQL migration").

Plain typed building blocks, no Prefect. Reading SQLite: `source` (the file, watched
from before the final backup), `catalog` (its own schema), `sqltext` (what only the
CREATE text says), `profile` (what each column really holds). Deciding: `types` (pure:
PostgreSQL types that keep every value), `plan` (names and types per table). Writing:
`ddl`, `expressions`, `defaults` (the PostgreSQL statements), `copy` (COPY streaming),
`after_data` (keys, indexes, constraints, views, sequences in savepoints). Proving:
`values` and `canonical` (conversions, and the one form both sides are compared in),
`verify` (value by value before COMMIT). `transaction` runs it all in one transaction,
`outcome` records it, `report` writes it up; `target` checks the target before anything
is asked or written, `envfile` points `.env` at PostgreSQL, `cmdline` keeps the
target's password out of `ps`.
"""
