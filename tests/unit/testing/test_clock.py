"""The virtual clock: time moves only when advanced, sleepers wake in order of due time."""

from __future__ import annotations

import asyncio

import pytest

from cqrs_flow.testing.clock import VirtualClock


def test_sleepers_wake_when_time_reaches_them_in_due_order():
    async def main():
        clock, woke = VirtualClock(), []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.now()))

        tasks = [asyncio.ensure_future(sleeper(n, s)) for n, s in (("b", 3), ("a", 1), ("c", 3))]
        await asyncio.sleep(0)
        assert clock.sleeping == 3 and clock.next_due() == 1
        clock.advance(0.5)
        await asyncio.sleep(0)
        assert woke == []
        assert clock.advance_to_next()
        await asyncio.sleep(0)
        assert woke == [("a", 1.0)]
        clock.advance(10)
        await asyncio.gather(*tasks)
        assert not clock.advance_to_next() and clock.next_due() is None
        return woke

    assert asyncio.run(main()) == [("a", 1.0), ("b", 11.0), ("c", 11.0)]


def test_a_cancelled_sleeper_is_skipped_and_time_never_goes_back():
    async def main():
        clock = VirtualClock()
        task = asyncio.ensure_future(clock.sleep(2))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert clock.next_due() is None and clock.sleeping == 0
        with pytest.raises(ValueError):
            clock.advance(-1)

    asyncio.run(main())
