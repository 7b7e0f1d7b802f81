"""The SQLite → PostgreSQL migration wing (SPEC: "SQLite to PostgreSQL migration").

Plain typed building blocks, no Prefect: read SQLite's own catalog (`catalog`), look at
the values each column really holds (`profile`), choose PostgreSQL types that keep every
value (`types`, pure), convert and normalise values (`values`), write the DDL (`ddl`,
`sqltext`), stream rows with COPY (`copy`), compare both sides value by value (`verify`),
run it all in one PostgreSQL transaction (`transaction`), and report (`report`); `target`
checks the target before anything is asked or written, `envfile` points `.env` at
PostgreSQL, `cmdline` keeps the target's password out of `ps`.
"""
