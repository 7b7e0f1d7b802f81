"""The backup folder's lock as every job takes it: with restore-all's crash recovery first.

Only here do the two meet: `tasks.core.lock` knows nothing of restores, and
`tasks.restore.journal.recover_interrupted` takes the live database's URL from the
flow's settings (only flows load settings).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

from tasks.core.lock import backup_dir_lock
from tasks.core.settings import Settings
from tasks.restore.journal import recover_interrupted


@contextlib.contextmanager
def job_lock(settings: Settings, job: str, must_write: bool = False) -> Iterator[None]:
    """Hold BACKUP_DIR's lock for `job`; a restore-all killed mid-swap is recovered first."""
    with backup_dir_lock(
        settings.backups,
        job,
        settings.backup_lock_timeout,
        must_write=must_write,
        on_acquired=partial(recover_interrupted, database_url=settings.database_url),
    ):
        yield
