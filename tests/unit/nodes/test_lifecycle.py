"""Each node kind releases what it acquired, whatever step of its start fails.

A failure is injected at each acquisition step in turn (the step is made to raise); then the
test checks that everything acquired before it was released (ports free again, the backend
closed, MQTT clients disconnected, channels closed, plugins stopped, tasks cancelled) and that
`stop` is safe, twice. The nodes run in this process with real components: gRPC servers and the
embedded broker on free ports, a durable store in tmp_path.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmqtt
import pytest
from grpc_health.v1.health import aio as health_aio

import cqrs_flow.nodes.reader.service as reader_node
import cqrs_flow.nodes.store as store_node
import cqrs_flow.nodes.writer as writer_node
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes import build_service, runtime
from cqrs_flow.nodes.broker.access import RoutingBroker
from cqrs_flow.plugins import Plugin
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.security.tokens import ENV_SECRET
from cqrs_flow.stores import SqliteStore
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import Address, Topology
from cqrs_flow.topology.relocate import relocate
from cqrs_flow.transport.rpc import ServiceClient

from ..helpers import SHIPPED

SECRET = "0123456789abcdef" * 4


class Injected(Exception):
    """The failure a test injects at one step of a node's start."""


def inject(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, call: int = 1, after=False):
    """Make the `call`-th call of `owner.name` raise Injected: before it does its work, or,
    with `after`, once it has done it (the step acquired its resource, the next one fails)."""
    real = getattr(owner, name)
    calls = 0

    def due() -> bool:
        nonlocal calls
        calls += 1
        return calls == call

    if inspect.iscoroutinefunction(real):

        async def step(*args: Any, **kwargs: Any) -> Any:
            hit = due()
            if hit and not after:
                raise Injected(name)
            result = await real(*args, **kwargs)
            if hit:
                raise Injected(name)
            return result

    else:

        def step(*args: Any, **kwargs: Any) -> Any:
            hit = due()
            if hit and not after:
                raise Injected(name)
            result = real(*args, **kwargs)
            if hit:
                raise Injected(name)
            return result

    monkeypatch.setattr(owner, name, step)


def injected(error: BaseException | None) -> bool:
    """Whether `error` is the injected failure, or was raised because of it (the failure of a
    plugin or of amqtt is wrapped, and the node says it in its own words)."""
    while error is not None and not isinstance(error, Injected):
        error = error.__cause__ or error.__context__
    return error is not None


def port_free(address: Address) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address.host, address.port))
        except OSError:
            return False
    return True


async def start_failing(service: runtime.NodeService, ready: bool) -> None:
    """Start `service`, which must fail with the injected failure, then stop it a second time.
    With `ready`, run it as `cqrs-flow node` does (serve), with the readiness signal failing."""
    if ready:
        with pytest.raises(Injected):
            await asyncio.wait_for(runtime.serve(service), 20)
    else:
        with pytest.raises(Exception) as failed:
            try:
                await asyncio.wait_for(service.start(), 20)
            finally:
                await service.stop()
        assert injected(failed.value), failed.value
    await service.stop()  # once more: nothing left to release, nothing raised


class Probe:
    """Records what the nodes acquire and release: service clients, plugins, MQTT clients and
    background tasks (the real ones, wrapped)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clients: list[ServiceClient] = []
        self.closed: list[ServiceClient] = []
        self.plugins: list[Plugin] = []
        self.stopped: list[Plugin] = []
        self.mqtt: list[Any] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self._wrap(
            monkeypatch, ServiceClient, "__init__", lambda client, *_: self.clients.append(client)
        )
        self._wrap(monkeypatch, ServiceClient, "close", lambda client: self.closed.append(client))
        self._wrap(monkeypatch, Plugin, "start", lambda plugin: self.plugins.append(plugin))
        self._wrap(monkeypatch, Plugin, "stop", lambda plugin: self.stopped.append(plugin))
        real_spawn = runtime.NodeService.spawn

        def spawn(service: runtime.NodeService, coroutine: Any, name: str) -> asyncio.Task[Any]:
            self.tasks.append(real_spawn(service, coroutine, name))
            return self.tasks[-1]

        monkeypatch.setattr(runtime.NodeService, "spawn", spawn)
        real_client = writer_node.new_client

        def new_client(*args: Any, **kwargs: Any) -> Any:
            self.mqtt.append(real_client(*args, **kwargs))
            return self.mqtt[-1]

        monkeypatch.setattr(writer_node, "new_client", new_client)

    @staticmethod
    def _wrap(
        monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, record: Callable[..., None]
    ) -> None:
        real = getattr(owner, name)
        if inspect.iscoroutinefunction(real):

            async def done(self: Any, *args: Any, **kwargs: Any) -> Any:
                result = await real(self, *args, **kwargs)
                record(self, *args)
                return result

        else:

            def done(self: Any, *args: Any, **kwargs: Any) -> Any:
                result = real(self, *args, **kwargs)
                record(self, *args)
                return result

        monkeypatch.setattr(owner, name, done)

    def all_released(self) -> None:
        assert {id(c) for c in self.clients} <= {id(c) for c in self.closed}, "a channel is open"
        assert {id(p) for p in self.plugins} <= {id(p) for p in self.stopped}, "a plugin runs"
        assert not any(client.is_connected for client in self.mqtt), "an MQTT client is connected"
        assert all(task.done() for task in self.tasks), "a background task runs"


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Topology]:
    """overrides -> the shipped topology on free ports, with the secret in the environment."""
    monkeypatch.setenv(ENV_SECRET, SECRET)

    def make(overrides: dict[str, Any] | None = None) -> Topology:
        return load_topology(relocate(SHIPPED, tmp_path / "topology.yaml", overrides))

    return make


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    return Probe(monkeypatch)


def build(topology: Topology, name: str, protos: ProtoSet) -> runtime.NodeService:
    return build_service(topology, name, protos, {ENV_SECRET: SECRET})


# -- the store ----------------------------------------------------------------------------------

STORE_STEPS = {
    "backend": (store_node, "open_backends", 1, False),
    "backend watched": (runtime.NodeService, "spawn", 1, True),
    "write server": (store_node, "start_server", 1, False),
    "write server health": (health_aio.HealthServicer, "set", 1, False),
    "read server": (store_node, "start_server", 2, False),
    "read server health": (health_aio.HealthServicer, "set", 2, False),
    "ready": (runtime, "_notify_ready", 1, False),
}


@pytest.mark.parametrize("step", STORE_STEPS)
def test_a_store_that_fails_to_start_releases_what_it_opened(
    step, system, probe, shipped_protos, monkeypatch, tmp_path
):
    topology = system({"nodes.store.data": "data"})
    service = build(topology, "store", shipped_protos)
    owner, name, call, after = STORE_STEPS[step]
    inject(monkeypatch, owner, name, call, after)

    asyncio.run(start_failing(service, ready=step == "ready"))

    store = topology.nodes["store"]
    assert port_free(store.write.listen) and port_free(store.read.listen)
    probe.all_released()

    async def reopen() -> None:  # the data directory's lock is free again: the backend is closed
        collection = topology.entities_of(store)[0].collection
        await (await SqliteStore.open(tmp_path / "data", collection)).close()

    asyncio.run(reopen())


def test_a_store_releases_in_reverse_order(system, shipped_protos, monkeypatch):
    """The servers stop before the backend closes: a call in flight still has its data."""
    service = build(system({"nodes.store.data": "data"}), "store", shipped_protos)
    order: list[str] = []
    real_open = store_node.open_backends

    async def open_backends(*args: Any) -> Any:
        backends = await real_open(*args)
        for backend in backends.values():
            real_close = backend.close

            async def close(real_close: Any = real_close) -> None:
                order.append("backend")
                await real_close()

            backend.close = close
        return backends

    monkeypatch.setattr(store_node, "open_backends", open_backends)
    real_start = store_node.start_server

    async def start_server(listen: Address, *args: Any) -> Any:
        server = await real_start(listen, *args)
        real_stop = server.stop

        async def stop(grace: float | None) -> None:
            order.append(f"server {listen.port}")
            await real_stop(grace)

        server.stop = stop
        return server

    monkeypatch.setattr(store_node, "start_server", start_server)

    async def main() -> None:
        await service.start()
        await service.stop()

    asyncio.run(main())
    store = service.node
    servers = {f"server {store.read.listen.port}", f"server {store.write.listen.port}"}
    assert set(order[:2]) == servers and order[2:] == ["backend"]


# -- the reader ---------------------------------------------------------------------------------

READER_STEPS = {
    "store channel": (ServiceClient, "__init__", 1, False),
    "plugin": (Plugin, "start", 1, False),
    "server": (reader_node, "start_server", 1, False),
    "server health": (health_aio.HealthServicer, "set", 1, False),
    "ready": (runtime, "_notify_ready", 1, False),
}


@pytest.mark.parametrize("step", READER_STEPS)
def test_a_reader_that_fails_to_start_releases_what_it_opened(
    step, system, probe, shipped_protos, monkeypatch
):
    topology = system()
    service = build(topology, "reader", shipped_protos)
    inject(monkeypatch, *READER_STEPS[step])

    asyncio.run(start_failing(service, ready=step == "ready"))

    assert port_free(topology.nodes["reader"].listen)
    probe.all_released()
    if step in ("server", "server health", "ready"):
        assert len(probe.plugins) == 1  # the step did fail after the plugin started


# -- the writer ---------------------------------------------------------------------------------

TWO_PLUGINS = {"nodes.writer.plugins": ["plugins.audit.CommandLog", "plugins.audit.CommandLog"]}
WRITER_STEPS = {
    "store channel": (ServiceClient, "__init__", 1, False),
    "MQTT client": (writer_node, "new_client", 1, False),
    "first plugin": (Plugin, "start", 1, False),
    "second plugin": (Plugin, "start", 2, False),
    "connection": (writer_node, "connect", 1, False),
    "connected": (writer_node, "connect", 1, True),
    "ready": (runtime, "_notify_ready", 1, False),
}


async def with_broker(topology: Topology, protos: ProtoSet, body: Callable[[], Any]) -> None:
    """Run `body` while the topology's broker runs (the embedded one, in this process)."""
    broker = build(topology, "broker", protos)
    try:
        await broker.start()
        await body()
    finally:
        await broker.stop()


@pytest.mark.parametrize("step", WRITER_STEPS)
def test_a_writer_that_fails_to_start_releases_what_it_opened(
    step, system, probe, shipped_protos, monkeypatch
):
    topology = system(TWO_PLUGINS)
    service = build(topology, "writer", shipped_protos)
    inject(monkeypatch, *WRITER_STEPS[step])

    asyncio.run(
        with_broker(topology, shipped_protos, lambda: start_failing(service, step == "ready"))
    )

    probe.all_released()
    started = {"second plugin": 1, "connection": 2, "connected": 2, "ready": 2}
    assert len(probe.plugins) == started.get(step, 0)
    if step in ("connected", "ready"):
        assert probe.mqtt and probe.mqtt[0].is_connected is False  # it was connected, and left


def test_a_writer_stopped_while_it_waits_for_the_broker_releases_what_it_opened(
    system, probe, shipped_protos
):
    """The broker is not there: start keeps trying to connect until it is cancelled (SIGTERM)."""
    service = build(system(TWO_PLUGINS), "writer", shipped_protos)

    async def main() -> None:
        starting = asyncio.create_task(service.start())
        await asyncio.sleep(0.3)
        assert not starting.done()
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await service.stop()

    asyncio.run(main())
    assert len(probe.plugins) == 2
    probe.all_released()


def test_a_writer_finishes_its_commands_before_it_leaves_the_broker(
    system, shipped_protos, monkeypatch
):
    """Commands in their delay are applied (and reported) before the MQTT client disconnects,
    and the store channel is closed after that."""
    topology = system()
    service = build(topology, "writer", shipped_protos)
    assert isinstance(service, writer_node.WriterService)
    order: list[str] = []
    for owner, name in ((gmqtt.Client, "disconnect"), (ServiceClient, "close")):
        Probe._wrap(monkeypatch, owner, name, lambda _, *__, name=name: order.append(name))

    async def run() -> None:
        await service.start()

        async def command() -> None:
            await asyncio.sleep(0.1)
            order.append("command applied")

        due = asyncio.get_running_loop().time()
        asyncio.get_running_loop().create_task(service.lanes.run("k", due, command))
        await asyncio.sleep(0)
        await service.stop()

    asyncio.run(with_broker(topology, shipped_protos, run))
    assert order == ["command applied", "disconnect", "close"]


# -- the broker ---------------------------------------------------------------------------------

BROKER_STEPS = {
    "broker": (RoutingBroker, "__init__", 1, False),
    "listener": (RoutingBroker, "_start_listeners", 1, False),
    "listening": (RoutingBroker, "_start_listeners", 1, True),
    "ready": (runtime, "_notify_ready", 1, False),
}


@pytest.mark.parametrize("step", BROKER_STEPS)
def test_a_broker_that_fails_to_start_releases_its_port(step, system, shipped_protos, monkeypatch):
    topology = system()
    service = build(topology, "broker", shipped_protos)
    inject(monkeypatch, *BROKER_STEPS[step])

    asyncio.run(start_failing(service, ready=step == "ready"))

    assert port_free(topology.nodes["broker"].listen)


def test_a_broker_whose_port_is_taken_says_so_and_stops_cleanly(system, shipped_protos):
    topology = system()
    service = build(topology, "broker", shipped_protos)
    listen = topology.nodes["broker"].listen

    async def main() -> None:
        with socket.socket() as taken:
            taken.bind((listen.host, listen.port))
            taken.listen()
            with pytest.raises(
                NodeError, match=r"node .broker. cannot listen on .* already in use"
            ):
                await service.start()
            await service.stop()

    asyncio.run(main())
    assert port_free(listen)
