"""The writer: takes commands off MQTT topics, waits the write delay, applies them to the store.

Commands on the same entity are applied in the order they arrived; commands on different
entities wait their delays side by side, so N commands take about one delay, not N. A command
is acknowledged to the broker (QoS 1) only once the store has answered, so one that was not
applied when the writer stopped is delivered again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gmqtt
import grpc
from google.protobuf.message import DecodeError, Message

from cqrs_flow.contracts.process import ENV_REPLICA
from cqrs_flow.contracts.status import online_message
from cqrs_flow.contracts.writer import CommandPlan, writer_plan
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.plugins import PluginContext, Rejected, WriterPlugin, start_plugins, stop_plugins
from cqrs_flow.protobuf.compiler import COMMANDS_SERVICE
from cqrs_flow.protobuf.messages import get_path
from cqrs_flow.security.mqtt_logins import login_from_env
from cqrs_flow.telemetry import tracing
from cqrs_flow.telemetry.metrics import OTHER, Children
from cqrs_flow.topology.access import shared, writer_subscriptions
from cqrs_flow.topology.model import BrokerNode, WriterNode
from cqrs_flow.transport.batches import CallBatcher
from cqrs_flow.transport.command_batches import is_batch, unpack
from cqrs_flow.transport.mqtt import connect, discard_session, new_client
from cqrs_flow.transport.rpc import ServiceClient
from cqrs_flow.transport.tls import channel_security, mqtt_client_context

__all__ = [
    "AppliedSummary",
    "Clock",
    "Command",
    "EntityLanes",
    "Refused",
    "WriterService",
    "decode_command",
]

# Store answers worth waiting out: the store is restarting or overloaded.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}
# Answers about the command itself: trying again would get the same answer.
REFUSALS = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNIMPLEMENTED,
}
PUBACK_SUCCESS = 0
# Store calls one writer has open at once: enough to keep the store busy, few enough that a
# burst queues here (in order, per entity) rather than as thousands of open calls.
MAX_IN_FLIGHT = 32
# A writer in a shared subscription keeps its session this long after its client is gone (long
# enough for `up` to restart it, short enough that a dead host's share goes to the others).
GROUP_SESSION_EXPIRY = 5
STATUS_BATCH = 200  # status reports per message at most
STATUS_INTERVAL = 0.02  # seconds a report may wait for others to share its message
STATUS_RETRY = 0.5  # seconds between tries to publish reports while the broker is away
# The longest wait between two tries of a command while the store is unavailable: short, so that
# a store that is back (restarted, reachable again) gets the commands waiting within about a
# second, not after a wait that grew while it was away (docs/RELIABILITY.md).
RETRY_AT_MOST = 1.0
# Seconds between two INFO lines that count the commands applied. A line per command cost the
# writer about a seventh of its time under load, and `up` as much again to print it; each
# command's line is at DEBUG.
SUMMARY_INTERVAL = 1.0


@dataclass(frozen=True)
class Clock:
    """What the write delay is measured and waited out with: `now` (seconds) and `sleep`. A
    writer uses the event loop's unless it is given another before it starts (`cqrs-flow test`
    gives a virtual one, so that a 3 s delay costs no real time)."""

    now: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """A command taken off its topic, ready to apply."""

    plan: CommandPlan
    message: Message
    key: str  # the entity key ("" when the command has none): commands on one key keep their order
    command_id: str


@dataclass(frozen=True)
class Refused:
    """A message that is no command this writer can apply: set aside with `reason`, counted by
    `kind`."""

    kind: str  # "unknown topic", "oversized" or "undecodable"
    reason: str
    plan: CommandPlan | None = None


def decode_command(
    plans: Mapping[str, CommandPlan], topic: str, payload: bytes, payload_bytes: int
) -> Command | Refused:
    """The command in one MQTT message, or why there is none. Never raises: anything can arrive
    on a topic (a filter with wildcards takes topics no command uses, and any client may
    publish)."""
    plan = plans.get(topic)
    if plan is None:
        return Refused("unknown topic", f"{topic} is no command's topic")
    if len(payload) > payload_bytes:
        return Refused(
            "oversized",
            f"{len(payload)} bytes; commands are at most {payload_bytes} "
            "(the writer's payload_bytes)",
            plan,
        )
    try:
        message = plan.request.FromString(payload)
        key = str(get_path(message, plan.key_path)) if plan.key_path else ""
        command_id = str(get_path(message, plan.command_id_path)) if plan.command_id_path else ""
    except (DecodeError, RecursionError, ValueError, UnicodeError) as exc:
        return Refused(
            "undecodable",
            f"not a valid {plan.request.DESCRIPTOR.full_name} ({len(payload)} bytes): {exc}",
            plan,
        )
    return Command(plan, message, key, command_id)


class EntityLanes:
    """Runs work per key in arrival order; different keys run concurrently.

    `run(key, due, work)` waits for the previous work on the same key, then until `due`
    (a time of `clock`, the loop's by default, waited out with `sleep`), then does `work`. The
    due time is fixed on arrival, so queueing behind a predecessor does not add its delay
    again. An empty key has no order to keep.
    """

    def __init__(
        self,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}
        self._pending: set[asyncio.Future[None]] = set()  # one per run not finished yet
        self._clock = clock
        self._sleep = sleep

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
            await self._sleep(max(0.0, due - clock()))
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


class AppliedSummary:
    """Counts the commands applied and tells them in one INFO line per `interval` seconds:

        applied 1234 command(s) in the last 1.00s (add_contact 1200, delete_contact 34),
        the last 0.003s ago; 5678 since start

    The line comes `interval` after the first command it counts (none while nothing is
    applied), and at once on `flush` (when the writer stops). "the last ... ago" says when the
    last command it counts was applied, to the millisecond: what watches the log for progress
    (the bench) knows when a burst ended without a line per command."""

    def __init__(self, log: logging.Logger, interval: float = SUMMARY_INTERVAL) -> None:
        self._log = log
        self._interval = interval
        self._counts: Counter[str] = Counter()
        self._total = 0
        self._first = 0.0  # when the first command of the pending line was applied
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None

    @property
    def total(self) -> int:
        """Commands applied since the writer started."""
        return self._total

    def applied(self, command: str) -> None:
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        if not self._counts:
            self._first = self._last
        self._counts[command] += 1
        self._total += 1
        if self._handle is None:
            self._handle = loop.call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Log the pending line now, if any command is pending."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._counts:
            return
        now = asyncio.get_running_loop().time()
        self._log.info(
            "applied %d command(s) in the last %.2fs (%s), the last %.3fs ago; %d since start",
            sum(self._counts.values()),
            now - self._first,
            ", ".join(f"{name} {count}" for name, count in sorted(self._counts.items())),
            now - self._last,
            self._total,
        )
        self._counts.clear()


class WriterService(NodeService):
    node: WriterNode
    _flush_handle: asyncio.TimerHandle | None = None  # the next flush of the reports, if armed
    clock: Clock | None = None  # the write delay's clock; None: the event loop's

    async def setup(self) -> None:
        self.plans = self.contract(writer_plan)
        store = self.topology.store_of(self.node.store)
        self.store = ServiceClient(
            self.protos,
            self.protos.service(store.write.name),
            store.write.listen.target,
            self.credentials,
            security=channel_security(self.topology, store.write.tls, self.node.client_tls),
        )
        self.resources.push_async_callback(self.store.close)
        # Commands go to the store several to a call (one round trip for what arrived while the
        # last call was out); each is still applied, checked and answered on its own.
        self.batches = CallBatcher(
            self.store, self.store.sibling(self.protos.service(COMMANDS_SERVICE))
        )
        self.resources.push_async_callback(self.batches.close)
        self.subscriptions = [
            shared(self.node, f) for f in writer_subscriptions(self.topology, self.node)
        ]
        self.lanes = EntityLanes(self.clock.now, self.clock.sleep) if self.clock else EntityLanes()
        self.set_aside: Counter[str] = Counter()  # messages set aside, by kind of reason
        self.statuses: list[dict[str, str]] = []
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.subscribed = asyncio.Event()
        self._received = Children(self.metrics.received)  # per command: looked up once
        self._applied = Children(self.metrics.applied)
        self.summary = AppliedSummary(self.log)
        self.resources.callback(self.summary.flush)  # the last line, once nothing is applied
        broker = self.topology.nodes[self.node.broker]
        assert isinstance(broker, BrokerNode)
        # Each replica has a session of its own (its client id), all log in as the writer.
        replica = os.environ.get(ENV_REPLICA)
        instance = f"{self.node.name}.{replica}" if replica else self.node.name
        login = login_from_env(self.topology, self.node.name)
        self.mqtt = new_client(
            self.topology.name,
            instance,
            broker,
            persistent=True,
            login=login,
            session_expiry=GROUP_SESSION_EXPIRY if self.node.share_group else None,
        )
        self.mqtt.on_connect = self._on_connect
        self.instance = instance
        self._observe()
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_message = self._on_message
        started = await start_plugins(
            self.node, PluginContext(self.topology, self.node, self.protos, self.log)
        )
        self.resources.push_async_callback(stop_plugins, started, self.log)
        self.plugins = [p for p in started if isinstance(p, WriterPlugin)]  # all: the loader checks
        self.resources.push_async_callback(self._leave_broker)
        tls = mqtt_client_context(self.topology, broker)
        if replica:
            # The session this writer had before it had replicas (its own client id, a plain
            # subscription, kept for ever so that a restarted writer misses nothing) would have
            # the broker queue every command for it until a client of that id came back and
            # applied them all again: each replica ends it first (once there is none, a no-op).
            await discard_session(
                self.topology.name,
                self.node.name,
                broker,
                login=login,
                tls=tls,
            )
        await connect(self.mqtt, broker, tls=tls)
        self.resources.push_async_callback(self._finish_commands)  # commands may arrive now
        await self.subscribed.wait()
        self.log.info(
            "subscribed to %s; applying %s to %s after %.3gs",
            ", ".join(self.subscriptions),
            ", ".join(p.name for p in self.plans.values()),
            store.write.listen,
            self.node.delay,
        )

    def _observe(self) -> None:
        """Metrics that read the writer's state when scraped, and its readiness."""
        self.metrics.queue_depth.set_function(lambda: len(self.lanes))
        self.metrics.mqtt_connected.set_function(lambda: 1 if self.mqtt.is_connected else 0)
        self.telemetry.facts["queue_depth"] = lambda: len(self.lanes)
        self.telemetry.readiness = lambda: {
            "broker": bool(self.mqtt.is_connected),
            "store": self.store.reachable(),
        }

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: Any) -> None:
        self.metrics.mqtt_connects.inc()
        # Subscribe on every (re)connect: cheap, and right even if the broker lost the session.
        client.subscribe([gmqtt.Subscription(topic, qos=1) for topic in self.subscriptions])
        if self.statuses:  # reports made while the broker was away go out now
            asyncio.get_running_loop().call_soon(self._flush_statuses)

    def _on_subscribe(self, client: gmqtt.Client, *_: Any) -> None:
        # Tell the gateways, on every (re)connect: a writer that was restarted lost the commands
        # it held during its delay (MQTT 3.1.1 acknowledges on receipt), and a broker that was
        # restarted lost those it queued. The gateways publish again, at once, the commands on
        # these topics that no writer has reported on; duplicates are applied once.
        self.subscribed.set()
        client.publish(
            self.topology.status_topic, online_message(self.instance, list(self.plans)), qos=1
        )

    async def _on_message(
        self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any
    ) -> int:
        """Returns once the message's command is applied or set aside, or each of a batch's
        (transport/command_batches.py); then the PUBACK goes out (MQTT 5)."""
        payload, parent = tracing.unwrap(payload)  # the trace context, on MQTT 3.1.1
        parent = _user_property(properties, tracing.TRACEPARENT) or parent
        if not is_batch(payload) or len(payload) > self.node.payload_bytes:
            await self._take(topic, payload, parent)  # an oversized batch is refused whole
            return PUBACK_SUCCESS
        try:
            commands = unpack(payload)
        except ValueError as exc:
            self._received(self._label(topic)).inc()
            reason = f"not a valid batch of commands ({len(payload)} bytes): {exc}"
            self._set_aside(topic, payload, self.plans.get(topic), "", "", reason, "undecodable")
            return PUBACK_SUCCESS
        # In order: each enters its entity's lane before the next is looked at.
        await asyncio.gather(*(self._take(topic, command, parent) for command in commands))
        return PUBACK_SUCCESS

    def _label(self, topic: str) -> str:
        """A topic as the metrics name it: one of the commands', else OTHER (a wildcard
        subscription takes topics no command uses, which must not each make a series)."""
        return topic if topic in self.plans else OTHER

    async def _take(self, topic: str, payload: bytes, parent: str | None) -> None:
        """One command: decoded and applied in its entity's lane after the delay, or set aside."""
        self._received(self._label(topic)).inc()
        decoded = decode_command(self.plans, topic, payload, self.node.payload_bytes)
        if isinstance(decoded, Refused):
            self._set_aside(topic, payload, decoded.plan, "", "", decoded.reason, decoded.kind)
            return
        plan, command, key, command_id = (
            decoded.plan,
            decoded.message,
            decoded.key,
            decoded.command_id,
        )
        now = self.clock.now() if self.clock else asyncio.get_running_loop().time()
        due = now + self.node.delay

        async def apply() -> None:
            if tracing.enabled():
                with tracing.span(
                    f"apply {plan.name}",
                    "CONSUMER",
                    parent=parent,
                    attributes={
                        "cqrs_flow.node": self.instance,
                        "messaging.destination.name": topic,
                    },
                ):
                    reason = await self._apply(plan, command, key)
            else:
                reason = await self._apply(plan, command, key)
            if reason is None:
                self._applied(topic).inc()
                subject = str(get_path(command, plan.subject_path)) if plan.subject_path else ""
                self._report(plan, command_id, key, "APPLIED", "", subject)
            else:
                self._set_aside(topic, payload, plan, command_id, key, reason, "not applied")

        # One lane per entity and key: commands on different entities never wait on each other.
        await self.lanes.run(f"{plan.entity}/{key}" if key else "", due, apply)

    async def _apply(self, plan: CommandPlan, command: Message, key: str) -> str | None:
        """Apply one command; None when applied, else why it was not. An unavailable store is
        waited for; unexpected failures are tried `attempts` times; refusals are final."""
        failures, delay = 0, 0.1
        while True:
            try:
                for plugin in self.plugins:
                    await plugin.before_apply(plan.name, command)
                async with self.in_flight:
                    if tracing.enabled():  # a call of its own: the store's span is its child
                        await self.store.call(plan.rpc, command)
                    else:
                        await self.batches.call(plan.rpc, command)
                self.log.debug("applied %s %s", plan.name, key)
                self.summary.applied(plan.name)
                return None
            except Rejected as exc:
                return f"rejected by plugin: {exc}"
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.ALREADY_EXISTS and (failures or delay > 0.1):
                    self.log.info("applied %s %s (by the attempt before this one)", plan.name, key)
                    self.summary.applied(plan.name)
                    return None
                if code in REFUSALS:
                    return f"refused by the store: {code.name} {exc.details()}"
                if code in RETRYABLE:
                    self.log.warning(
                        "store unavailable for %s %s (%s); retrying in %.1fs",
                        plan.name,
                        key,
                        code.name,
                        delay,
                    )
                else:
                    failures += 1
                    self.log.warning(
                        "%s %s failed (%s %s), attempt %d of %d",
                        plan.name,
                        key,
                        code.name,
                        exc.details(),
                        failures,
                        self.node.attempts,
                    )
                    if failures >= self.node.attempts:
                        return f"failed {failures} times: {code.name} {exc.details()}"
            except Exception as exc:  # a plugin that failed
                failures += 1
                self.log.exception(
                    "%s %s: attempt %d of %d failed", plan.name, key, failures, self.node.attempts
                )
                if failures >= self.node.attempts:
                    return f"failed {failures} times: {type(exc).__name__}: {exc}"
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_AT_MOST)

    def _set_aside(
        self,
        topic: str,
        payload: bytes,
        plan: CommandPlan | None,
        command_id: str,
        key: str,
        reason: str,
        kind: str,
    ) -> None:
        """Log a command that will not be applied, count it, send it to the dead-letter topic,
        report it."""
        self.set_aside[kind] += 1
        label = self._label(topic)
        why = (
            kind if kind != "not applied" else reason.split(" ", 1)[0]
        )  # refused, rejected, failed
        self.metrics.refused.labels(label, why.replace(" ", "_")).inc()
        what = " ".join(part for part in (plan.name if plan else "message", key) if part)
        self.log.warning(
            "set aside: %s on %s: %s (%s: %d so far)",
            what,
            topic[:200],
            reason,
            kind,
            self.set_aside[kind],
        )
        if self.node.dead_letter and self.mqtt.is_connected:
            # An oversized payload is not copied into the letter: the letter would be oversized too.
            kept = payload if kind != "oversized" else b""
            letter = {
                "topic": topic,
                "command": plan.name if plan else None,
                "command_id": command_id or None,
                "key": key or None,
                "reason": reason,
                "kind": kind,
                "writer": self.node.name,
                "payload": base64.b64encode(kept).decode(),
                "payload_bytes": len(payload),
            }
            self.mqtt.publish(self.node.dead_letter, json.dumps(letter).encode(), qos=1)
            self.metrics.dead_lettered.labels(label).inc()
        if plan is not None:
            self._report(plan, command_id, key, "FAILED", reason)

    def _report(
        self,
        plan: CommandPlan,
        command_id: str,
        key: str,
        state: str,
        reason: str,
        subject: str = "",
    ) -> None:
        """Tell the gateways what became of a command (they answer commandStatus with it), and
        who asked for it (`subject`, from the command's subject field) when the command says.
        Reports go out in batches, every STATUS_INTERVAL or STATUS_BATCH reports: one broker
        message per command on top of the command itself halved what the embedded broker carried."""
        if not command_id:
            return
        report = {"id": command_id, "state": state, "command": plan.name, "key": key}
        report["reason"] = reason
        if subject:
            report["subject"] = subject
        self.statuses.append(report)
        if len(self.statuses) >= STATUS_BATCH and self.mqtt.is_connected:
            self._flush_statuses()
        else:
            self._arm_flush(STATUS_INTERVAL)

    def _arm_flush(self, after: float) -> None:
        """Flush the reports `after` seconds from now, unless a flush is armed already."""
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(after, self._flush_statuses)

    def _flush_statuses(self) -> None:
        """Publish the pending reports, STATUS_BATCH to a message. While the broker is away they
        stay pending, and the flush is tried again every STATUS_RETRY seconds and on reconnect:
        nothing else would publish them (the next report finds a flush armed, or none needed)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self.statuses:
            if not self.mqtt.is_connected:
                break
            batch = self.statuses[:STATUS_BATCH]
            try:
                self.mqtt.publish(self.topology.status_topic, json.dumps(batch).encode(), qos=1)
            except Exception as exc:  # the connection broke under the publish
                self.log.warning(
                    "cannot publish %d status report(s) yet (%s: %s); trying again in %gs",
                    len(self.statuses),
                    type(exc).__name__,
                    exc,
                    STATUS_RETRY,
                )
                break
            del self.statuses[: len(batch)]
        if self.statuses:
            self._arm_flush(STATUS_RETRY)

    async def _finish_commands(self) -> None:
        """Finish the commands already received (they were accepted; the delay is the only thing
        between them and the store), within the delay plus a second. What is left is not
        acknowledged, so a broker that keeps the writer's session delivers it again."""
        if len(self.lanes):
            self.log.info("finishing %d command(s) before stopping", len(self.lanes))
            left = await self.lanes.drain(self.node.delay + 1.0)
            if left:
                self.log.warning("stopping with %d command(s) not applied", left)
        if self.set_aside:
            totals = ", ".join(f"{count} {kind}" for kind, count in sorted(self.set_aside.items()))
            self.log.info("set aside while running: %s", totals)

    async def _leave_broker(self) -> None:
        """Publish the reports still pending, then disconnect."""
        if self.mqtt.is_connected:
            self._flush_statuses()
            await self.mqtt.disconnect()
        if self._flush_handle is not None:
            self._flush_handle.cancel()


def _user_property(properties: Any, name: str) -> str | None:
    """The value of MQTT 5 user property `name` of a received message, if it has one."""
    pairs = properties.get("user_property") if isinstance(properties, dict) else None
    for pair in pairs or ():
        if isinstance(pair, (tuple, list)) and len(pair) == 2 and pair[0] == name:
            return str(pair[1])
    return None
