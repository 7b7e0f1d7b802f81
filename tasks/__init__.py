"""Building blocks of chatbot-backup, one subpackage (a "wing") per concern.

Plain, typed functions that each do one thing; Prefect appears only in `tasks.steps`,
whose thin `@task` wrappers the flows call. Lower wings never import higher ones
(docs/dev/architecture.md draws them; the import-linter contract in pyproject.toml
enforces it).
"""
