"""The embedded broker (RoutingBroker, in this process) checks a CONNECT in full before it looks
at any session: the login, the will's topic against the login's ACL, whose the client id is."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings

import pytest

from cqrs_flow.security.mqtt_logins import password_digest
from cqrs_flow.topology.relocate import free_ports

PASSWORDS = {"gateway": "gateway-password", "dashboard": "dashboard-password"}
PUBLISH = {"gateway": ["CONTACT/ADD"], "dashboard": []}
SUBSCRIBE = {"gateway": ["contacts/status"], "dashboard": ["contacts/status"]}
ACCEPTED, NOT_AUTHORISED = 0, 5


def _string(value: str | bytes) -> bytes:
    value = value.encode() if isinstance(value, str) else value
    return len(value).to_bytes(2, "big") + value


def connect_packet(
    client_id: str,
    user: str | None = None,
    password: str | None = None,
    *,
    clean: bool = True,
    will: tuple[str, bytes] | None = None,
) -> bytes:
    """An MQTT 3.1.1 CONNECT."""
    flags = (0x02 if clean else 0) | (0x0C if will else 0) | (0x80 if user is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + _string(client_id)
    if will:
        body += _string(will[0]) + _string(will[1])
    body += _string(user) if user is not None else b""
    body += _string(password) if password is not None else b""
    assert len(body) < 128
    return b"\x10" + bytes([len(body)]) + body


class Broker:
    """A RoutingBroker on a free port, with two users and their ACL (these tests', unless given)."""

    def __init__(
        self,
        connect_timeout: float = 10.0,
        per_address: int = 100,
        max_packet: int = 4096,
        sessions_per_user: int = 10,
        passwords: dict[str, str] = PASSWORDS,
        publish: dict[str, list[str]] = PUBLISH,
        subscribe: dict[str, list[str]] = SUBSCRIBE,
    ) -> None:
        self.port = free_ports(1)[0]
        self.connect_timeout, self.per_address = connect_timeout, per_address
        self.max_packet, self.sessions_per_user = max_packet, sessions_per_user
        self.passwords, self.publish, self.subscribe = passwords, publish, subscribe

    async def __aenter__(self) -> Broker:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from cqrs_flow.nodes.broker.access import RoutingBroker

            self.broker = RoutingBroker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    "plugins": {
                        "cqrs_flow.nodes.broker.access.NodeLogin": {
                            "users": {u: password_digest(p) for u, p in self.passwords.items()}
                        },
                        "cqrs_flow.nodes.broker.access.TopicAccess": {
                            "publish": self.publish,
                            "subscribe": self.subscribe,
                        },
                    },
                }
            )
        self.broker.connect_timeout = self.connect_timeout
        self.broker.connections_per_address = self.per_address
        self.broker.max_packet_bytes = self.max_packet
        self.broker.sessions_per_user = self.sessions_per_user
        await self.broker.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.broker.shutdown()

    async def connect(
        self, packet: bytes
    ) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
        """Send `packet` on a new connection; the CONNACK and the open connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(packet)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4), 5), reader, writer

    async def connack(self, packet: bytes) -> bytes:
        connack, _, writer = await self.connect(packet)
        writer.close()
        return connack

    @property
    def sessions(self) -> dict:
        return self.broker._sessions

    async def disconnected(self, client_id: str) -> None:
        """Return once the broker has seen the client of `client_id` go."""
        for _ in range(500):
            if not self.sessions[client_id][0].transitions.is_connected():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{client_id} still connected")


def refused(code: int = NOT_AUTHORISED) -> bytes:
    return bytes([0x20, 0x02, 0x00, code])


def test_a_refused_login_leaves_no_session():
    async def scenario():
        async with Broker() as broker:
            for user, password in [(None, None), ("gateway", "wrong"), ("nobody", "x")]:
                packet = connect_packet(f"gone-{user}", user, password, clean=False)
                assert await broker.connack(packet) == refused()
            await asyncio.sleep(0.1)
            assert broker.sessions == {}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "user, topic, code",
    [
        ("gateway", "CONTACT/ADD", ACCEPTED),  # in its ACL
        ("gateway", "contacts/status", NOT_AUTHORISED),  # it may only read the status topic
        ("gateway", "CONTACT/+", NOT_AUTHORISED),  # a will's topic is a name, not a filter
        ("gateway", "$SYS/x", NOT_AUTHORISED),
        ("dashboard", "CONTACT/ADD", NOT_AUTHORISED),  # subscribe only
    ],
)
def test_a_will_is_checked_against_the_publish_acl_at_connect(user, topic, code):
    async def scenario():
        async with Broker() as broker:
            packet = connect_packet("with-will", user, PASSWORDS[user], will=(topic, b"bye"))
            connack, _, writer = await broker.connect(packet)
            writer.close()
            assert connack == bytes([0x20, 0x02, 0x00, code])
            assert ("with-will" in broker.sessions) is (code == ACCEPTED)

    asyncio.run(scenario())


def test_a_refused_connect_touches_no_session_and_says_nothing_of_it():
    """With a persistent session under the client id, connected: an anonymous CONNECT with that
    client id, clean_session=0 and a will is refused with session-present 0, and the session
    keeps its client, its will (none) and its login; so does a CONNECT with clean_session=1."""

    async def scenario():
        async with Broker() as broker:
            login = connect_packet("dash", "dashboard", PASSWORDS["dashboard"], clean=False)
            assert await broker.connack(login) == bytes([0x20, 0x02, 0x00, ACCEPTED])
            connack, reader, owner = await broker.connect(login)
            assert connack == bytes([0x20, 0x02, 0x01, ACCEPTED])  # its session is there
            session = broker.sessions["dash"][0]
            for packet in (
                connect_packet("dash", clean=False, will=("CONTACT/ADD", b"x")),
                connect_packet("dash", "gateway", "wrong", clean=False),
                connect_packet("dash", clean=True),
            ):
                assert await broker.connack(packet) == refused()
            await asyncio.sleep(0.1)
            assert broker.sessions["dash"][0] is session
            assert session.transitions.is_connected() and not session.will_flag
            assert session.username == "dashboard"
            owner.write(b"\xc0\x00")  # PINGREQ: the owner's connection still works
            await owner.drain()
            assert await asyncio.wait_for(reader.read(2), 5) == b"\xd0\x00"
            owner.close()

    asyncio.run(scenario())


def test_a_client_id_of_another_user_is_refused():
    async def scenario():
        async with Broker() as broker:
            owned = connect_packet("dash", "dashboard", PASSWORDS["dashboard"], clean=False)
            assert await broker.connack(owned) == bytes([0x20, 0x02, 0x00, ACCEPTED])
            for clean in (False, True):
                packet = connect_packet("dash", "gateway", PASSWORDS["gateway"], clean=clean)
                assert await broker.connack(packet) == refused()
            await asyncio.sleep(0.1)
            assert broker.sessions["dash"][0].username == "dashboard"

    asyncio.run(scenario())


def test_a_will_goes_out_only_if_its_topic_may_be_published_then():
    """A will is checked again when it is published: a session whose will was set outside the
    CONNECT check (as amqtt's session handling could) publishes none."""

    async def scenario():
        async with Broker() as broker:
            seen: list[str] = []

            async def broadcast(session, topic, *args) -> None:
                seen.append(topic)

            broker.broker._broadcast_message = broadcast
            packet = connect_packet(
                "bye", "gateway", PASSWORDS["gateway"], will=("CONTACT/ADD", b"x")
            )
            _, _, writer = await broker.connect(packet)
            broker.sessions["bye"][0].will_topic = "contacts/status"
            writer.transport.abort()
            await asyncio.sleep(0.3)
            assert seen == []

    asyncio.run(scenario())


def test_a_connection_that_sends_no_connect_is_closed():
    async def scenario():
        async with Broker(connect_timeout=0.3) as broker:
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
            assert await asyncio.wait_for(reader.read(1), 3) == b""  # closed by the broker
            writer.close()
            assert broker.sessions == {}

    asyncio.run(scenario())


def test_connections_from_one_address_are_capped():
    async def scenario():
        async with Broker(per_address=2) as broker:
            login = connect_packet("first", "gateway", PASSWORDS["gateway"])
            first, _, kept = await broker.connect(login)
            assert first == bytes([0x20, 0x02, 0x00, ACCEPTED])
            idle = await asyncio.open_connection("127.0.0.1", broker.port)  # sends nothing
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
            assert await asyncio.wait_for(reader.read(1), 3) == b""  # the third: closed at once
            writer.close()
            idle[1].close()
            await asyncio.sleep(0.1)
            again = connect_packet("again", "gateway", PASSWORDS["gateway"])
            assert await broker.connack(again) == bytes([0x20, 0x02, 0x00, ACCEPTED])
            kept.close()

    asyncio.run(scenario())


# -- packets over the limit ---------------------------------------------------------------------


def remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def publish_packet(topic: str, payload: bytes, announced: int | None = None) -> bytes:
    """A QoS 0 PUBLISH; `announced` overrides the payload's length in the fixed header."""
    length = 2 + len(topic) + (len(payload) if announced is None else announced)
    return b"\x30" + remaining_length(length) + _string(topic) + payload


def test_a_packet_over_the_limit_closes_its_connection_before_its_body_is_read(caplog):
    async def scenario():
        async with Broker(max_packet=4096) as broker:
            seen: list[tuple[str, bytes]] = []

            async def broadcast(session, topic, data, *args) -> None:
                seen.append((topic, data))

            broker.broker._broadcast_message = broadcast
            login = connect_packet("big", "gateway", PASSWORDS["gateway"])
            connack, reader, writer = await broker.connect(login)
            assert connack == bytes([0x20, 0x02, 0x00, ACCEPTED])
            writer.write(publish_packet("CONTACT/ADD", b"x" * (4096 - 13)))  # exactly the limit
            await writer.drain()
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.02)
            assert seen == [("CONTACT/ADD", b"x" * (4096 - 13))]
            # 20 MiB announced, a little sent: the broker closes without waiting for the rest
            writer.write(publish_packet("CONTACT/ADD", b"x" * 1000, announced=20 * 1024 * 1024))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(1), 5) == b""
            writer.close()
            assert len(seen) == 1

            # A CONNECT over the limit is not even read
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
            writer.write(b"\x10" + remaining_length(5000) + b"\x00\x04MQTT")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(1), 5) == b""
            writer.close()

    with caplog.at_level(logging.WARNING, "cqrs_flow.broker"):
        asyncio.run(scenario())
    closed = [r.getMessage() for r in caplog.records if "over the broker's limit" in r.message]
    assert len(closed) == 2  # once per connection
    assert re.fullmatch(
        r"closed the connection of 'gateway' \(client id 'big'\) \(from 127\.0\.0\.1:\d+\): a "
        r"PUBLISH packet of 20971533 bytes, over the broker's limit of 4096 bytes \(from the "
        r"largest payload_bytes of its writers\)",
        closed[0],
    )
    assert "a client not logged in" in closed[1] and "a CONNECT packet of 5000 bytes" in closed[1]


def test_packets_read_through_the_limit_are_the_bytes_sent():
    """PacketLimit hands amqtt exactly the stream, whatever sizes amqtt reads it in."""
    from amqtt.adapters import StreamReaderAdapter

    from cqrs_flow.nodes.broker.access import PacketLimit

    packets = [
        publish_packet("a/b", b"payload"),
        b"\xc0\x00",  # PINGREQ: no body
        publish_packet("t", b"y" * 300),  # a two-byte remaining length
        b"\xe0\x00",
    ]

    async def scenario():
        stream = asyncio.StreamReader()
        stream.feed_data(b"".join(packets))
        stream.feed_eof()
        limited = PacketLimit(StreamReaderAdapter(stream), 4096, "peer")
        data = bytearray()
        for size in [1, 1, 2, 3, 7, 2, 1, 2, 3, 100, 200, 2]:  # 324 bytes in all
            data += await limited.read(size)
        with pytest.raises(asyncio.IncompleteReadError):
            await limited.read(1)
        return bytes(data)

    assert asyncio.run(scenario()) == b"".join(packets)


# -- persistent sessions per user ---------------------------------------------------------------


def test_a_user_has_at_most_sessions_per_user_persistent_sessions(caplog):
    """New client ids with clean_session=0 replace the user's sessions disconnected longest ago;
    other users' sessions stay; with every session connected, a new one is refused."""

    async def scenario():
        async with Broker(sessions_per_user=2) as broker:
            gateway = connect_packet("gw-own", "gateway", PASSWORDS["gateway"], clean=False)
            assert await broker.connack(gateway) == bytes([0x20, 0x02, 0x00, ACCEPTED])
            for client_id in ("d1", "d2", "d3", "d4"):
                packet = connect_packet(client_id, "dashboard", PASSWORDS["dashboard"], clean=False)
                assert await broker.connack(packet) == bytes([0x20, 0x02, 0x00, ACCEPTED])
                await broker.disconnected(client_id)
            assert sorted(broker.sessions) == ["d3", "d4", "gw-own"]
            again = connect_packet("d4", "dashboard", PASSWORDS["dashboard"], clean=False)
            assert await broker.connack(again) == bytes([0x20, 0x02, 0x01, ACCEPTED])  # kept
            held = []
            for client_id in ("d3", "d4"):
                packet = connect_packet(client_id, "dashboard", PASSWORDS["dashboard"], clean=False)
                connack, _, writer = await broker.connect(packet)
                assert connack == bytes([0x20, 0x02, 0x01, ACCEPTED])
                held.append(writer)
            packet = connect_packet("d5", "dashboard", PASSWORDS["dashboard"], clean=False)
            assert await broker.connack(packet) == refused(2)  # identifier rejected
            clean = connect_packet("d6", "dashboard", PASSWORDS["dashboard"], clean=True)
            assert await broker.connack(clean) == bytes([0x20, 0x02, 0x00, ACCEPTED])
            await asyncio.sleep(0.1)
            assert {"d3", "d4", "gw-own"} <= set(broker.sessions)
            assert not {"d1", "d2", "d5"} & set(broker.sessions)
            for writer in held:
                writer.close()

    with caplog.at_level(logging.WARNING, "cqrs_flow.broker"):
        asyncio.run(scenario())
    assert (
        "deleted the persistent session 'd1' of 'dashboard' (disconnected, with 0 messages "
        "queued) to make room for 'd3': a user has at most 2" in caplog.text
    )
    assert "refused the CONNECT of 'dashboard' (client id 'd5'" in caplog.text


def mqtt5_connect(client_id: str, user: str, password: str) -> bytes:
    """An MQTT 5 CONNECT as mosquitto_sub -V mqttv5 sends it: level 5, an empty property list
    after the keep-alive, then the payload."""
    body = (
        b"\x00\x04MQTT\x05\xc2\x00\x3c\x00" + _string(client_id) + _string(user) + _string(password)
    )
    return b"\x10" + bytes([len(body)]) + body


def mqtt31_connect(client_id: str, user: str, password: str) -> bytes:
    """An MQTT 3.1 CONNECT (protocol name MQIsdp, level 3), as mosquitto_sub -V mqttv31 sends."""
    body = b"\x00\x06MQIsdp\x03\xc2\x00\x3c" + _string(client_id) + _string(user)
    body += _string(password)
    return b"\x10" + bytes([len(body)]) + body


@pytest.mark.parametrize(
    "packet, version",
    [
        (mqtt5_connect("v5", "gateway", PASSWORDS["gateway"]), "MQTT 5"),
        (mqtt31_connect("v31", "gateway", PASSWORDS["gateway"]), "MQTT 3.1"),
        (b"\x10\x0c\x00\x04MQTT\x07\x02\x00\x3c\x00\x00", "protocol 'MQTT' level 7"),
    ],
    ids=["mqtt5", "mqtt31", "level7"],
)
def test_a_connect_of_another_protocol_version_gets_connack_1_at_once(caplog, packet, version):
    """MQTT 5 made amqtt wait for bytes that never came (no CONNACK until the client gave up),
    MQTT 3.1 was dropped unanswered: both get CONNACK 1 (unacceptable protocol version) at once,
    with one log line, no traceback; the broker goes on."""

    async def scenario():
        async with Broker() as broker:
            connack, reader, writer = await broker.connect(packet)
            assert connack == refused(1)
            assert await asyncio.wait_for(reader.read(1), 3) == b""  # then closed
            writer.close()
            assert broker.sessions == {}
            good = connect_packet("after", "gateway", PASSWORDS["gateway"])
            assert await broker.connack(good) == bytes([0x20, 0x02, 0x00, ACCEPTED])

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    lines = [r for r in caplog.records if "refused the CONNECT from 127.0.0.1" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert f": {version}; this broker speaks MQTT 3.1.1 only" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)


def test_connect_protocol_reads_the_name_and_level():
    from cqrs_flow.nodes.broker.access import connect_protocol

    assert connect_protocol(connect_packet("c", "u", "p")) == ("MQTT", 4)
    assert connect_protocol(mqtt5_connect("c", "u", "p")) == ("MQTT", 5)
    assert connect_protocol(mqtt31_connect("c", "u", "p")) == ("MQIsdp", 3)
    assert connect_protocol(b"\x30\x02\x00\x00") is None  # a PUBLISH
    assert connect_protocol(b"\x10\x05\x00\x04MQ") is None  # cut short
    assert connect_protocol(b"") is None
