"""EntityLanes: per-key arrival order, different keys side by side, due times fixed on arrival."""

from __future__ import annotations

import asyncio

from cqrs_flow.nodes.writer import EntityLanes

D = 0.1  # a "slow" work or delay, in seconds


def worker(log: list, name: str, seconds: float = 0.0, fail: bool = False):
    async def work() -> None:
        log.append(("start", name))
        await asyncio.sleep(seconds)
        if fail:
            log.append(("fail", name))
            raise RuntimeError(f"{name} failed")
        log.append(("end", name))

    return work


async def arrive(lanes: EntityLanes, key: str, due: float, work) -> asyncio.Task:
    """Start a run and let it register in its lane before the next one arrives."""
    task = asyncio.create_task(lanes.run(key, due, work))
    await asyncio.sleep(0)
    return task


def test_same_key_runs_in_arrival_order_even_when_the_first_is_slow():
    async def main():
        lanes, log = EntityLanes(), []
        now = asyncio.get_running_loop().time()
        tasks = [
            await arrive(lanes, "k", now, worker(log, "slow", D)),
            await arrive(lanes, "k", now, worker(log, "fast")),
            await arrive(lanes, "k", now, worker(log, "last")),
        ]
        assert lanes.keys == 1
        await asyncio.gather(*tasks)
        assert lanes.keys == 0 and len(lanes) == 0  # nothing is kept once a lane is empty
        return log

    assert asyncio.run(main()) == [
        ("start", "slow"),
        ("end", "slow"),
        ("start", "fast"),
        ("end", "fast"),
        ("start", "last"),
        ("end", "last"),
    ]


def test_different_keys_run_side_by_side():
    n = 5

    async def main():
        lanes, log = EntityLanes(), []
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = [await arrive(lanes, f"k{i}", started, worker(log, f"w{i}", D)) for i in range(n)]
        assert lanes.keys == n
        await asyncio.gather(*tasks)
        return log, loop.time() - started

    log, elapsed = asyncio.run(main())
    # Every work started before any finished...
    assert [event for event, _ in log] == ["start"] * n + ["end"] * n
    # ...so n works of D seconds take about D, not n * D.
    assert elapsed < n * D / 2


def test_due_time_is_fixed_on_arrival():
    async def main():
        lanes, log = EntityLanes(), []
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = [await arrive(lanes, "k", started + D, worker(log, f"w{i}")) for i in range(3)]
        await asyncio.gather(*tasks)
        return log, loop.time() - started

    log, elapsed = asyncio.run(main())
    assert [name for event, name in log if event == "end"] == ["w0", "w1", "w2"]
    assert D * 0.9 <= elapsed < 2.5 * D  # waited for the due time once, not once per queued work


def test_work_waits_until_it_is_due():
    async def main():
        lanes, log = EntityLanes(), []
        loop = asyncio.get_running_loop()
        started = loop.time()
        await lanes.run("k", started + D, worker(log, "w"))
        return loop.time() - started

    assert asyncio.run(main()) >= D * 0.9


def test_clock_is_injectable():
    async def main():
        lanes, log = EntityLanes(clock=lambda: 1000.0), []
        loop = asyncio.get_running_loop()
        started = loop.time()
        await lanes.run("k", 999.0, worker(log, "w"))  # due in the past by the given clock
        return log, loop.time() - started

    log, elapsed = asyncio.run(main())
    assert log == [("start", "w"), ("end", "w")]
    assert elapsed < D


def test_a_failed_work_does_not_block_the_next_on_the_same_key():
    async def main():
        lanes, log = EntityLanes(), []
        now = asyncio.get_running_loop().time()
        failing = await arrive(lanes, "k", now, worker(log, "bad", D / 2, fail=True))
        after = await arrive(lanes, "k", now, worker(log, "good"))
        results = await asyncio.wait_for(
            asyncio.gather(failing, after, return_exceptions=True), timeout=5
        )
        return log, results, len(lanes)

    log, results, remaining = asyncio.run(main())
    assert log == [("start", "bad"), ("fail", "bad"), ("start", "good"), ("end", "good")]
    assert (
        isinstance(results[0], RuntimeError) and results[1] is None
    )  # the error reaches its caller
    assert remaining == 0


def test_an_empty_key_keeps_no_order():
    async def main():
        lanes, log = EntityLanes(), []
        now = asyncio.get_running_loop().time()
        tasks = [
            await arrive(lanes, "", now, worker(log, "slow", D)),
            await arrive(lanes, "", now, worker(log, "fast")),
        ]
        assert lanes.keys == 0
        await asyncio.gather(*tasks)
        return log

    log = asyncio.run(main())
    assert log.index(("end", "fast")) < log.index(("end", "slow"))


def test_cancelled_waiter_does_not_let_its_successor_overtake():
    # Regression: a cancelled waiter used to release its successor at once.
    async def main():
        lanes, log = EntityLanes(), []
        now = asyncio.get_running_loop().time()
        first = await arrive(lanes, "k", now, worker(log, "first", D))
        second = await arrive(lanes, "k", now, worker(log, "second"))
        third = await arrive(lanes, "k", now, worker(log, "third"))
        second.cancel()
        await asyncio.gather(first, third, return_exceptions=True)
        return log

    assert asyncio.run(main()) == [
        ("start", "first"),
        ("end", "first"),
        ("start", "third"),
        ("end", "third"),
    ]


def test_drain_waits_for_runs_in_progress_and_reports_the_unfinished():
    async def scenario():
        lanes = EntityLanes()
        loop = asyncio.get_running_loop()
        done = []

        async def work(name):
            done.append(name)

        quick = loop.create_task(lanes.run("a", loop.time() + 0.05, lambda: work("quick")))
        slow = loop.create_task(lanes.run("b", loop.time() + 5.0, lambda: work("slow")))
        await asyncio.sleep(0)
        assert len(lanes) == 2
        left = await lanes.drain(0.5)
        slow.cancel()
        await asyncio.gather(quick, slow, return_exceptions=True)
        return left, done, len(lanes)

    left, done, pending_after = asyncio.run(scenario())
    assert left == 1 and done == ["quick"] and pending_after == 0


def test_the_delay_is_waited_out_with_the_sleep_given():
    """The clock seam: lanes wait `due - clock()` with the sleep they are given, not the loop's
    (cqrs-flow test gives a virtual one), and still keep each key's order."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main():
        lanes, log = EntityLanes(clock=lambda: 100.0, sleep=sleep), []
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.ensure_future(lanes.run("k", 103.0, worker(log, "a")))
        second = asyncio.ensure_future(lanes.run("k", 103.5, worker(log, "b")))
        await asyncio.gather(first, second)
        return log, loop.time() - started

    log, elapsed = asyncio.run(main())
    assert slept == [3.0, 3.5]  # a 3 s delay, asked of the given sleep
    assert log == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")]
    assert elapsed < 1.0  # no real waiting
