"""A message of several commands (transport/command_batches.py): each command is taken as one
of its own would be (applied in its entity's lane, in order; set aside alone if it is bad), and
the message is acknowledged once every one is done. A damaged batch is set aside whole."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections import Counter

from google.protobuf import json_format

from cqrs_flow.contracts.writer import writer_plan
from cqrs_flow.nodes.writer import AppliedSummary, EntityLanes, WriterService
from cqrs_flow.telemetry import Children
from cqrs_flow.topology.problems import Problems
from cqrs_flow.transport.command_batches import pack

from .test_writer_reports import FlakyClient

TOPIC = "CONTACT/ADD"


class SlowStore:
    """The writer's call batcher: each call takes a while, and what was applied is kept."""

    def __init__(self, log: list) -> None:
        self.log = log

    async def call(self, rpc: str, command) -> None:
        self.log.append(("start", command.contact.id, command.contact.name))
        await asyncio.sleep(0.05 if command.contact.name.endswith("slow") else 0.0)
        self.log.append(("end", command.contact.id, command.contact.name))


def writer(shipped, protos, log: list, client: FlakyClient) -> WriterService:
    """A writer with what taking commands needs (what `setup` makes), its store a SlowStore."""
    node = dataclasses.replace(shipped.nodes["writer"], delay=0.0, dead_letter="dead-letters")
    service = WriterService(shipped, node, protos, None)
    service.plans = writer_plan(shipped, node, protos, Problems(shipped.located))
    service.lanes, service.statuses, service.plugins = EntityLanes(), [], []
    service.in_flight, service.batches = asyncio.Semaphore(32), SlowStore(log)
    service.set_aside = Counter()
    service._received = Children(service.metrics.received)
    service._applied = Children(service.metrics.applied)
    service.summary, service.mqtt = AppliedSummary(service.log), client
    return service


def command(protos, key: str, name: str, command_id: str) -> bytes:
    message = protos.message_class("contacts.AddContactRequest")()
    json_format.ParseDict({"contact": {"id": key, "name": name}, "command_id": command_id}, message)
    return message.SerializeToString()


def test_a_batch_applies_each_command_in_order_per_key_and_acks_when_all_are_done(
    shipped, shipped_protos
):
    async def scenario():
        log: list = []
        client = FlakyClient()
        service = writer(shipped, shipped_protos, log, client)
        batch = pack(
            [
                command(shipped_protos, "a", "a1 slow", "c1"),
                command(shipped_protos, "b", "b1", "c2"),
                command(shipped_protos, "a", "a2", "c3"),
            ]
        )
        ack = await service._on_message(None, TOPIC, batch, 1, None)
        reported = client.reported() + [s["id"] for s in service.statuses]
        return ack, log, service, reported

    ack, log, service, reported = asyncio.run(scenario())
    assert ack == 0  # after all three: every one is in the log by now
    assert [entry for entry in log if entry[1] == "a"] == [
        ("start", "a", "a1 slow"),
        ("end", "a", "a1 slow"),
        ("start", "a", "a2"),
        ("end", "a", "a2"),
    ]
    assert log.index(("end", "b", "b1")) < log.index(("end", "a", "a1 slow"))  # side by side
    assert sorted(reported) == ["c1", "c2", "c3"]  # each reported APPLIED once
    assert service.metrics.received.labels(TOPIC)._value.get() == 3


def test_a_bad_command_in_a_batch_is_set_aside_alone(shipped, shipped_protos):
    async def scenario():
        log: list = []
        client = FlakyClient()
        service = writer(shipped, shipped_protos, log, client)
        bad = b"\x0a\xff"  # a length running past the end
        batch = pack([command(shipped_protos, "a", "fine", "c1"), bad])
        await service._on_message(None, TOPIC, batch, 1, None)
        return log, client, service

    log, client, service = asyncio.run(scenario())
    assert log == [("start", "a", "fine"), ("end", "a", "fine")]
    assert service.set_aside == {"undecodable": 1}
    letters = [json.loads(p) for topic, p in client.published if topic == "dead-letters"]
    assert [base64.b64decode(letter["payload"]) for letter in letters] == [b"\x0a\xff"]


def test_a_damaged_batch_is_set_aside_whole_and_nothing_of_it_applied(shipped, shipped_protos):
    async def scenario():
        log: list = []
        client = FlakyClient()
        service = writer(shipped, shipped_protos, log, client)
        batch = pack(
            [command(shipped_protos, "a", "x", "c1"), command(shipped_protos, "b", "y", "c2")]
        )
        await service._on_message(None, TOPIC, batch[:-3], 1, None)
        return log, client, service

    log, client, service = asyncio.run(scenario())
    assert log == [] and service.set_aside == {"undecodable": 1}
    letters = [json.loads(p) for topic, p in client.published if topic == "dead-letters"]
    assert len(letters) == 1 and "not a valid batch of commands" in letters[0]["reason"]
