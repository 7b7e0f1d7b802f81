"""The two backup artifacts: the database-only dump file and the full backup archive, each written in one pass."""
