"""Commands on their way to the writers: published on MQTT, kept in the outbox until a writer
reports on them on the status topic (which also fills the command book), published again when
that takes too long or when what held them may have lost them. A command is refused (Refused)
rather than accepted when it could not be kept until a writer reports on it, or when it is larger
than any writer takes (the embedded broker would close the connection of a packet that large)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from google.protobuf.message import Message

from cqrs_flow.contracts.gateway import MutationPlan
from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.contracts.status import writer_online
from cqrs_flow.nodes.gateway.commands import CommandBook
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.protobuf.messages import set_path
from cqrs_flow.stores.base import StoreError
from cqrs_flow.stores.database import DiskFull
from cqrs_flow.telemetry import Children, current, tracing
from cqrs_flow.transport.command_batches import messages
from cqrs_flow.transport.mqtt import BATCH_BYTES, DEFAULT_COMMAND_BYTES

__all__ = ["Delivery"]


class Delivery:
    """The gateway's side of the command topics and the status topic.

    `mqtt` is the gateway's MQTT client (gmqtt); its handlers are set here, before it connects.
    `command_bytes` is the largest command published (cqrs_flow.transport.mqtt.command_bytes),
    `batch_bytes` the largest message of several (batch_bytes there)."""

    def __init__(
        self,
        status_topic: str,
        mqtt: Any,
        outbox: Outbox,
        log: logging.Logger,
        command_bytes: int = DEFAULT_COMMAND_BYTES,
        mqtt5: bool = False,
        book: CommandBook | None = None,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.status_topic = status_topic
        self.mqtt5 = mqtt5  # the trace context goes in user properties, else in the payload
        self.metrics = current().metrics
        self._published = Children(self.metrics.published)  # per command: looked up once
        self.command_bytes = command_bytes
        self.batch_bytes = batch_bytes
        self.mqtt = mqtt
        self.outbox = outbox
        self.log = log
        self.book = book if book is not None else CommandBook()
        self.clock = CommandClock()  # command ids in the order this gateway accepts commands
        self.republish = asyncio.Event()  # set: publish what is due now, not at the next tick
        # Commands accepted in this turn of the loop, in order, with their topics: published at
        # the end of the turn, several to a message (transport/command_batches.py).
        self._turn: list[tuple[str, bytes]] = []
        self.connects = 0
        mqtt.on_connect = self.on_connect
        mqtt.on_message = self.on_status

    @property
    def connected(self) -> bool:
        return bool(self.mqtt.is_connected)

    async def publish(
        self, plan: MutationPlan, command: Message, key: str | None, subject: str = ""
    ) -> str | None:
        """Publish a mutation's command (see _publish_command), counted by topic and outcome."""
        try:
            command_id = await self._publish_command(plan, command, key, subject)
        except Refused as refused:
            self.metrics.refused.labels(plan.topic, refused.code.lower()).inc()
            raise
        self._published(plan.topic).inc()
        return command_id

    def _send(self, topic: str, payload: bytes) -> None:
        """Publish on MQTT, with the trace context when tracing is on."""
        if not tracing.enabled():
            self.mqtt.publish(topic, payload, qos=1)
            return
        with tracing.span(
            f"publish {topic}", "PRODUCER", attributes={"messaging.destination.name": topic}
        ):
            parent = tracing.traceparent()
            if self.mqtt5 and parent:
                self.mqtt.publish(
                    topic, payload, qos=1, user_property=[(tracing.TRACEPARENT, parent)]
                )
            else:
                self.mqtt.publish(topic, tracing.wrap(payload, parent), qos=1)

    async def _publish_command(
        self, plan: MutationPlan, command: Message, key: str | None, subject: str
    ) -> str | None:
        """Publish a mutation's command (asked for by the caller `subject`, "" without a token);
        its command id, None if the plan gives it none (then it is not kept in the outbox).
        While the broker is away, a gateway whose outbox is on disk accepts the command into it
        and publishes it once the broker is back. Refused, and nothing is published, when the
        broker is away and the outbox is in memory, the outbox is full, the command cannot be
        kept in it or is larger than `command_bytes`."""
        if not self.mqtt.is_connected and not (plan.command_id_path and self.outbox.durable):
            raise Refused(
                "the broker is away; nothing was queued, try again later"
                + ("" if self.outbox.durable else " (a gateway with `data:` queues meanwhile)"),
                "UNAVAILABLE",
                status=503,
            )
        if not plan.command_id_path:  # not kept in the outbox: published now
            payload = self._sized(command.SerializeToString())
            if self._turn:  # after the commands accepted before it in this turn
                self._publish_turn()
            self._send(plan.topic, payload)
            return None
        if self.outbox.full:
            raise Refused(
                f"the outbox is full: {len(self.outbox)} commands are waiting for a writer "
                "(outbox_size); nothing was queued, try again later",
                "BUSY",
                status=503,
            )
        command_id = self.clock.next_id()
        set_path(command, plan.command_id_path, command_id)
        payload = self._sized(command.SerializeToString())
        try:  # with a data directory: on disk before it is published and answered
            await self.outbox.add(
                command_id, plan.topic, payload, asyncio.get_running_loop().time()
            )
        except DiskFull as exc:
            self.log.error("cannot keep command %s in the outbox: %s", command_id, exc)
            raise Refused(
                "the gateway's disk is full: it cannot record commands; nothing was queued, "
                "try again later",
                "UNAVAILABLE",
                status=503,
            ) from None
        except StoreError as exc:
            self.log.error("cannot keep command %s in the outbox: %s", command_id, exc)
            raise Refused(
                "the gateway cannot record commands; nothing was queued", "INTERNAL", status=500
            ) from None
        self.book.queued(command_id, plan.command, key, subject)
        if not self.mqtt.is_connected:  # published when the broker is back (on_connect)
            return command_id
        if tracing.enabled():  # each command its own message, with its own trace context
            self._send(plan.topic, payload)
            return command_id
        if not self._turn:
            asyncio.get_running_loop().call_soon(self._publish_turn)
        self._turn.append((plan.topic, payload))
        return command_id

    def _publish_turn(self) -> None:
        """Publish the commands accepted in the turn that ended, in the order they were accepted:
        each run of commands on one topic as few messages as hold it (at most MAX_COMMANDS and
        `batch_bytes` a message), a lone one as it is. Runs, not topics: an add and then an
        update of one entity, on two topics, must reach the writer in that order. All of them
        are in the outbox: with the broker gone meanwhile, they go when it is back."""
        turn, self._turn = self._turn, []
        if not self.mqtt.is_connected:
            return
        for topic, run in itertools.groupby(turn, key=lambda entry: entry[0]):
            for message in messages([payload for _, payload in run], self.batch_bytes):
                self.mqtt.publish(topic, message, qos=1)

    def _sized(self, payload: bytes) -> bytes:
        if len(payload) > self.command_bytes:
            raise Refused(
                f"the command is {len(payload)} bytes; the writers take commands of at most "
                f"{self.command_bytes} bytes (their payload_bytes); nothing was queued",
                "PAYLOAD_TOO_LARGE",
                status=413,
            )
        return payload

    def on_connect(self, client: Any, *_: Any) -> None:
        self.metrics.mqtt_connects.inc()
        client.subscribe(self.status_topic, qos=1)
        self.connects += 1
        if self.connects > 1:  # a broker that restarted has lost the commands it held
            self.due_now(None, "the gateway reconnected to the broker")

    def on_status(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        if topic != self.status_topic:
            return 0
        settled = self.book.heard(payload)
        if settled is not None:
            self.outbox.settle(settled)
        elif (online := writer_online(payload)) is not None:
            writer, topics = online
            self.due_now(topics, f"writer '{writer[:100]}' is online")
        else:
            self.log.warning("ignored a status message that is not one (%d bytes)", len(payload))
        return 0

    def due_now(self, topics: list[str] | None, why: str) -> None:
        """Publish again at once the commands on `topics` (all with None) not reported on yet: a
        writer that was restarted lost what it held, a broker that was, what it queued. The
        store applies each command once, so those that were not lost change nothing."""
        count = self.outbox.due_now(asyncio.get_running_loop().time(), topics)
        if count:
            self.log.info("%s: publishing the %d command(s) not reported on again", why, count)
            self.republish.set()

    async def redeliver(self) -> None:
        """Publish again the commands no writer has reported on within redeliver_after, and
        those due_now made due."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self.republish.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            woken = self.republish.is_set()
            self.republish.clear()
            if not self.mqtt.is_connected:
                continue
            due = self.outbox.due(loop.time())
            for command_id, topic, payload in due:
                if len(payload) > self.command_bytes:  # accepted when the writers took more
                    self.outbox.settle([command_id])
                    self.log.error(
                        "dropped command %s from the outbox: %d bytes, more than the writers "
                        "take now (%d)",
                        command_id,
                        len(payload),
                        self.command_bytes,
                    )
                    continue
                self.mqtt.publish(topic, payload, qos=1)
                self.metrics.republished.labels(topic).inc()
            if due and woken:
                self.log.info("published %d command(s) again", len(due))
            elif due:
                self.log.warning(
                    "published %d command(s) again: no writer reported on them within %gs",
                    len(due),
                    self.outbox.redeliver_after,
                )
