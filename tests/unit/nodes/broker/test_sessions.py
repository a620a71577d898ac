"""A client's session across its connections in the embedded broker (RoutingBroker, in this
process, spoken to over raw sockets): a client connecting again while its old connection hangs
(a socket that never reads, its buffers full) gets its CONNACK at once and every message of its
session, once; the session stays connected; a QoS 1 message stays in the session until the
client acknowledges it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from cqrs_flow.nodes.broker import sessions

from ...helpers import until
from . import test_access as access_tests
from .test_access import connect_packet, remaining_length

PASSWORDS = {"gateway": "gateway-password", "writer": "writer-password"}
TOPIC = "CONTACT/ADD"
ACCEPTED, PRESENT = bytes([0x20, 0x02, 0x00, 0x00]), bytes([0x20, 0x02, 0x01, 0x00])
PAYLOAD = 32 * 1024  # bytes a message
COUNT = 250  # messages: 8 MB, more than the sockets of a connection that is not read hold


class Broker(access_tests.Broker):
    """A RoutingBroker on a free port: the gateway publishes on TOPIC, the writer reads it."""

    def __init__(self) -> None:
        super().__init__(
            max_packet=2 * 1024 * 1024,  # the broker's default: PAYLOAD-sized messages pass
            passwords=PASSWORDS,
            publish={"gateway": [TOPIC], "writer": []},
            subscribe={"gateway": [], "writer": [TOPIC]},
        )

    async def open(self, small_buffer: bool = False) -> Client:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_buffer:  # before connect, so the window the broker sees stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return Client(reader, writer)

    @property
    def session(self):
        return self.broker._sessions["writer-1"][0]


class Client:
    """One MQTT connection, spoken raw."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, packet: bytes) -> None:
        self.writer.write(packet)
        await self.writer.drain()

    async def packet(self, timeout: float = 5.0) -> tuple[int, int, bytes]:
        """The next packet: its type, its flags and its body."""
        first = (await asyncio.wait_for(self.reader.readexactly(1), timeout))[0]
        length, shift = 0, 0
        while True:
            byte = (await asyncio.wait_for(self.reader.readexactly(1), timeout))[0]
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return first >> 4, first & 0x0F, body

    async def connect(self, client_id: str, user: str, clean: bool = False) -> bytes:
        await self.send(connect_packet(client_id, user, PASSWORDS[user], clean=clean))
        return await asyncio.wait_for(self.reader.readexactly(4), 5)

    async def subscribe(self, topic: str) -> None:
        body = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic.encode() + b"\x01"
        await self.send(b"\x82" + remaining_length(len(body)) + body)
        kind, _, _ = await self.packet()
        assert kind == 9  # SUBACK

    async def publish(self, packet_id: int, payload: bytes) -> None:
        """A QoS 1 PUBLISH on TOPIC, and its PUBACK."""
        body = len(TOPIC).to_bytes(2, "big") + TOPIC.encode() + packet_id.to_bytes(2, "big")
        await self.send(b"\x32" + remaining_length(len(body) + len(payload)) + body + payload)

    async def received(self, count: int, ack: bool = True) -> list[tuple[bytes, bool]]:
        """`count` PUBLISHes (their payload's first 8 bytes, and the DUP flag), each
        acknowledged unless `ack` is false; PUBACKs for this client's own publishes skipped."""
        got = []
        while len(got) < count:
            kind, flags, body = await self.packet()
            if kind != 3:
                continue
            size = int.from_bytes(body[:2], "big")
            packet_id = body[2 + size : 4 + size]
            got.append((body[4 + size : 12 + size], bool(flags & 0x08)))
            if ack:
                await self.send(b"\x40\x02" + packet_id)
        return got

    def close(self) -> None:
        self.writer.close()


def message(n: int) -> bytes:
    return f"m{n:07d}".encode() + b"x" * (PAYLOAD - 8)


async def publish_all(gateway: Client, numbers: range) -> None:
    for n in numbers:
        await gateway.publish(n + 1, message(n))
    for _ in numbers:  # every PUBACK: the broker has them all
        kind, _, _ = await gateway.packet()
        assert kind == 4


def test_a_client_connecting_again_takes_over_a_hanging_connection_at_once():
    """The old connection never reads: what the broker sent it fills the socket's buffers and
    the rest waits in the broker. The client connects again with its client id: CONNACK with
    session-present within half a second, then every message, each once, those written to the
    old socket marked DUP; the session stays connected and gets what is published after."""

    async def scenario():
        async with Broker() as broker:
            old = await broker.open(small_buffer=True)
            assert await old.connect("writer-1", "writer") == ACCEPTED
            await old.subscribe(TOPIC)
            gateway = await broker.open()
            assert await gateway.connect("gateway-1", "gateway", clean=True) == ACCEPTED
            await publish_all(gateway, range(COUNT))  # more than the socket buffers hold
            hanging = broker.broker._sessions["writer-1"][1].writer._writer.transport
            await until(lambda: hanging.get_write_buffer_size() > 64 * 1024)  # cannot drain
            assert broker.session.inflight_out

            new = await broker.open()
            started = time.monotonic()
            assert await new.connect("writer-1", "writer") == PRESENT
            assert time.monotonic() - started < 0.5
            got = await new.received(COUNT)
            assert sorted(payload for payload, _ in got) == sorted(
                message(n)[:8] for n in range(COUNT)
            )
            assert any(dup for _, dup in got)  # those written to the old socket: sent again
            with pytest.raises(asyncio.TimeoutError):  # and nothing twice
                await new.packet(timeout=0.5)

            await asyncio.sleep(0.3)  # the old connection's end is done by now
            assert broker.session.transitions.is_connected()
            assert broker.broker._sessions["writer-1"][1].writer is not None
            await publish_all(gateway, range(COUNT, COUNT + 5))
            later = await new.received(5)
            assert [payload for payload, _ in later] == [
                message(n)[:8] for n in range(COUNT, COUNT + 5)
            ]
            await until(lambda: not broker.session.inflight_out)
            with contextlib.suppress(ConnectionResetError):  # closed by the broker (aborted)
                await asyncio.wait_for(old.reader.read(), 5)
            for client in (old, new, gateway):
                client.close()

    asyncio.run(scenario())


def test_a_clean_session_connecting_again_closes_the_old_connection_at_once():
    async def scenario():
        async with Broker() as broker:
            old = await broker.open(small_buffer=True)
            assert await old.connect("writer-1", "writer", clean=True) == ACCEPTED
            await old.subscribe(TOPIC)
            gateway = await broker.open()
            assert await gateway.connect("gateway-1", "gateway", clean=True) == ACCEPTED
            await publish_all(gateway, range(60))
            new = await broker.open()
            started = time.monotonic()
            assert await new.connect("writer-1", "writer", clean=True) == ACCEPTED
            assert time.monotonic() - started < 0.5
            await new.subscribe(TOPIC)
            await publish_all(gateway, range(60, 62))
            got = await new.received(2)
            assert [payload for payload, _ in got] == [message(60)[:8], message(61)[:8]]
            await asyncio.sleep(0.3)
            assert broker.session.transitions.is_connected()
            for client in (old, new, gateway):
                client.close()

    asyncio.run(scenario())


def test_a_message_without_its_puback_stays_in_the_session_for_the_next_connection(
    monkeypatch,
):
    """Not acknowledged within PUBACK_WAIT, the message stays in flight (amqtt dropped it),
    and is sent again, DUP, on the client's next connection; a late PUBACK settles it too."""
    monkeypatch.setattr(sessions, "PUBACK_WAIT", 0.2)

    async def scenario():
        async with Broker() as broker:
            first = await broker.open()
            assert await first.connect("writer-1", "writer") == ACCEPTED
            await first.subscribe(TOPIC)
            gateway = await broker.open()
            assert await gateway.connect("gateway-1", "gateway", clean=True) == ACCEPTED
            await publish_all(gateway, range(2))
            assert [p for p, _ in await first.received(2, ack=False)] == [
                message(0)[:8],
                message(1)[:8],
            ]
            await asyncio.sleep(0.5)  # past PUBACK_WAIT
            assert len(broker.session.inflight_out) == 2
            first.close()
            await until(lambda: not broker.session.transitions.is_connected())

            second = await broker.open()
            assert await second.connect("writer-1", "writer") == PRESENT
            again = await second.received(2, ack=False)
            assert sorted(again) == [(message(0)[:8], True), (message(1)[:8], True)]
            await asyncio.sleep(0.5)  # no PUBACK in time again: still in flight
            assert len(broker.session.inflight_out) == 2
            for packet_id in list(broker.session.inflight_out):
                await second.send(b"\x40\x02" + packet_id.to_bytes(2, "big"))
            await until(lambda: not broker.session.inflight_out)
            for client in (second, gateway):
                client.close()

    asyncio.run(scenario())


def test_a_connection_taken_over_sends_no_will_and_one_that_drops_does():
    """The will is for a client gone: one that came back on a new connection is not gone. The
    new connection dropping afterwards (no DISCONNECT) still sends it."""

    async def scenario():
        async with Broker() as broker:
            reader = await broker.open()
            assert await reader.connect("writer-1", "writer") == ACCEPTED
            await reader.subscribe(TOPIC)
            will = connect_packet(
                "gateway-1", "gateway", PASSWORDS["gateway"], clean=False, will=(TOPIC, b"gone")
            )
            old = await broker.open()
            await old.send(will)
            assert await old.reader.readexactly(4) == ACCEPTED
            new = await broker.open()
            await new.send(will)
            assert await new.reader.readexactly(4) == PRESENT
            with pytest.raises(asyncio.TimeoutError):
                await reader.packet(timeout=0.5)
            new.writer.transport.abort()  # gone without a DISCONNECT
            [(payload, _)] = await reader.received(1)
            assert payload == b"gone"
            for client in (reader, old):
                client.close()

    asyncio.run(scenario())
