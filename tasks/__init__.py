"""Building blocks of chatbot-backup.

Plain, typed functions that each do one thing (dump, compress, checksum, manifest,
rotate, upload, verify, notify). Prefect appears only in the `*_tasks.py` modules
(`prefect_tasks`, `full_backup_tasks`, `restore_tasks`, ...), whose thin `@task`
wrappers the flows call.
"""
