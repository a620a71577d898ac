"""within(): a result in time, TimeoutError (and the call cancelled) when late, and a
cancellation from elsewhere left a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from cqrs_flow.transport.deadline import within


def test_a_call_in_time_gives_its_result_and_leaves_no_timer():
    async def scenario():
        loop = asyncio.get_running_loop()

        def timers() -> int:  # the loop's timers not cancelled (cancelled ones go lazily)
            return sum(not handle.cancelled() for handle in loop._scheduled)

        before = timers()
        assert await within(asyncio.sleep(0.01, "done"), 1.0) == "done"
        return timers() - before

    assert asyncio.run(scenario()) == 0


def test_a_late_call_is_cancelled_and_raises_timeout_error():
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def scenario():
        with pytest.raises(TimeoutError):
            await within(slow(), 0.05)
        task = asyncio.current_task()
        assert task.cancelling() == 0  # the task may go on: its own cancel count is as it was
        await asyncio.sleep(0)  # not cancelled again

    asyncio.run(scenario())
    assert cancelled == [True]


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def scenario():
        task = asyncio.ensure_future(within(asyncio.sleep(10), 5.0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_cancellation_from_elsewhere_as_the_time_is_up_stays_a_cancellation():
    async def scenario():
        inner = asyncio.ensure_future(within(asyncio.sleep(10), 0.05))
        await asyncio.sleep(0.05)
        inner.cancel()  # around the time the timer fires: both ask the task to stop
        with pytest.raises(asyncio.CancelledError):
            await inner

    asyncio.run(scenario())


def test_an_exception_of_the_call_is_its_own():
    async def failing():
        raise ValueError("bad")

    async def scenario():
        with pytest.raises(ValueError, match="bad"):
            await within(failing(), 1.0)

    asyncio.run(scenario())
