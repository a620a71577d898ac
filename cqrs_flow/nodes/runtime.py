"""What every node process shares: logging, the setup/cleanup pair, signals, readiness and
background tasks whose errors end the node instead of vanishing; its telemetry (metrics, health,
traces: cqrs_flow.telemetry), served on the node's metrics address while it runs.

A node releases what it acquired in reverse order, on every path: `start` registers the release
of each resource on `NodeService.resources` as soon as it holds it, and `stop` (which `serve`
calls however the node ends) cancels the background tasks and then runs those releases."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from cqrs_flow.contracts.process import ENV_GO_FD, ENV_READY_FD, ENV_REPLICA, ENV_RESTARTS
from cqrs_flow.errors import NodeError, TopologyError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.security.tokens import Credentials
from cqrs_flow.telemetry import CURRENT, NodeTelemetry, tracing
from cqrs_flow.telemetry.logs import configure_logging as configure_log_output
from cqrs_flow.telemetry.server import start_metrics_server
from cqrs_flow.topology.model import Node, Topology
from cqrs_flow.topology.problems import Problems

__all__ = ["STOP_GRACE", "NodeService", "configure_logging", "serve"]

log = logging.getLogger("cqrs_flow.node")

Plan = TypeVar("Plan")

STOP_GRACE = 1.0  # seconds the calls in flight have to finish when a node's server stops


def configure_logging(level: str | None = None, node: str = "") -> None:
    """One line per event on stdout, text or JSON (cqrs_flow.telemetry.logs); `up` prefixes
    each text line with the node's name."""
    configure_log_output(level, node=node)


class NodeService(ABC):
    """One running node: `start` sets it up, `stop` cleans up; `spawn` runs background work.

    The setup/cleanup pair is one idea: `setup` acquires resources one by one and, right after
    each, registers its release on `self.resources` (an AsyncExitStack:
    `self.resources.push_async_callback(client.close)`,
    `await self.resources.enter_async_context(...)`). `stop` runs the releases in reverse order;
    a setup that fails half-way has registered exactly what it holds, and `start` releases it at
    once. Subclasses implement `setup` and override neither `start` nor `stop`."""

    def __init__(
        self, topology: Topology, node: Node, protos: ProtoSet, credentials: Credentials
    ) -> None:
        self.topology = topology
        self.node = node
        self.protos = protos
        self.credentials = credentials
        self.log = logging.getLogger(f"cqrs_flow.{node.kind}")
        self.resources = AsyncExitStack()  # the releases of what `start` acquired
        self.telemetry = NodeTelemetry(node.name, node.kind, os.environ.get(ENV_REPLICA, ""))
        self.telemetry.listens = [f"{what} {address}" for what, address in node.listens]
        self.metrics = self.telemetry.metrics
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Set the node up; if that fails (or is cancelled) half-way, release at once what it
        acquired, and raise."""
        token = CURRENT.set(self.telemetry)  # what setup builds reports to this node
        try:
            await self.setup()
        except BaseException:
            await self.stop()
            raise
        finally:
            CURRENT.reset(token)
        self.telemetry.started = True

    @abstractmethod
    async def setup(self) -> None:
        """Acquire listeners and connections, registering each release on `self.resources`;
        return when the node can do its job."""

    async def stop(self) -> None:
        """Cancel the background tasks and wait for them, then release what `start` acquired,
        last acquired first. Safe after a failed or cancelled `start`, and more than once."""
        self.telemetry.stopping = True
        await self.cancel_tasks()
        await self.resources.aclose()

    def contract(self, build: Callable[[Topology, Any, ProtoSet, Problems], Plan | None]) -> Plan:
        """What this node needs from topology + protos, worked out by the contract `build`
        (cqrs_flow.contracts); TopologyError with every problem when it cannot be."""
        problems = Problems(self.topology.located)
        plan = build(self.topology, self.node, self.protos, problems)
        if problems.problems or plan is None:
            raise TopologyError(problems.problems, str(self.topology.source))
        return plan

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run background work until `stop`; if it fails, the node stops and exits with its
        error."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self._failure is not None and not self._failure.done():
            self._failure.set_exception(error)

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def failure(self) -> asyncio.Future[None]:
        """Done, with the error, when a background task fails."""
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        return self._failure


async def serve(service: NodeService, guests: Sequence[NodeService] = ()) -> None:
    """Start the node, tell the launcher it is ready, run until SIGTERM/SIGINT or a failure;
    its metrics and health are served from before it starts until it has stopped.

    `guests`: nodes run in this process too (a reader placed in its gateway's process), each
    with its own telemetry; they start first, in order, and stop after it, and a failure of
    any ends them all."""
    async with AsyncExitStack() as operations:
        for guest in guests:
            await _serve_operations(guest, operations, traces=False)
        await _serve_operations(service, operations)
        await _serve(service, tuple(guests))


async def _serve_operations(
    service: NodeService, stack: AsyncExitStack, traces: bool = True
) -> None:
    """Metrics and health on the node's metrics address; traces when configured."""
    telemetry = service.telemetry
    restarts = os.environ.get(ENV_RESTARTS, "0")
    telemetry.restarts = int(restarts) if restarts.isdigit() else 0
    telemetry.metrics.restarts.set(telemetry.restarts)
    telemetry.metrics.add_process()
    if traces and tracing.configure(service.node.name, service.topology.name):
        stack.callback(tracing.shutdown)
        log.info("tracing: spans exported over OTLP")
    listen = service.topology.metrics_of(service.node.name, int(telemetry.replica or 0) or None)
    if listen is None:
        return
    runner = await start_metrics_server(telemetry, listen)
    stack.push_async_callback(runner.cleanup)
    telemetry.listens.append(f"metrics {listen}")
    log.info("metrics on http://%s/metrics, health on /health/live and /health/ready", listen)


async def _serve(service: NodeService, guests: tuple[NodeService, ...] = ()) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    services = (*guests, service)
    failures = [s.failure for s in services]
    stop_wait: asyncio.Task[Any] = loop.create_task(stopping.wait())
    try:
        # A node may wait long in start (for a broker that is gone, say): SIGTERM must end that
        # wait too, or a node whose launcher died would outlive it.
        starting = loop.create_task(_start_on_go(services))
        await asyncio.wait([starting, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        starting.result()
        _notify_ready()
        for each in services:
            log.info("%s '%s' ready", each.node.kind, each.node.name)
        # What start-up made and keeps (modules, the schema, the engine, stubs: hundreds of
        # thousands of objects) is moved out of the collector's sight, so that its full
        # collections, every few thousand requests, no longer go through all of it again: the
        # gateway's CPU per query fell by about 5 % (docs/PERFORMANCE.md). After the node said
        # it is ready: the collection first takes some 20-40 ms, which start-up need not wait.
        gc.collect()
        gc.freeze()
        await asyncio.wait([stop_wait, *failures], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_wait.cancel()
        for sig in signals:
            loop.remove_signal_handler(sig)
        for each in reversed(services):
            log.info("%s '%s' stopping", each.node.kind, each.node.name)
            await each.stop()
    error = next((f.exception() for f in failures if f.done()), None)
    if error is not None:
        raise error


async def _start_on_go(services: Sequence[NodeService]) -> None:
    """Start the node's services, each after the one before it (a guest before the node that
    calls it); one `up` spawned ahead of its turn (its imports and its topology loaded while the
    nodes it depends on start) first waits for the launcher's "go" on the pipe it was given."""
    fd = os.environ.pop(ENV_GO_FD, None)
    if fd is not None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            pipe = os.fdopen(int(fd), "rb", 0)
        except (OSError, ValueError) as exc:
            raise NodeError(f"cannot wait for the launcher on fd {fd}: {exc}") from None
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            if not (await reader.readline()).startswith(b"go"):
                raise NodeError("the launcher went away before this node's turn to start")
        finally:
            transport.close()
    for service in services:
        await service.start()


def _notify_ready() -> None:
    """Write to the pipe `cqrs-flow up` gave us, if any: the readiness signal of nodes that do
    not listen on a port (a writer). Servers are also probed on their ports."""
    fd = os.environ.pop(ENV_READY_FD, None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
    except (OSError, ValueError) as exc:
        raise NodeError(f"cannot signal readiness on fd {fd}: {exc}") from None
