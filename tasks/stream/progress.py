"""Progress of a long job: bytes done and rate, on a terminal and for the Prefect UI.

A flow opens a `Meter` for its run (`metering`); the byte pipes it runs through
(`write_artifact`, `verify_compressed_file`) call `phase` and `advance`, which do nothing
when no meter is open. The terminal line is drawn only when stderr is a TTY (a cron job's
mail or a journal gets no carriage returns); `on_update` (the flow's Prefect progress
artifact) is called at most once a second with the percentage, when a total is known.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TextIO

DRAW_EVERY = 0.25  # seconds between terminal redraws
REPORT_EVERY = 1.0  # seconds between on_update calls


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class Meter:
    def __init__(
        self,
        job: str,
        stream: TextIO | None = None,
        on_update: Callable[[float, str], None] | None = None,
    ) -> None:
        self.job = job
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.on_update = on_update
        self.expected: int | None = None  # the flow's estimate of the bytes it writes
        self.what = ""
        self.total: int | None = None
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._reported = 0.0
        self._line = False

    def phase(self, what: str, total: int | None) -> None:
        self._end_line()
        self.what, self.total, self.done = what, total, 0
        self.started = time.monotonic()
        self._drawn = self._reported = 0.0
        self._tick(force=True)

    def advance(self, count: int) -> None:
        self.done += count
        self._tick()

    def set(self, done: int) -> None:
        self.done = done
        self._tick()

    def text(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-6)
        of = f" of {human(self.total)}" if self.total else ""
        return (
            f"{self.job}: {self.what}: {human(self.done)}{of} done, {human(self.done / seconds)}/s"
        )

    def percent(self) -> float | None:
        if not self.total:
            return None
        return min(100.0, 100.0 * self.done / self.total)

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty and (force or now - self._drawn >= DRAW_EVERY):
            self._drawn = now
            self.stream.write("\r\x1b[K" + self.text())
            self.stream.flush()
            self._line = True
        if self.on_update is not None and (force or now - self._reported >= REPORT_EVERY):
            self._reported = now
            percent = self.percent()
            if percent is not None:
                with contextlib.suppress(Exception):  # the UI's copy must never fail a job
                    self.on_update(percent, self.text())

    def _end_line(self) -> None:
        if self._line:
            self.stream.write("\r\x1b[K" + self.text() + "\n")
            self.stream.flush()
            self._line = False

    def finish(self) -> None:
        self._end_line()
        if self.on_update is not None:
            with contextlib.suppress(Exception):
                self.on_update(100.0, f"{self.job}: done")


_current: ContextVar[Meter | None] = ContextVar("chatbot_backup_meter", default=None)


@contextlib.contextmanager
def metering(meter: Meter) -> Iterator[Meter]:
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)
        meter._end_line()


def phase(what: str, total: int | None) -> None:
    meter = _current.get()
    if meter is not None:
        meter.phase(what, total)


def advance(count: int) -> None:
    meter = _current.get()
    if meter is not None:
        meter.advance(count)


def set_done(done: int) -> None:
    meter = _current.get()
    if meter is not None:
        meter.set(done)


def expected() -> int | None:
    meter = _current.get()
    return meter.expected if meter is not None else None


def current() -> Meter | None:
    return _current.get()


def expect(total: int | None) -> None:
    """The flow's estimate of the bytes its writes will carry (for the percentage)."""
    meter = _current.get()
    if meter is not None:
        meter.expected = total


def metered() -> bool:
    return _current.get() is not None


class CountingWriter(io.RawIOBase):
    """Passes writes through and counts them on the open meter."""

    def __init__(self, inner: io.RawIOBase | io.BufferedIOBase) -> None:
        self.inner = inner

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        written = self.inner.write(data)
        count = len(data) if written is None else written
        advance(count)
        return count

    def flush(self) -> None:
        self.inner.flush()
