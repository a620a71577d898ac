"""The embedded broker's packets on the wire: a packet read whole, decoded at once.

amqtt reads a packet through a chain of awaits (a byte of type, each byte of the remaining
length, each field of the variable header, the payload), each one a read of the stream. Here a
packet, read whole by PacketLimit (cqrs_flow.nodes.broker.access), becomes amqtt's packet object
in one call (PUBLISH and PUBACK, nearly all of the traffic, without any await).
"""

from __future__ import annotations

from typing import Any

from amqtt.adapters import BufferReader
from amqtt.errors import MQTTError
from amqtt.mqtt import packet_class
from amqtt.mqtt.packet import PUBACK, PUBLISH, MQTTFixedHeader, PacketIdVariableHeader
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket, PublishPayload, PublishVariableHeader

__all__ = ["decode"]


async def decode(first: int, body: bytes) -> Any:
    """amqtt's packet object for a packet read whole: `first` its first byte (type and flags),
    `body` the rest after the remaining length. PUBLISH and PUBACK are decoded here, as amqtt
    would (a topic that is not UTF-8 kept as the repr of its bytes, as amqtt's decode_string
    does); other packets by amqtt's own classes, from the bytes. A packet shorter than its
    fields raises MQTTError (amqtt would have read into the next packet)."""
    kind, flags = first >> 4, first & 0x0F
    fixed = MQTTFixedHeader(kind, flags, len(body))
    if kind == PUBLISH:
        size = int.from_bytes(body[:2], "big")
        end = 2 + size
        qos = (flags >> 1) & 0x03
        if len(body) < end + (2 if qos else 0):
            raise MQTTError(f"a PUBLISH of {len(body)} bytes, shorter than its header")
        raw = body[2:end]
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            topic = str(raw)
        packet_id = int.from_bytes(body[end : end + 2], "big") if qos else None
        payload = body[end + 2 :] if qos else body[end:]
        return PublishPacket(
            fixed, PublishVariableHeader(topic, packet_id), PublishPayload(payload)
        )
    if kind == PUBACK:
        if len(body) < 2:
            raise MQTTError(f"a PUBACK of {len(body)} bytes")
        return PubackPacket(fixed, PacketIdVariableHeader(int.from_bytes(body[:2], "big")))
    return await packet_class(fixed).from_stream(BufferReader(body), fixed_header=fixed)
