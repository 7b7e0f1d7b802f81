"""The full backup's tar archive: the streaming tar writer, the folder walk, the archive builder, safe extraction, the one-read scan, and the manifest."""
