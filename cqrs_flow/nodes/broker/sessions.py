"""A client's session in the embedded broker across its connections: a client that connects
again takes its session over at once, and no QoS 1 message of the session is dropped before the
client acknowledges it.

amqtt (0.11-0.12) did neither, and after a partition that cost seconds, or every message after it:

- A take-over (the client id of a connection still open connects again) stopped the old
  connection gracefully before answering the new one: it waited for what had been written to
  the old socket to drain, which towards a host cut off lasts until TCP gives up. The new
  connection had no CONNACK meanwhile.
- The old connection's teardown then marked the session disconnected, after the new connection
  had taken it over: the broker queued every later message for a client it took for gone, and
  the client, connected, received nothing until it connected once more. (Stopping old
  connections sooner, by dropping silent clients or aborting a slow stop, only made that
  teardown come sooner, after every take-over.)
- A QoS 1 message not acknowledged within 5 s, or whose connection ended first, was dropped
  from the session: those written to a connection cut off were lost, not sent again when the
  client came back.

Here the old connection is aborted (its socket closed at once, what it had not sent discarded)
and its handler stopped without touching the session, which the new connection gets as it is:
its queue, its subscriptions and its messages in flight, which it sends again (DUP) before
anything else. A message in flight stays in the session until the client acknowledges it, on
whichever connection. A handler that is replaced hands the messages routed to it meanwhile to
its successor. A connection's own end (no take-over) still waits for its socket to drain, but
for at most `CLOSE_WAIT` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.errors import BrokerError
from amqtt.events import BrokerEvents
from amqtt.mqtt.constants import QOS_0, QOS_1
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import OUTGOING, ApplicationMessage, OutgoingApplicationMessage, Session

__all__ = ["CLOSE_WAIT", "PUBACK_WAIT", "SessionBroker", "SessionHandler", "abort"]

log = logging.getLogger("cqrs_flow.broker")

CLOSE_WAIT = 1.0  # seconds a connection that ended has to send what it holds before it is aborted
PUBACK_WAIT = 5.0  # seconds a message waits for its PUBACK before it waits for the next connection


def abort(writer: WriterAdapter | None) -> None:
    """Close a connection at once, discarding what it has not sent (amqtt's close drains first)."""
    if writer is None:
        return
    stream = getattr(writer, "_writer", None)  # amqtt's StreamWriterAdapter: asyncio's writer
    transport = getattr(stream, "transport", None)
    if transport is not None:
        transport.abort()
    writer.is_closed = True  # amqtt's close() is a no-op from now on


class SessionHandler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no types
    """amqtt's handler of one connection, which keeps a QoS 1 message in its session until the
    client acknowledges it, and which, once another connection has taken its session over
    (`replaced_by`), hands what it is asked to publish to that one."""

    replaced_by: SessionHandler | None = None
    displaced = False  # its session was taken over, or deleted, by a newer connection
    stopping = False  # its connection is ending

    async def mqtt_publish(
        self,
        topic: str,
        data: bytes | bytearray,
        qos: int | None,
        retain: bool,
        ack_timeout: int | None = None,
    ) -> OutgoingApplicationMessage:
        if self.replaced_by is not None:  # routed here before the take-over
            return await self.replaced_by.mqtt_publish(topic, data, qos, retain, ack_timeout)
        message: OutgoingApplicationMessage = await super().mqtt_publish(
            topic, data, qos, retain, ack_timeout
        )
        return message

    async def _handle_qos1_message_flow(self, app_message: ApplicationMessage) -> None:
        """amqtt's flow for an outgoing QoS 1 message, but for what happens without a PUBACK:
        the message stays in the session's `inflight_out`, sent again (DUP) when the client
        connects next, rather than being dropped after 5 s or when the connection ends."""
        session = self.session
        if getattr(app_message, "direction", None) != OUTGOING or session is None:
            await super()._handle_qos1_message_flow(app_message)
            return
        if app_message.qos != QOS_1 or app_message.packet_id is None:
            await super()._handle_qos1_message_flow(app_message)  # amqtt's errors
            return
        if app_message.puback_packet:
            return  # acknowledged already
        packet_id = app_message.packet_id
        session.inflight_out.setdefault(packet_id, app_message)
        packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        await self._send_packet(packet)
        app_message.publish_packet = packet
        waiter: asyncio.Future[PubackPacket] = asyncio.get_running_loop().create_future()
        self._puback_waiters[packet_id] = waiter
        try:
            app_message.puback_packet = await asyncio.wait_for(waiter, PUBACK_WAIT)
        except asyncio.TimeoutError:
            log.debug(
                "no PUBACK of message %d from %r within %gs: sent again on its next connection",
                packet_id,
                session.client_id,
                PUBACK_WAIT,
            )
            return
        except asyncio.CancelledError:
            if self.stopping:
                return  # the connection ended (stop() cancels the waiters): kept for the next
            raise
        finally:
            if self._puback_waiters.get(packet_id) is waiter:
                del self._puback_waiters[packet_id]
        if session.inflight_out.get(packet_id) is app_message:
            del session.inflight_out[packet_id]

    async def handle_puback(self, puback: PubackPacket) -> None:
        """A PUBACK after its waiter gave up (or of a message sent on an earlier connection)
        still settles the message."""
        packet_id = puback.variable_header.packet_id if puback.variable_header else None
        session = self.session
        if packet_id is not None and packet_id not in self._puback_waiters and session:
            message = session.inflight_out.get(packet_id)
            if message is not None and message.qos == QOS_1:
                message.puback_packet = puback
                del session.inflight_out[packet_id]
                return
        await super().handle_puback(puback)

    async def stop(self) -> None:
        """amqtt's stop, whose close of the socket waits for it to drain: at most CLOSE_WAIT
        seconds, then the connection is aborted."""
        self.stopping = True
        stopping = asyncio.ensure_future(super().stop())
        done, _ = await asyncio.wait({stopping}, timeout=CLOSE_WAIT)
        if not done:
            abort(self.writer)
        await stopping


def _settled(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a handler's stop left to run on its own (logged if it failed)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("stopping a connection taken over failed: %r", task.exception())


class SessionBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's broker with the session lifecycle above: `_handle_client_session` (amqtt's,
    with a take-over that ends the old connection through `_displace` instead of waiting on it)
    and `_handle_disconnect`, which leaves a session a newer connection has taken over alone.
    Its connections' handlers are SessionHandlers (`_initialize_client_session` must make them
    so: RoutingBroker does)."""

    def _current(self, session: Session, handler: BrokerProtocolHandler) -> bool:
        """Whether `handler` still serves `session` (no newer connection took it over)."""
        held = self._sessions.get(session.client_id)
        return held is not None and held[1] is handler and not getattr(handler, "displaced", False)

    async def _displace(
        self, handler: BrokerProtocolHandler, successor: SessionHandler | None
    ) -> None:
        """End the connection of `handler` at once, its session being another connection's now
        (`successor`'s) or deleted (a clean session): abort its socket, hand what it is asked
        to publish on to `successor`, and stop it (its waiters cancelled, so the messages it
        had in flight stay in the session for `successor` to send again)."""
        if getattr(handler, "displaced", False):
            return
        handler.displaced = True
        handler.replaced_by = successor
        abort(handler.writer)
        stopping = asyncio.ensure_future(handler.stop())
        stopping.add_done_callback(_settled)
        await asyncio.wait({stopping}, timeout=CLOSE_WAIT)  # not held up by it past that

    async def _handle_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        client_session: Session,
        handler: BrokerProtocolHandler,
        server: Any,
        listener_name: str,
    ) -> None:
        """amqtt's lifecycle of a client's connection, with a take-over that does not wait on
        the connection taken over, and a session that stays connected through it."""
        authenticated = await self._authenticate(
            client_session, self.listeners_config[listener_name]
        )
        if client_session.client_id is None:
            raise BrokerError("Client ID was not correctly created/set.")
        handler.attach(client_session, reader, writer)
        if not authenticated:
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            return

        held = self._sessions.get(client_session.client_id)
        taken_from = None
        if client_session.transitions.is_connected():
            if held is not None and held[0] is client_session and held[1] is not handler:
                taken_from = held[1]
        else:
            client_session.transitions.connect()

        await handler.mqtt_connack_authorize(True)
        self._sessions[client_session.client_id] = (client_session, handler)
        if taken_from is not None:
            peer = writer.get_peer_info()
            if peer is not None:  # amqtt keeps the first connection's address in the session
                client_session.remote_address, client_session.remote_port = peer
            log.info(
                "client %r connected again from %s:%s: its session taken over from the "
                "connection it had, which is closed (%d messages in flight, %d queued)",
                client_session.client_id,
                client_session.remote_address,
                client_session.remote_port,
                len(client_session.inflight_out),
                client_session.retained_messages.qsize(),
            )
            await self._displace(
                taken_from, handler if isinstance(handler, SessionHandler) else None
            )

        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_CONNECTED,
            client_id=client_session.client_id,
            client_session=client_session,
        )
        await handler.start()  # sends the messages in flight again first
        await self._publish_session_retained_messages(client_session)
        for topic in self._subscriptions:
            await self._publish_retained_messages_for_subscription((topic, QOS_0), client_session)
        await self._client_message_loop(client_session, handler)

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any] | None,
    ) -> None:
        """amqtt's end of a connection (the will on an abnormal end, the handler stopped, the
        session marked disconnected), but none of it for a connection a newer one took the
        session over from, whenever that happened: that session is connected."""
        result = disconnect_waiter.result() if disconnect_waiter is not None else None
        abnormal = not isinstance(result, DisconnectPacket)
        if abnormal and client_session.will_flag and self._current(client_session, handler):
            await self._broadcast_message(
                client_session,
                client_session.will_topic,
                client_session.will_message,
                client_session.will_qos,
            )
            if client_session.will_retain:
                await self.retain_message(
                    client_session,
                    client_session.will_topic,
                    client_session.will_message,
                    client_session.will_qos,
                )
        await self._stop_handler(handler)
        if not self._current(client_session, handler):
            return
        client_session.transitions.disconnect()
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_DISCONNECTED,
            client_id=client_session.client_id,
            client_session=client_session,
        )
