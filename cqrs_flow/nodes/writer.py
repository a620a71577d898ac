"""The writer: takes commands off MQTT topics, waits the write delay, applies them to the store.

Commands on the same entity are applied in the order they arrived; commands on different
entities wait their delays side by side, so N commands take about one delay, not N. A command
is acknowledged to the broker (QoS 1) only once the store has answered, so one that was not
applied when the writer stopped is delivered again.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import gmqtt
import grpc
from google.protobuf.message import DecodeError, Message

from cqrs_flow.errors import TopologyError
from cqrs_flow.messages import get_path
from cqrs_flow.mqtt import connect, new_client
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.plans import CommandPlan, Report, writer_plan
from cqrs_flow.plugins import PluginContext, Rejected, start_plugins, stop_plugins
from cqrs_flow.rpc import ServiceClient
from cqrs_flow.topology.topics import matches
from cqrs_flow.topology.model import BrokerNode, WriterNode

__all__ = ["EntityLanes", "WriterService"]

# Store answers worth waiting out: the store is restarting or overloaded.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
PUBACK_SUCCESS = 0
# Store calls one writer has open at once: enough to keep the store busy, few enough that a
# burst queues here (in order, per entity) rather than as thousands of open calls.
MAX_IN_FLIGHT = 32


class EntityLanes:
    """Runs work per key in arrival order; different keys run concurrently.

    `run(key, due, work)` waits for the previous work on the same key, then until `due`
    (a loop time), then does `work`. The due time is fixed on arrival, so queueing behind a
    predecessor does not add its delay again. An empty key has no order to keep.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._tails: dict[str, asyncio.Future] = {}
        self._pending: set[asyncio.Future] = set()  # one per run not finished yet
        self._clock = clock

    def __len__(self) -> int:
        """Runs not finished yet."""
        return len(self._pending)

    @property
    def keys(self) -> int:
        """Keys with runs queued or running."""
        return len(self._tails)

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` for the runs started so far; return how many did not finish."""
        if not self._pending:
            return 0
        _, unfinished = await asyncio.wait(set(self._pending), timeout=timeout)
        return len(unfinished)

    async def run(self, key: str, due: float, work: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        previous = self._tails.get(key) if key else None
        mine = loop.create_future()
        self._pending.add(mine)
        mine.add_done_callback(self._pending.discard)
        if key:
            self._tails[key] = mine
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await asyncio.sleep(max(0.0, due - clock()))
            await work()
        finally:
            def release(_: object = None) -> None:
                mine.set_result(None)
                if key and self._tails.get(key) is mine:
                    del self._tails[key]

            if previous is not None and not previous.done():
                previous.add_done_callback(release)  # cancelled while waiting: keep the order
            else:
                release()


class WriterService(NodeService):
    node: WriterNode

    async def start(self) -> None:
        report = Report(self.topology)
        self.plans = writer_plan(self.topology, self.node, self.protos, report)
        if report.problems:
            raise TopologyError(report.problems, str(self.topology.source))
        store = self.topology.store_of(self.node.store)
        self.store = ServiceClient(self.protos, self.protos.service(store.write.name),
                                   store.write.listen.target, self.credentials)
        # The writer's filters, plus the topics of commands it names that no filter covers
        # (overlapping subscriptions could deliver a message twice).
        named = [self.topology.commands[c].topic for c in self.node.commands if c in self.topology.commands]
        self.subscriptions = [*self.node.topics,
                              *(t for t in named if not any(matches(f, t) for f in self.node.topics))]
        self.lanes = EntityLanes()
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.subscribed = asyncio.Event()
        broker = self.topology.nodes[self.node.broker]
        assert isinstance(broker, BrokerNode)
        self.mqtt = new_client(self.topology.name, self.node.name, broker, persistent=True)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_subscribe = lambda *_: self.subscribed.set()
        self.mqtt.on_message = self._on_message
        self.plugins = await start_plugins(self.node, PluginContext(self.topology, self.node, self.protos, self.log))
        await connect(self.mqtt, broker)
        await self.subscribed.wait()
        self.log.info("subscribed to %s; applying %s to %s after %.3gs", ", ".join(self.subscriptions),
                      ", ".join(p.name for p in self.plans.values()), store.write.listen, self.node.delay)

    def _on_connect(self, client: gmqtt.Client, flags, rc, properties) -> None:
        # Subscribe on every (re)connect: cheap, and right even if the broker lost the session.
        client.subscribe([gmqtt.Subscription(topic, qos=1) for topic in self.subscriptions])

    async def _on_message(self, client, topic: str, payload: bytes, qos: int, properties) -> int:
        """Returns once the command is applied or set aside; gmqtt then sends the PUBACK."""
        plan = self.plans.get(topic)
        if plan is None:
            self.log.warning("set aside: message on %s, which is no command's topic", topic)
            return PUBACK_SUCCESS
        try:
            command = plan.request.FromString(payload)
        except DecodeError as exc:
            self.log.warning("set aside: payload on %s is not a valid %s (%d bytes): %s",
                             topic, plan.request.DESCRIPTOR.full_name, len(payload), exc)
            return PUBACK_SUCCESS
        key = str(get_path(command, plan.key_path)) if plan.key_path else ""
        due = asyncio.get_running_loop().time() + self.node.delay
        await self.lanes.run(key, due, lambda: self._apply(plan, command, key))
        return PUBACK_SUCCESS

    async def _apply(self, plan: CommandPlan, command: Message, key: str) -> None:
        for plugin in self.plugins:
            try:
                await plugin.before_apply(plan.name, command)
            except Rejected as exc:
                self.log.warning("set aside: %s %s rejected by plugin '%s': %s", plan.name, key, plugin.name, exc)
                return
            except Exception:
                self.log.exception("set aside: %s %s: plugin '%s' failed", plan.name, key, plugin.name)
                return
        delay, retried = 0.1, False
        while True:
            try:
                async with self.in_flight:
                    await self.store.call(plan.rpc, command)
                self.log.info("applied %s %s", plan.name, key)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.ALREADY_EXISTS and retried:
                    self.log.info("applied %s %s (by the attempt before this one)", plan.name, key)
                    return
                if exc.code() not in RETRYABLE:
                    self.log.warning("set aside: %s %s refused by the store: %s %s",
                                     plan.name, key, exc.code().name, exc.details())
                    return
                self.log.warning("store unavailable for %s %s (%s); retrying in %.1fs",
                                 plan.name, key, exc.code().name, delay)
                await asyncio.sleep(delay)
                delay, retried = min(delay * 2, 5.0), True

    async def stop(self) -> None:
        # Finish the commands already received (they were accepted; the delay is the only thing
        # between them and the store), within the delay plus a second. What is left is not
        # acknowledged, so a broker that keeps the writer's session delivers it again.
        if hasattr(self, "lanes") and len(self.lanes):
            self.log.info("finishing %d command(s) before stopping", len(self.lanes))
            left = await self.lanes.drain(self.node.delay + 1.0)
            if left:
                self.log.warning("stopping with %d command(s) not applied", left)
        if hasattr(self, "mqtt") and self.mqtt.is_connected:
            await self.mqtt.disconnect()
        if hasattr(self, "store"):
            await self.store.close()
        await stop_plugins(getattr(self, "plugins", []), self.log)
