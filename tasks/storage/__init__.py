"""The Destination interface (put / open / list / stat / delete / sha256 / is_transient) and one module per backend. Knows nothing of backups."""
