"""Proving a backup: the file checks (checksum, stream, format), the findings every check reports, the restore test and the staging-server test."""
