"""Building blocks of chatbot-backup.

Plain, typed functions that each do one thing (dump, compress, checksum, manifest,
rotate, upload, verify, notify). Prefect appears only in `tasks.prefect_tasks`, whose
thin `@task` wrappers the flows call.
"""
