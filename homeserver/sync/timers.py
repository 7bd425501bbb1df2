"""One-shot timers for expiring ephemeral state (typing, presence idleness).

Each expiring entry gets its own timer instead of a sweeping loop, so nothing runs while
nothing expires. The scheduler is injected so tests can move time by hand.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

from homeserver.clock import FakeClock


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle: ...


class LoopScheduler:
    """Timers on the running asyncio loop."""

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(delay_ms, 0) / 1000, callback)


class _FakeHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """Timers that fire only when `advance` moves time past them (tests)."""

    def __init__(self, clock: FakeClock | None = None):
        # When given a FakeClock, advance() moves it too, so services see one time.
        self._clock = clock
        self.now_ms = 0
        self._queue: list[tuple[int, int, _FakeHandle, Callable[[], None]]] = []
        self._seq = itertools.count()

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        handle = _FakeHandle()
        heapq.heappush(self._queue, (self.now_ms + max(delay_ms, 0), next(self._seq), handle, callback))
        return handle

    def advance(self, ms: int) -> None:
        target = self.now_ms + ms
        while self._queue and self._queue[0][0] <= target:
            due, _, handle, callback = heapq.heappop(self._queue)
            self._move_to(due)
            if not handle.cancelled:
                callback()
        self._move_to(target)

    def _move_to(self, ms: int) -> None:
        if self._clock is not None:
            self._clock.advance(ms - self.now_ms)
        self.now_ms = ms

    def pending(self) -> int:
        return sum(1 for _, _, h, _ in self._queue if not h.cancelled)
