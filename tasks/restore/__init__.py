"""Restores: what a file holds, SQLite and PostgreSQL restores, the restore-all plan, swap, journal and recovery."""
