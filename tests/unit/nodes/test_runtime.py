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


class Starts(NodeService):
    """A node whose setup only notes when it ran."""

    def __init__(self, shipped) -> None:
        super().__init__(shipped, Node(name="held"), None, None)
        self.set_up_at: float | None = None

    async def setup(self) -> None:
        self.set_up_at = asyncio.get_running_loop().time()


def test_a_held_node_sets_up_only_once_the_launcher_says_go(shipped, monkeypatch):
    from cqrs_flow.contracts.process import ENV_GO_FD
    from cqrs_flow.nodes.runtime import _start_on_go

    read_fd, write_fd = os.pipe()
    monkeypatch.setenv(ENV_GO_FD, str(read_fd))
    service = Starts(shipped)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        starting = loop.create_task(_start_on_go([service]))
        await asyncio.sleep(0.2)
        assert service.set_up_at is None  # held: imported and waiting
        went = loop.time()
        os.write(write_fd, b"go\n")
        await asyncio.wait_for(starting, 5)
        await service.stop()
        return went

    went = asyncio.run(run())
    os.close(write_fd)
    assert service.set_up_at is not None and service.set_up_at >= went


def test_a_held_node_whose_launcher_is_gone_does_not_start(shipped, monkeypatch):
    from cqrs_flow.contracts.process import ENV_GO_FD
    from cqrs_flow.errors import NodeError
    from cqrs_flow.nodes.runtime import _start_on_go

    read_fd, write_fd = os.pipe()
    os.close(write_fd)  # the launcher died before the node's turn
    monkeypatch.setenv(ENV_GO_FD, str(read_fd))
    service = Starts(shipped)
    with pytest.raises(NodeError, match="launcher went away"):
        asyncio.run(_start_on_go([service]))
    assert service.set_up_at is None
