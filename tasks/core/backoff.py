"""Retry with exponential backoff, for transient errors only, within a time budget.

A plain loop rather than Prefect task retries: the budget is wall time (a server that
comes back within `window_seconds` is waited for, one that stays down fails at a known
moment), the same loop serves the CLI, the flows and the tests, and the caller can
reconnect between attempts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    window_seconds: float = 300.0  # no new attempt starts after this much time
    first_delay: float = 1.0
    max_delay: float = 30.0
    factor: float = 2.0
    max_attempts: int | None = None  # also stop after this many attempts (None: the window only)

    def delays(self) -> list[float]:
        """The waits between attempts, as far as the window allows (for messages and tests)."""
        out: list[float] = []
        delay, total = self.first_delay, 0.0
        while total + delay <= self.window_seconds and not self.last_attempt(len(out) + 1):
            out.append(delay)
            total += delay
            delay = min(delay * self.factor, self.max_delay)
        return out

    def last_attempt(self, attempt: int) -> bool:
        return self.max_attempts is not None and attempt >= self.max_attempts


class RetriesExhausted(Exception):
    """Every attempt failed with a transient error until the window closed."""

    def __init__(self, attempts: int, seconds: float, last: BaseException) -> None:
        super().__init__(f"{attempts} attempts over {seconds:.0f} s, last error: {last}")
        self.attempts = attempts
        self.seconds = seconds
        self.last = last


def retry_call(
    operation: Callable[[], T],
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    before_retry: Callable[[int, float, BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[T, int]:
    """Run `operation` until it succeeds; returns (its result, the number of attempts).

    A permanent error is raised at once, unchanged. Transient errors are retried after
    `first_delay`, then twice that, ... up to `max_delay`, while the next attempt would
    still start inside the window (and `max_attempts`, if set, is not reached); then
    RetriesExhausted (whose `__cause__` is the last
    error). `before_retry(attempt, delay, error)` runs before each wait, e.g. to log and
    to reconnect.
    """
    started = clock()
    delay = policy.first_delay
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation(), attempt
        except Exception as exc:
            if not is_transient(exc):
                raise
            elapsed = clock() - started
            if elapsed + delay > policy.window_seconds or policy.last_attempt(attempt):
                raise RetriesExhausted(attempt, elapsed, exc) from exc
            if before_retry is not None:
                before_retry(attempt, delay, exc)
            sleep(delay)
            delay = min(delay * policy.factor, policy.max_delay)
