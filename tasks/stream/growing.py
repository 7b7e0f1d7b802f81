"""Read a file from the disk while this process is still writing it (issue 18).

backup-all reads every new archive back to prove it; reading it only after the last byte
was written made that read a pass of its own after the write. `GrowingFile` lets a reader
thread follow the writer instead: it opens the file by name (its own file description, so
its own offset: the bytes come back through the kernel, as a later read would see them,
not from the writer's memory), returns what is there, and at the end of what is there
waits (looking again every few milliseconds) until the writer says it finished or gave
up. Reaching the end of the file counts as the end only after the writer said `finished`.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

# How long the reader sleeps at the end of what was written before it looks again. The
# reader trails the writer by design; `finished` and `abandon` wake it at once.
_POLL_SECONDS = 0.02


class WriterGaveUp(Exception):
    """The file's writer failed: what was written is not a backup, stop reading it."""


class GrowingFile(io.RawIOBase):
    """The bytes of `path` as they are written; the writer calls `finished` or `abandon`. Reading blocks while the reader has caught up with an unfinished writer."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._changed = threading.Condition()
        self._finished = False
        self._abandoned = False
        self.size = 0  # bytes read so far

    # -- the writer's side ------------------------------------------------------------------

    def finished(self) -> None:
        """Everything is written and flushed: the end of the file is now the end."""
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    def abandon(self) -> None:
        """The write failed: the reader raises `WriterGaveUp` at its next read."""
        with self._changed:
            self._abandoned = True
            self._changed.notify_all()

    # -- the reader's side ------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            if self._abandoned:
                raise WriterGaveUp("the file's writer failed")
            with self._changed:
                finished = self._finished  # read before the file: no byte after it is missed
            count = self._file.readinto(buffer)
            if count:
                self.size += count
                return count
            if finished:
                return 0
            with self._changed:
                if not self._finished and not self._abandoned:
                    self._changed.wait(_POLL_SECONDS)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            super().close()
