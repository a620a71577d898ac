"""The embedded broker's packets on the wire: a packet read whole decoded at once, and a
connection's writer that sends the packets of one event-loop turn together.

amqtt reads a packet through a chain of awaits (a byte of type, each byte of the remaining
length, each field of the variable header, the payload), each one a read of the stream, and
writes each packet with its own `send`, which on loopback also runs the receiver's TCP work.
Here a packet, read whole by PacketLimit (cqrs_flow.nodes.broker.access), becomes amqtt's packet
object in one call (PUBLISH and PUBACK, nearly all of the traffic, without any await), and what
one turn writes to a connection leaves in one `send`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from amqtt.adapters import BufferReader, StreamWriterAdapter
from amqtt.errors import MQTTError
from amqtt.mqtt import packet_class
from amqtt.mqtt.packet import PUBACK, PUBLISH, MQTTFixedHeader, PacketIdVariableHeader
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket, PublishPayload, PublishVariableHeader

__all__ = ["CoalescingWriter", "decode"]

FLUSH_AT = 64 * 1024  # bytes held for a connection past which they are sent at once


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


class CoalescingWriter(StreamWriterAdapter):  # type: ignore[misc]  # amqtt ships no types
    """amqtt's writer of a TCP connection, which holds what is written during one turn of the
    event loop and sends it in one write at the turn's end (or at once past FLUSH_AT bytes).
    `drain` waits as the stream's does, for what was sent before; `close` sends what is held
    first; a writer marked closed (`abort` in cqrs_flow.nodes.broker.sessions) drops it."""

    def __init__(self, stream: asyncio.StreamWriter) -> None:
        super().__init__(stream)
        self._held: list[bytes] = []
        self._size = 0
        self._flushing = False

    def write(self, data: bytes) -> None:
        if self.is_closed:
            return
        self._held.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()
        elif not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send what is held (nothing once the writer is closed or its connection lost)."""
        self._flushing = False
        held, self._held, self._size = self._held, [], 0
        if held and not self.is_closed and not self._writer.transport.is_closing():
            self._writer.write(held[0] if len(held) == 1 else b"".join(held))

    async def close(self) -> None:
        self.flush()
        await super().close()
