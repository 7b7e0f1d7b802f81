"""A bounded queue between one background producer thread and the thread that reads.

The read-ahead (`tasks.stream.read_ahead`) and the restore's inflating reader
(`tasks.stream.inflate`) both decompress in a thread of their own and hand blocks over
here. What they share, and what is easy to get wrong: the producer must never block for
good on a full queue once the reader has gone away (it checks `stopped` between timed
puts), and `stop` must drain the queue until the producer has noticed, or a producer
blocked on `put` would keep its thread, its file and its blocks alive.
"""

from __future__ import annotations

import queue
import threading

PUT_WAIT = 0.2  # seconds between looks at the stop flag while the queue is full


class Handoff:
    """At most `depth` items in flight from the producer thread to the reader."""

    def __init__(self, depth: int) -> None:
        self._queue: queue.Queue[object] = queue.Queue(depth)
        self._stop = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def put(self, item: object) -> bool:
        """Producer: hand `item` over; False once the reader has stopped (then give up)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=PUT_WAIT)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> object:
        """Reader: the next item, waiting for it."""
        return self._queue.get()

    def stop(self, producer: threading.Thread) -> None:
        """Reader: tell the producer to stop, and empty the queue until it has."""
        self._stop.set()
        while producer.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
