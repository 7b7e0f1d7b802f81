"""`OFFSITE_BANDWIDTH_LIMIT`: an upload rate cap, parsed and applied per destination.

The cap is enforced where the bytes leave this process: uploads with a cap are streamed
in small chunks through `Throttle`, which sleeps whenever the bytes sent so far are ahead
of `rate × elapsed`. Each destination gets its own Throttle per upload.
"""

from __future__ import annotations

import re
import time

from tasks.core.errors import ConfigError

_RATE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmg]?)(?:i?b?)?(?:/s)?\s*$", re.I)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_bandwidth(text: str | None) -> float | None:
    """`500K`, `2M`, `1G`, `250000` (bytes per second) -> bytes per second; None: no cap."""
    if text is None or not str(text).strip():
        return None
    match = _RATE.match(str(text))
    if match is None:
        raise ConfigError(
            f"OFFSITE_BANDWIDTH_LIMIT: {text!r} is not a rate (bytes per second, "
            "e.g. 500K, 2M or 1G)"
        )
    rate = float(match.group("number")) * _UNITS[match.group("unit").lower()]
    if rate < 1024:
        raise ConfigError(f"OFFSITE_BANDWIDTH_LIMIT: {text!r} is below 1K bytes per second")
    return rate


class Throttle:
    """Keeps the average rate of `sent(n)` calls at or under `rate` bytes per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.done = 0

    @property
    def chunk(self) -> int:
        """A chunk small enough to keep the rate smooth (about 1/8 s of sending)."""
        return max(4096, min(1 << 20, int(self.rate / 8)))

    def sent(self, size: int) -> None:
        self.done += size
        ahead = self.done / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)
