"""Several commands of one topic in one MQTT message.

Every MQTT message costs the broker, the gateway and the writer a fixed amount of work (a
packet in, an acknowledgement, a packet out per subscriber, a task or two in each); under load
that was most of what the embedded broker did. A gateway that accepts several commands on one
topic one after the other in the same turn of its event loop publishes them as one message, a
batch (in the order it accepted them, across topics too); a writer takes each
command of a batch as it takes a command of its own message (checked, set aside or applied in its
entity's lane) and acknowledges the message once every command of it is done.

A batch starts with HEADER: the byte 0x07 (the tag of field number 0 with wire type 7, which
no protobuf message has and every protobuf parser refuses), the text CQRS-FLOW-BATCH and the
format's version, 1. Then come its commands, in the order they were accepted, each as its length
(a protobuf varint) and its encoded bytes. A payload that starts with HEADER is a batch; any
other is one command, as it always was: commands published one to a message (by clients of the
broker, by a gateway's outbox publishing again, by a gateway with traces on, each command with
its own trace context) are taken as before.

A writer older than batches cannot decode a batch as a command (the first byte stops any
protobuf parser) and sets it aside; the gateway's outbox publishes each of its commands again,
one to a message, after `redeliver_after`: nothing is lost, and nothing is read as a command it
is not.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["HEADER", "MAX_COMMANDS", "is_batch", "messages", "pack", "unpack"]

HEADER = b"\x07CQRS-FLOW-BATCH\x01"
MAX_COMMANDS = 64  # commands in one message at most


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def packed_size(command: bytes) -> int:
    """What one command adds to a batch: its length and its bytes."""
    return len(_varint(len(command))) + len(command)


def pack(commands: Iterable[bytes]) -> bytes:
    """One message holding `commands` (encoded), in order."""
    return HEADER + b"".join(_varint(len(command)) + command for command in commands)


def messages(commands: list[bytes], limit: int) -> list[bytes]:
    """`commands` (encoded, each at most `limit` bytes) as few messages as hold them in order:
    batches of at most MAX_COMMANDS and `limit` bytes, and a command that goes alone as it is."""
    if len(commands) == 1:
        return commands
    out: list[bytes] = []
    group: list[bytes] = []
    size = len(HEADER)
    for command in commands:
        added = packed_size(command)
        if group and (len(group) == MAX_COMMANDS or size + added > limit):
            out.append(group[0] if len(group) == 1 else pack(group))
            group, size = [], len(HEADER)
        group.append(command)
        size += added
    out.append(group[0] if len(group) == 1 else pack(group))
    return out


def is_batch(payload: bytes) -> bool:
    return payload.startswith(HEADER)


def unpack(payload: bytes) -> list[bytes]:
    """The commands of a batch (a payload starting with HEADER), in order; ValueError (what is
    wrong) if one is cut short."""
    commands = []
    at, end = len(HEADER), len(payload)
    while at < end:
        size = shift = 0
        while True:
            if at >= end or shift > 28:
                raise ValueError(f"a command's length is cut short or too long at byte {at}")
            byte = payload[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if at + size > end:
            raise ValueError(f"a command of {size} bytes is cut short at byte {end}")
        commands.append(payload[at : at + size])
        at += size
    return commands
