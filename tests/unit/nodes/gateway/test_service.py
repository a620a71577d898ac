"""GatewayService.start opens its resources in order and releases them in reverse, on stop and
on a start that fails at any step, a cancelled one included; stop after a failed start is safe."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.gateway import service as gateway_service
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.resolvers import Resolvers
from cqrs_flow.nodes.gateway.service import GatewayService
from cqrs_flow.security.tokens import ENV_SECRET
from cqrs_flow.topology.model import Address, Topology
from cqrs_flow.topology.relocate import free_ports

from .fakes import FakeMqtt

# What start opens, in order, and what releases each.
RELEASED_BY = {
    "plugins started": "plugins stopped",
    "reader opened": "reader closed",
    "change log opened": "change log closed",
    "outbox opened": "outbox closed",
    "mqtt connected": "mqtt disconnected",
    "http opened": "http closed",
}
# The steps of start that can fail, in order, and what each opens (building the engine: nothing).
STEPS = {
    "plugins": "plugins started",
    "reader": "reader opened",
    "changes": "change log opened",  # the shipped gateway has a live subscription
    "outbox": "outbox opened",
    "connect": "mqtt connected",
    "engine": None,
    "http": "http opened",
}


class Injected(Exception):
    """The failure a test makes one step of start raise."""


class Started:
    """A gateway whose resources are tracked: `events` lists what was opened and released,
    `tasks` the background tasks it spawned."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, fail_at: str | None, failure: BaseException
    ) -> None:
        self.events: list[str] = []
        self.tasks: list[asyncio.Task[Any]] = []
        events = self.events

        def step(name: str) -> None:
            if name == fail_at:
                raise failure

        real_start_plugins = gateway_service.start_plugins

        async def start_plugins(*args: Any) -> list[Any]:
            step("plugins")
            plugins = await real_start_plugins(*args)
            assert plugins, "the shipped gateway has a plugin"
            events.append("plugins started")
            for plugin in plugins:
                real_stop = plugin.stop

                async def stop(real_stop: Any = real_stop) -> None:
                    events.append("plugins stopped")
                    await real_stop()

                plugin.stop = stop
            return plugins

        class Reader(gateway_service.ServiceClient):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                step("reader")
                super().__init__(*args, **kwargs)
                events.append("reader opened")

            async def close(self) -> None:
                events.append("reader closed")
                await super().close()

        class Changes(gateway_service.ChangesClient):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                step("changes")
                super().__init__(*args, **kwargs)
                events.append("change log opened")

            async def close(self) -> None:
                events.append("change log closed")
                await super().close()

        class TrackedOutbox(Outbox):
            @classmethod
            async def open(cls, *args: Any, **kwargs: Any) -> Outbox:
                step("outbox")
                outbox = await super().open(*args, **kwargs)
                events.append("outbox opened")
                return outbox

            async def close(self) -> None:
                events.append("outbox closed")
                await super().close()

        async def connect(client: FakeMqtt, *args: Any, **kwargs: Any) -> None:
            step("connect")
            client.is_connected = True
            events.append("mqtt connected")

        real_engine = Resolvers.engine

        async def engine(self: Resolvers, *args: Any) -> Any:
            step("engine")
            return await real_engine(self, *args)

        real_setup, real_cleanup = web.AppRunner.setup, web.AppRunner.cleanup

        async def setup(runner: web.AppRunner) -> None:
            step("http")
            await real_setup(runner)
            events.append("http opened")

        async def cleanup(runner: web.AppRunner) -> None:
            events.append("http closed")
            await real_cleanup(runner)

        real_spawn = GatewayService.spawn

        def spawn(service: GatewayService, *args: Any) -> asyncio.Task[Any]:
            task = real_spawn(service, *args)
            self.tasks.append(task)
            return task

        monkeypatch.setattr(gateway_service, "start_plugins", start_plugins)
        monkeypatch.setattr(gateway_service, "ServiceClient", Reader)
        monkeypatch.setattr(gateway_service, "ChangesClient", Changes)
        monkeypatch.setattr(gateway_service, "Outbox", TrackedOutbox)
        monkeypatch.setattr(gateway_service, "new_client", lambda *a, **k: FakeMqtt(events))
        monkeypatch.setattr(gateway_service, "connect", connect)
        monkeypatch.setattr(Resolvers, "engine", engine)
        monkeypatch.setattr(web.AppRunner, "setup", setup)
        monkeypatch.setattr(web.AppRunner, "cleanup", cleanup)
        monkeypatch.setattr(GatewayService, "spawn", spawn)

    def opened(self) -> list[str]:
        return [e for e in self.events if e in RELEASED_BY]

    def released(self) -> list[str]:
        return [e for e in self.events if e not in RELEASED_BY]


@pytest.fixture
def topology(shipped: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Topology:
    """The shipped system with its gateway on a free port and its outbox in tmp_path."""
    monkeypatch.setenv(ENV_SECRET, "fedcba9876543210" * 4)
    gateway = dataclasses.replace(
        shipped.nodes["gateway"], listen=Address("127.0.0.1", free_ports(1)[0]), data=tmp_path
    )
    return dataclasses.replace(shipped, nodes={**shipped.nodes, "gateway": gateway})


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def outbox_is_free(directory: Path) -> bool:
    """Whether the outbox's database in `directory` was closed (its lock is free again)."""
    try:
        outbox = await Outbox.open(directory, 60.0)
    except Exception:
        return False
    await outbox.close()
    return True


async def assert_all_released(tracked: Started, topology: Topology, directory: Path) -> None:
    """What was opened was released in reverse order, and nothing is left behind."""
    assert tracked.released() == [RELEASED_BY[e] for e in reversed(tracked.opened())]
    assert all(task.done() for task in tracked.tasks)
    assert port_is_free(topology.nodes["gateway"].listen.port)
    assert await outbox_is_free(directory)


def test_start_then_stop_releases_everything_in_reverse_order(
    topology, shipped_protos, monkeypatch, tmp_path
):
    tracked = Started(monkeypatch, None, Injected())

    async def scenario() -> None:
        service = GatewayService(topology, topology.nodes["gateway"], shipped_protos, None)
        await service.start()
        assert tracked.opened() == list(RELEASED_BY) and tracked.released() == []
        assert not port_is_free(topology.nodes["gateway"].listen.port)
        assert not await outbox_is_free(tmp_path)
        assert not any(task.done() for task in tracked.tasks) and len(tracked.tasks) == 2
        await service.stop()
        await assert_all_released(tracked, topology, tmp_path)
        await service.stop()  # a second stop changes nothing
        assert len(tracked.released()) == len(RELEASED_BY)

    asyncio.run(scenario())


@pytest.mark.parametrize("failure", [Injected("injected"), asyncio.CancelledError()])
@pytest.mark.parametrize("fail_at", STEPS)
def test_a_start_failing_at_any_step_releases_what_it_opened(
    topology, shipped_protos, monkeypatch, tmp_path, fail_at, failure
):
    tracked = Started(monkeypatch, fail_at, failure)

    async def scenario() -> None:
        service = GatewayService(topology, topology.nodes["gateway"], shipped_protos, None)
        with pytest.raises(type(failure)):
            await service.start()
        opened = tracked.opened()
        # the failing step opened nothing; the steps before it opened what they open
        assert STEPS[fail_at] not in opened and len(opened) >= list(STEPS).index(fail_at) - 1
        await assert_all_released(tracked, topology, tmp_path)
        await service.stop()  # as serve() does after a failed start: safe, and nothing twice
        assert tracked.released() == [RELEASED_BY[e] for e in reversed(opened)]

    asyncio.run(scenario())


def test_a_port_in_use_fails_start_with_a_node_error_and_releases_the_rest(
    topology, shipped_protos, monkeypatch, tmp_path
):
    tracked = Started(monkeypatch, None, Injected())
    port = topology.nodes["gateway"].listen.port

    async def scenario() -> None:
        service = GatewayService(topology, topology.nodes["gateway"], shipped_protos, None)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            with pytest.raises(
                NodeError, match=r"node .gateway. cannot listen on .* is already in use by pid"
            ):
                await service.start()
        assert tracked.opened() == list(RELEASED_BY)
        await assert_all_released(tracked, topology, tmp_path)

    asyncio.run(scenario())
