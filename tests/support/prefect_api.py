"""Reading what the product left on the Prefect server: events, flow runs, blocks, artifacts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def read_events(names: list[str] | None = None, prefix: str | None = None) -> list[Any]:
    """Every stored event with one of `names` (or the `prefix`), oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    name_filter = EventNameFilter(name=names) if names else EventNameFilter(prefix=[prefix or ""])
    events: list[Any] = []
    with get_client(sync_client=True) as client:
        page = client.read_events(EventFilter(event=name_filter), limit=50)
        events.extend(page.events)
        while page.next_page:
            page = client.read_events_page(str(page.next_page))
            events.extend(page.events)
    return sorted(events, key=lambda e: e.occurred)


def wait_for(probe: Callable[[], T | None], timeout: float = 60, what: str = "it") -> T:
    """Poll `probe` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def related_flow_run(event: Any) -> str | None:
    for resource in event.related:
        if resource.get("prefect.resource.role") == "flow-run":
            return str(resource["prefect.resource.id"]).removeprefix("prefect.flow-run.")
    return None
