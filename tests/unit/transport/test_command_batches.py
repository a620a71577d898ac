"""Several commands in one MQTT message: packed and unpacked in order, told apart from any one
command, split by count and size, and a damaged batch named for what is wrong with it."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from cqrs_flow.telemetry import tracing
from cqrs_flow.transport.command_batches import MAX_COMMANDS, is_batch, messages, pack, unpack


def test_a_batch_unpacks_to_its_commands_in_order():
    commands = [b"", b"a", b"\x0a\x03Ann", bytes(range(256)) * 70]  # a length of 3 varint bytes
    batch = pack(commands)
    assert is_batch(batch)
    assert unpack(batch) == commands


def test_no_single_command_reads_as_a_batch(shipped_protos):
    """The shipped commands, filled, and the trace envelope around one: none starts with the
    batch's tag (a protobuf message starts with the tag of a field it has)."""
    contact = {"contact": {"id": "k" * 300, "name": "Ann" * 100}, "command_id": "c" * 36}
    filled = {
        "contacts.AddContactRequest": contact,
        "contacts.UpdateContactRequest": contact,
        "contacts.DeleteContactRequest": {"id": "k", "command_id": "c"},
    }
    for name, fields in filled.items():
        message = shipped_protos.message_class(name)()
        json_format.ParseDict(fields, message)
        payload = message.SerializeToString()
        assert payload and not is_batch(payload)
        assert not is_batch(tracing.wrap(payload, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"))


@pytest.mark.parametrize(
    "damaged, words",
    [
        (pack([b"abc"])[:-1], "a command of 3 bytes is cut short at byte 20"),
        (pack([b"a" * 200])[:18], "a command's length is cut short or too long at byte 18"),
        (pack([]) + b"\xff\xff\xff\xff\xff\x01", "cut short or too long at byte 22"),
    ],
)
def test_a_damaged_batch_says_what_is_wrong(damaged, words):
    with pytest.raises(ValueError, match=words):
        unpack(damaged)


def test_a_writer_that_knows_no_batches_cannot_read_one_as_a_command(shipped_protos):
    """Its first byte stops any protobuf parser: an older writer sets the batch aside (and the
    outbox publishes its commands again one by one) rather than applying an empty command."""
    batch = pack([b"\x0a\x05\x12\x03Ann"])
    with pytest.raises(DecodeError):
        shipped_protos.message_class("contacts.AddContactRequest").FromString(batch)


def test_a_lone_command_goes_as_it_is():
    assert messages([b"one"], 10) == [b"one"]


def test_commands_are_split_by_count_and_by_size_and_keep_their_order():
    commands = [b"%03d" % i for i in range(2 * MAX_COMMANDS + 1)]
    sent = messages(commands, 1 << 20)
    assert len(sent) == 3 and sent[-1] == commands[-1]  # 64, 64 and one alone, as it is
    assert [c for m in sent for c in (unpack(m) if is_batch(m) else [m])] == commands
    # 41 bytes each behind the batch's 17-byte header
    sized = messages([b"x" * 40, b"y" * 40, b"z" * 40, b"w" * 5], 100)
    assert [unpack(m) if is_batch(m) else m for m in sized] == [
        [b"x" * 40, b"y" * 40],
        [b"z" * 40, b"w" * 5],
    ]
    assert all(len(m) <= 100 for m in sized)


def test_a_command_larger_than_a_batch_goes_alone_between_the_others():
    big = b"B" * 500
    sent = messages([b"a", b"b", big, b"c"], 100)
    assert sent == [pack([b"a", b"b"]), big, b"c"]
