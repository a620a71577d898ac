"""mqtt: the largest command and packet a broker's nodes send, from the writers' payload_bytes."""

from __future__ import annotations

from cqrs_flow.transport.mqtt import PACKET_HEADROOM, command_bytes, max_packet_bytes


def test_the_limits_follow_the_largest_payload_bytes_of_the_brokers_writers(edit, parse):
    shipped = parse(edit())
    assert command_bytes(shipped, "broker") == 1024 * 1024  # the writer's default
    assert max_packet_bytes(shipped, "broker") == 1_398_104 + PACKET_HEADROOM  # 4/3 of 1 MiB
    larger = parse(edit(("    kind: writer\n", "    kind: writer\n    payload_bytes: 3000000\n")))
    assert command_bytes(larger, "broker") == 3_000_000
    assert max_packet_bytes(larger, "broker") == 4_000_000 + PACKET_HEADROOM
    assert command_bytes(larger, "no-such-broker") == 1024 * 1024  # no writers: the default
