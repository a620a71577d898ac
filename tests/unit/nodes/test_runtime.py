"""The node runtime: SIGTERM ends a node whatever it is doing, start-up included; `stop` cancels
the background tasks and releases what `start` acquired, in reverse order, on every path."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from cqrs_flow.nodes.runtime import NodeService, serve
from cqrs_flow.topology.model import Node


class WaitsForever(NodeService):
    """A node whose start never finishes (a writer waiting for a broker that is gone)."""

    stopped = False

    async def setup(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        WaitsForever.stopped = True


def test_sigterm_during_start_stops_the_node(shipped):
    async def run() -> None:
        service = WaitsForever(shipped, Node(name="stuck"), None, None)
        asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serve(service), 5)

    asyncio.run(run())
    assert WaitsForever.stopped


class Holds(NodeService):
    """A node that acquires `names` in turn, registering each release; `fail_at` fails there."""

    def __init__(self, shipped, names=("first", "second", "third"), fail_at=None) -> None:
        super().__init__(shipped, Node(name="holds"), None, None)
        self.names, self.fail_at = names, fail_at
        self.events: list[str] = []

    async def setup(self) -> None:
        self.spawn(self._work(), "work")
        for name in self.names:
            if name == self.fail_at:
                raise RuntimeError(f"cannot acquire {name}")
            self.resources.push_async_callback(self._release, name)

    async def _work(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.events.append("task cancelled")
            raise

    async def _release(self, name: str) -> None:
        self.events.append(f"released {name}")
        if name == "broken":
            raise OSError(f"{name} would not close")


def test_stop_cancels_the_tasks_then_releases_in_reverse_order_once(shipped):
    async def run() -> list[str]:
        service = Holds(shipped)
        await service.start()
        await asyncio.sleep(0)  # the task is waiting
        await service.stop()
        await service.stop()  # nothing left: a no-op
        return service.events

    assert asyncio.run(run()) == [
        "task cancelled",
        "released third",
        "released second",
        "released first",
    ]


def test_a_release_that_fails_does_not_keep_the_others_from_running(shipped):
    async def run() -> list[str]:
        service = Holds(shipped, names=("first", "broken", "third"))
        await service.start()
        with pytest.raises(OSError, match="broken would not close"):
            await service.stop()
        return service.events

    assert asyncio.run(run())[-3:] == ["released third", "released broken", "released first"]


def test_serve_releases_what_a_failed_start_acquired(shipped):
    service = Holds(shipped, fail_at="third")
    with pytest.raises(RuntimeError, match="cannot acquire third"):
        asyncio.run(asyncio.wait_for(serve(service), 5))
    # start released at once what setup acquired: the task (cancelled before it ever ran), then
    # the resources, last acquired first
    assert service.events == ["released second", "released first"]
    assert not service._tasks


def test_a_failed_background_task_ends_the_node_with_its_error(shipped):
    class Fails(Holds):
        async def _work(self) -> None:
            await asyncio.sleep(0.05)
            raise ValueError("background work failed")

    service = Fails(shipped)
    with pytest.raises(ValueError, match="background work failed"):
        asyncio.run(asyncio.wait_for(serve(service), 5))
    assert service.events == ["released third", "released second", "released first"]
