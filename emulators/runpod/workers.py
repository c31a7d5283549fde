"""An endpoint's worker slots for the RunPod stand-in: bounded concurrency, FIFO start."""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

_POLL_S = 0.02  # how often a queued job re-checks cancel/ttl while waiting for a worker


class WorkerSlots:
    """One endpoint's worker slots: at most ``count`` jobs execute at once; jobs that are
    ready to start take free slots in arrival order."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._free = list(range(count))
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @property
    def running(self) -> int:
        return self.count - len(self._free)

    def acquire(self, ticket: object, give_up: Callable[[], bool]) -> int | None:
        """Block until a slot is free and ``ticket`` is first in line; the slot index, or
        None once ``give_up()`` is true (polled, so cancel/ttl/shutdown need no wake-up)."""
        with self._cond:
            self._queue.append(ticket)
            try:
                while not (self._free and self._queue[0] is ticket):
                    if give_up():
                        return None
                    self._cond.wait(_POLL_S)
                return self._free.pop(0)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, slot: int) -> None:
        with self._cond:
            self._free.append(slot)
            self._free.sort()
            self._cond.notify_all()
