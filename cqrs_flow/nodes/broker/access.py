"""amqtt plugins of the embedded broker: who may log in, and which topics each user may use.

amqtt loads plugins by dotted path and fills their `Config` dataclass from the broker's config;
BrokerService passes the password hashes and the topology's ACL (cqrs_flow.topology.access).
With MQTT 3.1.1 a refused publish is acknowledged and dropped (the protocol has no way to say
no), a refused subscription gets the failure code 0x80 in its SUBACK.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.contexts import Action, BaseContext
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import (
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    UNACCEPTABLE_PROTOCOL_VERSION,
    ConnackPacket,
)
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session
from amqtt.utils import gen_client_id

from cqrs_flow.nodes.broker.sessions import SessionBroker, SessionHandler
from cqrs_flow.security.mqtt_logins import password_digest
from cqrs_flow.topology.access import MqttAccess

__all__ = ["NodeLogin", "PacketLimit", "RoutingBroker", "TopicAccess", "connect_protocol"]

log = logging.getLogger("cqrs_flow.broker")

NOT_LOGGED_IN = "not logged in"
_listener: ContextVar[str] = ContextVar("cqrs_flow_broker_listener")  # of the connection at hand


class NodeLogin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Accepts a user whose password hashes to the SHA-256 it was given; no anonymous access."""

    @dataclass
    class Config:
        users: dict[str, str] = field(default_factory=dict)  # user -> sha256(password), hex

    async def authenticate(self, *, session: Session) -> bool:
        user, password = session.username or "", session.password or ""
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        expected = self.config.users.get(user)
        if expected is not None and hmac.compare_digest(expected, password_digest(password)):
            return True
        log.warning(
            "refused MQTT login of %s (client id %r): %s",
            repr(user) if user else "an anonymous client",
            session.client_id,
            "wrong password" if expected else "unknown user",
        )
        return False


class TopicAccess(BaseTopicPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Lets each user publish and subscribe only where the topology's ACL says."""

    @dataclass
    class Config:
        publish: dict[str, list[str]] = field(default_factory=dict)  # user -> topic filters
        subscribe: dict[str, list[str]] = field(default_factory=dict)

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        users = set(self.config.publish) | set(self.config.subscribe)
        self._access = {
            user: MqttAccess(
                user,
                tuple(self.config.publish.get(user, ())),
                tuple(self.config.subscribe.get(user, ())),
            )
            for user in users
        }

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        if action == Action.RECEIVE:
            return True  # the subscription was checked when it was made
        access = self._access.get(session.username or "") if session else None
        if access is None or topic is None:
            return False
        if action == Action.PUBLISH:
            allowed = access.may_publish(topic)
        elif action == Action.SUBSCRIBE:
            allowed = access.may_subscribe(topic)
        else:
            allowed = False
        if not allowed:
            log.warning(
                "refused: %r may not %s %r (not in its access list from the topology)",
                access.user,
                "publish to" if action == Action.PUBLISH else "subscribe to",
                topic,
            )
        return allowed


def connect_protocol(packet: bytes) -> tuple[str, int] | None:
    """The protocol name and level of a CONNECT packet (its fixed header included), such as
    ('MQTT', 4) for MQTT 3.1.1, ('MQTT', 5), ('MQIsdp', 3) for MQTT 3.1; None if `packet` is
    not a CONNECT or too short to say."""
    if not packet or packet[0] >> 4 != 1:
        return None
    start = 1
    while start < len(packet) and packet[start] & 0x80:  # the remaining length's bytes
        start += 1
    start += 1
    if len(packet) < start + 2:
        return None
    size = int.from_bytes(packet[start : start + 2], "big")
    name, level_at = packet[start + 2 : start + 2 + size], start + 2 + size
    if len(name) < size or len(packet) <= level_at:
        return None
    return name.decode("utf-8", "replace"), packet[level_at]


class PacketTooLarge(ConnectionResetError):
    """A packet over the broker's limit: amqtt takes it for a connection reset, and ends it."""


class PacketLimit(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """A connection's reader that reads each packet's fixed header itself and ends the connection
    at a packet whose remaining length is over `limit`, before a byte of its body is read.

    amqtt reads a packet's header, then asks its reader for the whole body at once: a 20 MiB
    publish was read into memory before anything looked at it. Through this reader amqtt gets the
    same bytes; the body of a packet too large is never read (the socket's buffer stays at its
    64 KiB), and the read fails as a closed connection does."""

    def __init__(self, reader: ReaderAdapter, limit: int, peer: str) -> None:
        self._reader = reader
        self.limit = limit
        self.peer = peer
        self.login = ""  # set once the CONNECT is let in: who sent the packet, for the log
        self._header = b""  # of the packet being read, not yet handed over
        self._body = 0  # bytes of its body not yet handed over
        self._replay = b""  # bytes read ahead (by `first_packet`), handed over first

    async def first_packet(self) -> bytes:
        """The first packet of the connection, header and body, read ahead: amqtt's reads get
        the same bytes afterwards."""
        await self._next_header()
        header = self._header
        self._header = b""
        body = await self.read(self._body) if self._body else b""
        self._replay = header + body
        return self._replay

    async def read(self, n: int = -1) -> bytes:
        if n < 0:  # amqtt asks for counted bytes only
            return bytes(await self._reader.read(n))
        data = bytearray(self._replay[:n])
        self._replay = self._replay[len(data) :]
        while len(data) < n:
            if not self._header and not self._body:
                await self._next_header()
            if self._header:
                taken = self._header[: n - len(data)]
                self._header = self._header[len(taken) :]
                data += taken
                continue
            chunk = await self._reader.read(min(n - len(data), self._body))
            self._body -= len(chunk)
            data += chunk
        return bytes(data)

    async def _next_header(self) -> None:
        header = bytearray(await self._reader.read(1))
        length, shift = 0, 0
        while len(header) < 5:  # the type byte and at most 4 bytes of remaining length
            byte = (await self._reader.read(1))[0]
            header.append(byte)
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:  # not a length MQTT allows: amqtt refuses it as it does without this reader
            self._header = bytes(header)
            return
        if length > self.limit:
            what = PACKET_TYPES.get(header[0] >> 4, f"type {header[0] >> 4}")
            log.warning(
                "closed the connection of %s (from %s): a %s packet of %d bytes, over the "
                "broker's limit of %d bytes (from the largest payload_bytes of its writers)",
                self.login or "a client not logged in",
                self.peer,
                what,
                length,
                self.limit,
            )
            raise PacketTooLarge(f"a {what} packet of {length} bytes from {self.peer}")
        self._header, self._body = bytes(header), length

    def feed_eof(self) -> None:
        self._reader.feed_eof()


PACKET_TYPES = {1: "CONNECT", 3: "PUBLISH", 8: "SUBSCRIBE", 10: "UNSUBSCRIBE"}


class RoutingBroker(SessionBroker):
    """amqtt's broker, which checks a CONNECT in full before it touches any session, checks a will
    as the publish it is, and routes every message a client sent before it disconnects.

    amqtt (0.11-0.12) looks up the CONNECT's client id first: it attaches the CONNECT's will to an
    existing session (or deletes the session, with clean_session=1) and disconnects the client
    connected with that id, and only then checks the password; it publishes a will without the
    publish check. `_initialize_client_session` here reads the CONNECT (within `connect_timeout`),
    refuses it (CONNACK 5, session-present 0, nothing else done) unless the login is good, its
    will's topic is one the login may publish and its client id is no other user's session, and
    only then does amqtt's session lookup. `_handle_disconnect` checks a will's topic again when
    it goes out. `_client_connected` closes a connection beyond `connections_per_address`, and
    reads each connection through PacketLimit: a packet over `max_packet_bytes` ends it unread.

    amqtt keeps a persistent session (clean_session=0) until the broker stops, so a user
    logging in with ever new client ids grew the broker without end. A user has at most
    `sessions_per_user` persistent sessions: a new one replaces the user's session disconnected
    longest ago, and is refused (CONNACK 2, identifier rejected) when all of them are connected.
    A node's client id is always the same, so its session (a writer's queue across restarts) is
    only ever replaced by sessions of its own login.

    amqtt acknowledges a QoS 1 publish when it reads it and routes it later, one message at a
    time (checking its topic is one await per message); a client that disconnects meanwhile had
    the rest of its acknowledged messages dropped. (Without the hook it relies on, the broker
    behaves as amqtt does.)

    A client that connects again takes its session over at once from the connection it had,
    which is aborted (SessionBroker, cqrs_flow.nodes.broker.sessions)."""

    connect_timeout = 10.0  # seconds a new connection has to send its CONNECT
    connections_per_address = 100  # open at once from one IP address; more are closed at once
    # The largest packet (remaining length) taken; a larger one ends its connection unread.
    # BrokerService sets it from the topology (cqrs_flow.transport.mqtt.max_packet_bytes).
    max_packet_bytes = 2 * 1024 * 1024
    sessions_per_user = 10  # persistent sessions one user may have; see above

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: dict[str, int] = {}  # IP address -> connections open from it
        self._capped: set[str] = set()  # addresses told they have too many open

    async def start(self) -> None:
        """amqtt's start, which leaves the listeners it opened open when a later step of it
        fails (and a broker that failed to start cannot be shut down): close them then."""
        try:
            await super().start()
        except BaseException:
            if self.transitions.state != "started":  # not a second start of a running broker
                for server in self._servers.values():
                    await server.close_instance()
            raise

    async def _client_connected(
        self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter
    ) -> None:
        _listener.set(listener_name)  # each connection runs in its own task, with its own context
        peer = writer.get_peer_info()
        address = peer[0] if peer else ""
        if self._open.get(address, 0) >= self.connections_per_address:
            if address not in self._capped:  # said once, not for every socket
                self._capped.add(address)
                log.warning(
                    "closing new connections from %s: %d are open from there already",
                    address or "an unknown address",
                    self.connections_per_address,
                )
            await writer.close()
            return
        self._open[address] = self._open.get(address, 0) + 1
        try:
            limited = PacketLimit(
                reader, self.max_packet_bytes, f"{address}:{peer[1] if peer else 0}"
            )
            await super()._client_connected(listener_name, limited, writer)
        finally:
            await writer.close()  # amqtt leaves the socket of a CONNECT it failed to read open
            self._open[address] -= 1
            if not self._open[address]:
                del self._open[address]
                self._capped.discard(address)

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        peer = f"{remote_address}:{remote_port}"
        if isinstance(reader, PacketLimit):
            await self._refuse_other_protocols(reader, writer, peer)
        try:
            handler, incoming = await asyncio.wait_for(
                SessionHandler.init_from_connect(reader, writer, self.plugins_manager),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            log.warning(
                "closed the connection from %s: no CONNECT within %gs", peer, self.connect_timeout
            )
            raise AMQTTError(f"no CONNECT from {peer} within {self.connect_timeout}s") from None
        except (AMQTTError, MQTTError, NoDataError) as exc:
            raise AMQTTError(f"no valid CONNECT from {peer}: {exc}") from None

        refusal = await self._refusal(incoming)
        if refusal and refusal != NOT_LOGGED_IN:  # NodeLogin logs a refused login itself
            log.warning(
                "refused the CONNECT of %s (client id %r, from %s): %s",
                repr(incoming.username) if incoming.username else "an anonymous client",
                incoming.client_id,
                peer,
                refusal,
            )
        if refusal:
            try:
                await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)  # session-present 0
            except OSError:
                pass  # gone already
            raise AMQTTError(f"CONNECT from {peer} refused: {refusal}")

        if isinstance(reader, PacketLimit):
            reader.login = f"{incoming.username!r} (client id {incoming.client_id!r})"
        if (
            not incoming.clean_session
            and incoming.client_id not in self._sessions
            and not await self._room_for_session(incoming)
        ):
            log.warning(
                "refused the CONNECT of %r (client id %r, from %s): a new persistent session, "
                "and its %d persistent sessions are all connected",
                incoming.username,
                incoming.client_id,
                peer,
                self.sessions_per_user,
            )
            try:
                await ConnackPacket.build(0, IDENTIFIER_REJECTED).to_stream(writer)
            except OSError:
                pass  # gone already
            raise AMQTTError(f"CONNECT from {peer} refused: too many persistent sessions")
        # What amqtt does next, now for a client that is let in (and a will's retain flag, too).
        if incoming.clean_session:
            if incoming.client_id:
                held = self._sessions.get(incoming.client_id)
                if held is not None and held[0].transitions.is_connected():
                    await self._displace(held[1], None)  # its session goes: end it at once
                await self._delete_session(incoming.client_id)
            else:
                incoming.client_id = gen_client_id()
            session, incoming.parent = incoming, 0
        elif incoming.client_id in self._sessions:
            session, _ = self._sessions[incoming.client_id]
            for attribute in (
                "will_flag",
                "will_message",
                "will_topic",
                "will_qos",
                "will_retain",
                "keep_alive",
                "username",
                "password",
            ):
                setattr(session, attribute, getattr(incoming, attribute))
            session.parent = 1
        else:
            session, incoming.parent = incoming, 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def _refusal(self, incoming: Session) -> str | None:
        """Why a CONNECT may not go further, or None. Nothing here reads or changes a session
        but the looking up of whose the client id is, for a client that logged in."""
        listener = self.listeners_config.get(_listener.get(None) or "default")
        if not await self._authenticate(incoming, listener):
            return NOT_LOGGED_IN
        if incoming.will_flag and not await self._may_publish_will(incoming):
            return f"may not publish its will on {incoming.will_topic!r}"
        held = self._sessions.get(incoming.client_id) if incoming.client_id else None
        if held is not None and held[0].username != incoming.username:
            return "its client id is another user's session"
        return None

    async def _refuse_other_protocols(
        self, reader: PacketLimit, writer: WriterAdapter, peer: str
    ) -> None:
        """Answer a CONNECT of a protocol other than MQTT 3.1.1 (MQTT 5, MQTT 3.1) with CONNACK
        1, unacceptable protocol version, as the MQTT 3.1.1 specification asks [MQTT-3.1.2-2].
        amqtt would read its body the 3.1.1 way: MQTT 5's properties made it wait for bytes that
        never came, and MQTT 3.1 was dropped without an answer, so clients retried for ever."""
        try:
            packet = await asyncio.wait_for(reader.first_packet(), self.connect_timeout)
        except asyncio.TimeoutError:
            log.warning(
                "closed the connection from %s: no CONNECT within %gs", peer, self.connect_timeout
            )
            raise AMQTTError(f"no CONNECT from {peer} within {self.connect_timeout}s") from None
        except (OSError, IndexError) as exc:  # gone, or cut off in the middle of a header
            raise AMQTTError(f"no valid CONNECT from {peer}: {exc or type(exc).__name__}") from None
        protocol = connect_protocol(packet)
        if protocol is None or protocol == ("MQTT", 4):
            return  # MQTT 3.1.1, or not a CONNECT at all: amqtt says what is wrong
        name, level = protocol
        version = {("MQTT", 5): "MQTT 5", ("MQIsdp", 3): "MQTT 3.1"}.get(
            protocol, f"protocol {name[:20]!r} level {level}"
        )
        log.warning(
            "refused the CONNECT from %s: %s; this broker speaks MQTT 3.1.1 only "
            "(CONNACK 1, unacceptable protocol version)",
            peer,
            version,
        )
        try:
            await ConnackPacket.build(0, UNACCEPTABLE_PROTOCOL_VERSION).to_stream(writer)
        except OSError:
            pass  # gone already
        raise AMQTTError(f"CONNECT from {peer} refused: {version}")

    async def _room_for_session(self, incoming: Session) -> bool:
        """Whether the user of `incoming` may have one more persistent session: yes if it has
        fewer than `sessions_per_user`, or once those disconnected longest ago are deleted."""
        user = incoming.username
        held = [
            session
            for session, _ in self._sessions.values()
            if session.username == user and not session.clean_session
        ]
        excess = len(held) - self.sessions_per_user + 1
        if excess <= 0:
            return True
        idle = sorted(
            (s for s in held if not s.transitions.is_connected()),
            key=lambda s: s.last_disconnect_time or 0,
        )
        if len(idle) < excess:
            return False
        for session in idle[:excess]:
            queued = session.retained_messages.qsize()
            await self._delete_session(session.client_id)
            log.warning(
                "deleted the persistent session %r of %r (disconnected, with %d messages "
                "queued) to make room for %r: a user has at most %d",
                session.client_id,
                user,
                queued,
                incoming.client_id,
                self.sessions_per_user,
            )
        return True

    async def _may_publish_will(self, session: Session) -> bool:
        """The check a publish gets, for the session's will (a topic name: no wildcard, no $)."""
        topic = session.will_topic
        if not topic or "#" in topic or "+" in topic or topic.startswith("$"):
            return False
        allowed: bool = await self._topic_filtering(session, topic=topic, action=Action.PUBLISH)
        return allowed

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any] | None,
    ) -> None:
        if not self._current(client_session, handler):  # taken over: the session goes on
            await super()._handle_disconnect(client_session, handler, disconnect_waiter)
            return
        queue = getattr(client_session, "delivered_message_queue", None)
        route = getattr(self, "_handle_message_delivery", None)
        while queue is not None and route is not None and not queue.empty():
            delivered = asyncio.get_running_loop().create_future()
            delivered.set_result(queue.get_nowait())
            if not await route(client_session, handler, delivered):
                break
        if client_session.will_flag and not await self._may_publish_will(client_session):
            log.warning(
                "dropped the will of %r on %r: the login may not publish there",
                client_session.username,
                client_session.will_topic,
            )
            client_session.will_flag = False
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
