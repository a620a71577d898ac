"""A virtual clock for the write delay: time moves only when the runner says, so a case whose
writer waits 3 s runs in milliseconds and always sees the same order of events."""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["VirtualClock"]


class VirtualClock:
    """`now` and `sleep` as the writer's Clock wants them; `advance` moves time and wakes the
    sleepers that are due, in order of their due times."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # sleepers due at the same time wake in arrival order

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), waiter))
        await waiter  # a cancelled sleeper stays in the heap, done: skipped when it comes up

    def next_due(self) -> float | None:
        """When the next sleeper wakes; None if nothing sleeps."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    @property
    def sleeping(self) -> int:
        """Sleepers not woken yet."""
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    def advance(self, seconds: float) -> int:
        """Move time on by `seconds` and wake every sleeper due by then; how many woke."""
        if seconds < 0:
            raise ValueError(f"time does not go back ({seconds} s)")
        self._now += seconds
        woken = 0
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)
                woken += 1
        return woken

    def advance_to_next(self) -> bool:
        """Move time to the next sleeper's due time and wake it (and any due with it); False if
        nothing sleeps."""
        due = self.next_due()
        if due is None:
            return False
        self.advance(max(0.0, due - self._now))
        return True
