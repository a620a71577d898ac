"""The broker's packets on the wire: a packet read whole becomes the packet amqtt would have
read, and the reader loop keeps the order of a burst, the limits and the keep-alive."""

from __future__ import annotations

import asyncio
import logging

import pytest
from amqtt.adapters import BufferReader, StreamReaderAdapter
from amqtt.errors import MQTTError
from amqtt.mqtt.packet import MQTTFixedHeader
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket

from cqrs_flow.nodes.broker.access import PacketLimit, PacketTooLarge
from cqrs_flow.nodes.broker.wire import decode

from ...helpers import until
from .test_access import publish_packet, remaining_length
from .test_sessions import TOPIC, Broker


def qos1_publish(topic: str, packet_id: int, payload: bytes, dup: bool = False) -> bytes:
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + packet_id.to_bytes(2, "big")
    first = 0x32 | (0x08 if dup else 0)
    return bytes([first]) + remaining_length(len(body) + len(payload)) + body + payload


async def amqtt_reads(packet: bytes):
    """The packet as amqtt's own decoding reads it from a stream."""
    reader = BufferReader(packet)
    fixed = await MQTTFixedHeader.from_stream(reader)
    cls = PublishPacket if fixed.packet_type == 3 else PubackPacket
    return await cls.from_stream(reader, fixed_header=fixed)


def split(packet: bytes) -> tuple[int, bytes]:
    start = 1
    while packet[start] & 0x80:
        start += 1
    return packet[0], packet[start + 1 :]


@pytest.mark.parametrize(
    "packet",
    [
        qos1_publish("CONTACT/ADD", 513, b'{"name": "x"}'),
        qos1_publish("a/b", 7, b"", dup=True),
        publish_packet("CONTACT/ADD", b"y" * 300),  # QoS 0: no packet id
        qos1_publish("caf\xe9", 1, b"z"),
        b"\x40\x02\x01\x02",  # PUBACK of 258
    ],
    ids=["qos1", "dup-empty", "qos0-long", "utf8", "puback"],
)
def test_a_packet_decoded_whole_is_the_one_amqtt_reads(packet):
    ours = asyncio.run(decode(*split(packet)))
    theirs = asyncio.run(amqtt_reads(packet))
    assert type(ours) is type(theirs)
    assert ours.to_bytes() == theirs.to_bytes() == packet
    if isinstance(ours, PublishPacket):
        assert (ours.topic_name, ours.qos, ours.dup_flag, ours.retain_flag) == (
            theirs.topic_name,
            theirs.qos,
            theirs.dup_flag,
            theirs.retain_flag,
        )
        assert ours.packet_id == theirs.packet_id and ours.data == theirs.data


def test_a_packet_shorter_than_its_fields_is_refused():
    with pytest.raises(MQTTError):
        asyncio.run(decode(0x32, b"\x00\x05ab"))  # a topic of 5 bytes, 2 sent
    with pytest.raises(MQTTError):
        asyncio.run(decode(0x40, b"\x01"))


def test_packets_read_whole_are_the_packets_sent_and_the_limit_holds():
    packets = [
        qos1_publish(TOPIC, 1, b"a"),
        b"\xc0\x00",  # PINGREQ
        publish_packet("t", b"y" * 300),  # a two-byte remaining length
        publish_packet("t", b"y" * 5000),  # over the limit
    ]

    async def scenario():
        stream = asyncio.StreamReader()
        stream.feed_data(b"".join(packets))
        limited = PacketLimit(StreamReaderAdapter(stream), 4096, "peer")
        got = [await limited.read_packet() for _ in range(3)]
        with pytest.raises(PacketTooLarge):
            await limited.read_packet()
        return got

    assert asyncio.run(scenario()) == [split(p) for p in packets[:3]]


def test_a_remaining_length_of_five_bytes_is_refused():
    async def scenario():
        stream = asyncio.StreamReader()
        stream.feed_data(b"\x30\xff\xff\xff\xff\x01")
        with pytest.raises(MQTTError):
            await PacketLimit(StreamReaderAdapter(stream), 4096, "peer").read_packet()

    asyncio.run(scenario())


def test_a_burst_is_acknowledged_and_delivered_in_order(caplog):
    """200 QoS 1 publishes in one write (handled in the reader loop, without a task each): 200
    PUBACKs in order, 200 deliveries in order, each kept in the session until its PUBACK and
    then no longer."""

    async def scenario():
        async with Broker() as broker:
            writer = await broker.open()
            assert (await writer.connect("writer-1", "writer"))[3] == 0
            await writer.subscribe(TOPIC)
            gateway = await broker.open()
            assert (await gateway.connect("gateway-1", "gateway", clean=True))[3] == 0
            gateway.writer.write(
                b"".join(qos1_publish(TOPIC, n, b"m%04d" % n) for n in range(1, 201))
            )
            acks = await asyncio.wait_for(gateway.reader.readexactly(200 * 4), 5)
            assert acks == b"".join(b"\x40\x02" + n.to_bytes(2, "big") for n in range(1, 201))
            got = await writer.received(200, ack=False)
            assert [payload[:5] for payload, _ in got] == [b"m%04d" % n for n in range(1, 201)]
            assert len(broker.session.inflight_out) == 200  # kept until acknowledged
            for packet_id in list(broker.session.inflight_out):
                await writer.send(b"\x40\x02" + packet_id.to_bytes(2, "big"))
            handler = broker.broker._sessions["writer-1"][1]
            await until(lambda: not broker.session.inflight_out and not handler._puback_waiters)
            gateway.close()
            writer.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "refused" not in caplog.text


def test_the_keep_alive_timer_fires_only_after_a_silence():
    """One timer for the keep-alive: re-armed from the last packet read when it fires after a
    packet came, `handle_read_timeout` called when none did."""
    from cqrs_flow.nodes.broker.sessions import SessionHandler

    async def scenario():
        handler = SessionHandler(plugins_manager=None)
        timeouts: list[float] = []
        handler.handle_read_timeout = lambda: timeouts.append(loop.time())
        loop = asyncio.get_running_loop()
        handler._last_read = loop.time()
        handler._read_timer = loop.call_later(0.1, handler._check_read, 0.1)
        await asyncio.sleep(0.06)
        handler._last_read = loop.time()  # a packet: no timeout at 0.1
        await asyncio.sleep(0.07)
        assert timeouts == []
        await asyncio.sleep(0.1)
        assert len(timeouts) == 1
        handler._read_timer.cancel()

    asyncio.run(scenario())


def test_a_refused_publish_is_dropped_and_a_wildcard_topic_is_discarded(caplog):
    """The routing of a published message keeps amqtt's checks: a topic outside the login's ACL
    is acknowledged and dropped, a PUBLISH to a wildcard is discarded unacknowledged (as
    amqtt's decoding does); the connection goes on either way."""

    async def scenario():
        async with Broker() as broker:
            writer = await broker.open()
            assert (await writer.connect("writer-1", "writer"))[3] == 0
            await writer.subscribe(TOPIC)
            gateway = await broker.open()
            assert (await gateway.connect("gateway-1", "gateway", clean=True))[3] == 0
            await gateway.send(qos1_publish("OTHER", 1, b"m0001"))
            await gateway.send(qos1_publish("CONTACT/+", 2, b"m0002"))
            await gateway.send(qos1_publish(TOPIC, 3, b"m0003"))
            got = await writer.received(1)
            assert got[0][0][:5] == b"m0003"  # the others never came
            acks = [await gateway.packet() for _ in range(2)]
            assert acks == [(4, 0, bytes([0, n])) for n in (1, 3)]
            gateway.close()
            writer.close()

    with caplog.at_level(logging.INFO, "cqrs_flow.broker"):
        asyncio.run(scenario())
    assert "refused: 'gateway' may not publish to 'OTHER'" in caplog.text
