"""The manifest of a full backup: its model, the on-disk entry store, and the streaming reader and writer."""
