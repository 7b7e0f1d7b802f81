"""Backups at a Destination: verified copy, remote catalog, prune, verify, fetch; age encryption; the S3 lifecycle rule."""
