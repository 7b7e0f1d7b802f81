"""The local backup records: which backups a folder holds, with their tier and sidecars."""
