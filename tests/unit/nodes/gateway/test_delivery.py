"""Delivery.publish: a command is published only once it is kept until a writer reports on it;
otherwise it is refused and nothing is published."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.stores.base import StoreError
from cqrs_flow.stores.database import DiskFull
from cqrs_flow.topology.problems import Problems
from cqrs_flow.transport.command_batches import is_batch, unpack

from .fakes import FakeMqtt


def publish(shipped, protos, outbox: Outbox, mqtt: FakeMqtt, name: str = "Ann", **delivery_args):
    plan = gateway_plan(shipped, shipped.nodes["gateway"], protos, Problems(shipped.located))
    add = plan.mutations["addContact"]
    delivery = Delivery(shipped.status_topic, mqtt, outbox, logging.getLogger(), **delivery_args)

    async def run():
        command = add.request()
        command.contact.name = name
        return await delivery.publish(add, command, "k1")

    return asyncio.run(run()), delivery


def test_a_published_command_waits_in_the_outbox_and_the_book(shipped, shipped_protos):
    outbox, mqtt = Outbox(60.0), FakeMqtt(connected=True)
    command_id, delivery = publish(shipped, shipped_protos, outbox, mqtt)
    assert [topic for topic, _ in mqtt.published] == ["CONTACT/ADD"] and len(outbox) == 1
    assert delivery.book.get(command_id)["state"] == "QUEUED"


class FailingOutbox(Outbox):
    async def add(self, *args, **kwargs) -> None:
        raise StoreError("I/O error")


class DiskFullOutbox(Outbox):
    async def add(self, *args, **kwargs) -> None:
        raise DiskFull("database or disk is full")


@pytest.mark.parametrize(
    "outbox, connected, code, message",
    [
        (
            Outbox(60.0),
            False,
            "UNAVAILABLE",
            "the broker is away; nothing was queued, try again later (a gateway with `data:` "
            "queues meanwhile)",
        ),
        (Outbox(60.0, capacity=0), True, "BUSY", "the outbox is full: 0 commands are waiting"),
        (FailingOutbox(60.0), True, "INTERNAL", "the gateway cannot record commands"),
        (DiskFullOutbox(60.0), True, "UNAVAILABLE", "the gateway's disk is full"),
    ],
)
def test_a_command_that_cannot_be_kept_is_refused_and_not_published(
    shipped, shipped_protos, outbox, connected, code, message
):
    mqtt = FakeMqtt(connected=connected)
    with pytest.raises(Refused) as refused:
        publish(shipped, shipped_protos, outbox, mqtt)
    assert refused.value.code == code and message in refused.value.message
    assert mqtt.published == [] and len(outbox) == 0


def test_a_command_larger_than_the_writers_take_is_refused_and_not_published(
    shipped, shipped_protos
):
    """The embedded broker closes the connection of a packet much larger than the writers'
    payload_bytes: the gateway never sends one."""
    outbox, mqtt = Outbox(60.0), FakeMqtt(connected=True)
    with pytest.raises(Refused) as refused:
        publish(shipped, shipped_protos, outbox, mqtt, "x" * 200, command_bytes=100)
    assert refused.value.code == "PAYLOAD_TOO_LARGE" and refused.value.status == 413
    assert refused.value.message.endswith(
        "bytes; the writers take commands of at most 100 bytes (their payload_bytes); "
        "nothing was queued"
    )
    assert mqtt.published == [] and len(outbox) == 0
    publish(shipped, shipped_protos, outbox, mqtt, "x" * 10, command_bytes=100)
    assert len(mqtt.published) == 1 and len(outbox) == 1


def test_a_waiting_command_larger_than_the_writers_take_now_is_dropped(caplog):
    """Accepted when the writers took more (payload_bytes lowered since): published again, it
    would have the gateway's connection closed by the broker at every attempt."""
    outbox, mqtt = Outbox(0.0), FakeMqtt(connected=True)
    delivery = Delivery("status", mqtt, outbox, logging.getLogger("gw"), command_bytes=100)

    async def run():
        await outbox.add("big", "CONTACT/ADD", b"x" * 101, now=0.0)
        await outbox.add("small", "CONTACT/ADD", b"x" * 100, now=0.0)
        delivery.republish.set()
        task = asyncio.create_task(delivery.redeliver())
        while not mqtt.published:
            await asyncio.sleep(0.01)
        task.cancel()

    with caplog.at_level(logging.ERROR, "gw"):
        asyncio.run(run())
    assert mqtt.published == [("CONTACT/ADD", b"x" * 100)] and len(outbox) == 1
    assert "dropped command big from the outbox: 101 bytes" in caplog.text


def test_a_durable_outbox_accepts_while_the_broker_is_away_and_publishes_once_it_is_back(
    shipped, shipped_protos, tmp_path
):
    """A broker outage costs no refusal when the outbox is on disk: the command is committed
    there, answered, and published when the gateway has connected again."""

    async def run():
        outbox = await Outbox.open(tmp_path / "outbox", 60.0)
        mqtt = FakeMqtt(connected=False)
        plan = gateway_plan(
            shipped, shipped.nodes["gateway"], shipped_protos, Problems(shipped.located)
        )
        add = plan.mutations["addContact"]
        delivery = Delivery(shipped.status_topic, mqtt, outbox, logging.getLogger())
        delivery.connects = 1  # it had connected before the broker went away
        command = add.request()
        command.contact.name = "Away"
        command_id = await delivery.publish(add, command, "k1")
        assert mqtt.published == [] and len(outbox) == 1
        assert delivery.book.get(command_id)["state"] == "QUEUED"
        mqtt.is_connected = True
        delivery.on_connect(mqtt)
        redeliver = asyncio.ensure_future(delivery.redeliver())
        for _ in range(100):
            if any(topic == "CONTACT/ADD" for topic, _ in mqtt.published):
                break
            await asyncio.sleep(0.01)
        redeliver.cancel()
        await outbox.close()
        return mqtt.published

    published = asyncio.run(run())
    assert [topic for topic, _ in published] == ["CONTACT/ADD"]


def _gateway(shipped, shipped_protos, mqtt: FakeMqtt, **delivery_args):
    plan = gateway_plan(
        shipped, shipped.nodes["gateway"], shipped_protos, Problems(shipped.located)
    )
    delivery = Delivery(
        shipped.status_topic, mqtt, Outbox(60.0), logging.getLogger(), **delivery_args
    )
    return plan.mutations["addContact"], delivery


def _command(add, name: str):
    command = add.request()
    command.contact.name = name
    return command


def test_commands_accepted_in_one_turn_go_in_one_message_in_order(shipped, shipped_protos):
    mqtt = FakeMqtt(connected=True)
    add, delivery = _gateway(shipped, shipped_protos, mqtt)

    async def run():
        names = [f"n{i}" for i in range(5)]
        ids = await asyncio.gather(
            *(delivery.publish(add, _command(add, n), f"k{i}") for i, n in enumerate(names))
        )
        return ids

    ids = asyncio.run(run())
    assert len(mqtt.published) == 1
    topic, payload = mqtt.published[0]
    assert topic == "CONTACT/ADD" and is_batch(payload)
    commands = [add.request.FromString(c) for c in unpack(payload)]
    assert [(c.contact.name, c.command_id) for c in commands] == [
        (f"n{i}", ids[i]) for i in range(5)
    ]


def test_a_lone_command_is_its_own_message_as_before(shipped, shipped_protos):
    mqtt = FakeMqtt(connected=True)
    add, delivery = _gateway(shipped, shipped_protos, mqtt)

    async def run():
        first = await delivery.publish(add, _command(add, "one"), "k1")
        await asyncio.sleep(0)
        second = await delivery.publish(add, _command(add, "two"), "k2")  # a later turn
        await asyncio.sleep(0)
        return first, second

    ids = asyncio.run(run())
    assert [add.request.FromString(p).command_id for _, p in mqtt.published] == list(ids)


def test_a_batch_is_no_larger_than_the_writers_take(shipped, shipped_protos):
    mqtt = FakeMqtt(connected=True)
    add, delivery = _gateway(shipped, shipped_protos, mqtt, batch_bytes=300)

    async def run():
        await asyncio.gather(
            *(delivery.publish(add, _command(add, "x" * 50), f"k{i}") for i in range(10))
        )
        await asyncio.sleep(0)

    asyncio.run(run())
    assert 3 <= len(mqtt.published) <= 5 and all(len(p) <= 300 for _, p in mqtt.published)
    assert sum(len(unpack(p)) if is_batch(p) else 1 for _, p in mqtt.published) == 10


def test_commands_of_a_turn_the_broker_went_away_in_are_published_when_it_is_back(
    shipped, shipped_protos
):
    mqtt = FakeMqtt(connected=True)
    add, delivery = _gateway(shipped, shipped_protos, mqtt)

    async def run():
        delivery.connects = 1
        accepted = [
            asyncio.ensure_future(delivery.publish(add, _command(add, f"n{i}"), f"k{i}"))
            for i in range(3)
        ]
        # the broker goes away after the three are accepted, before the end of their turn
        asyncio.get_running_loop().call_soon(setattr, mqtt, "is_connected", False)
        ids = await asyncio.gather(*accepted)
        assert mqtt.published == [] and len(delivery.outbox) == 3
        mqtt.is_connected = True
        delivery.on_connect(mqtt)
        redeliver = asyncio.ensure_future(delivery.redeliver())
        while len(mqtt.published) < 3:
            await asyncio.sleep(0.01)
        redeliver.cancel()
        return ids

    ids = asyncio.run(run())
    assert sorted(add.request.FromString(p).command_id for _, p in mqtt.published) == sorted(ids)


def test_commands_on_several_topics_keep_the_order_they_were_accepted_in(shipped, shipped_protos):
    """An update accepted before an add of the same entity in one turn, on two topics: batching by
    topic would send the add's batch first; runs of one topic keep the order."""
    mqtt = FakeMqtt(connected=True)
    plan = gateway_plan(
        shipped, shipped.nodes["gateway"], shipped_protos, Problems(shipped.located)
    )
    add, update = plan.mutations["addContact"], plan.mutations["updateContact"]
    delivery = Delivery(shipped.status_topic, mqtt, Outbox(60.0), logging.getLogger())
    steps = [(update, "x"), (add, "k"), (update, "k"), (add, "j"), (add, "i")]

    async def run():
        for mutation, key in steps:  # one turn: nothing here yields to the loop
            command = mutation.request()
            command.contact.id, command.contact.name = key, key
            await delivery.publish(mutation, command, key)
        await asyncio.sleep(0)

    asyncio.run(run())
    sent = []
    for topic, payload in mqtt.published:
        request = add.request if topic == add.topic else update.request
        commands = unpack(payload) if is_batch(payload) else [payload]
        sent += [(topic, request.FromString(c).contact.id) for c in commands]
    assert sent == [(m.topic, key) for m, key in steps]
    assert [len(unpack(p)) if is_batch(p) else 1 for _, p in mqtt.published] == [1, 1, 1, 2]


def test_a_command_without_an_id_goes_after_those_accepted_before_it(shipped, shipped_protos):
    """A command the outbox does not keep (no command id) is published at once: the turn's
    commands accepted before it go first."""
    mqtt = FakeMqtt(connected=True)
    add, delivery = _gateway(shipped, shipped_protos, mqtt)
    unkept = dataclasses.replace(add, command_id_path=None)

    async def run():
        await delivery.publish(add, _command(add, "kept"), "k1")
        assert await delivery.publish(unkept, _command(add, "unkept"), "k2") is None
        await asyncio.sleep(0)

    asyncio.run(run())
    assert [add.request.FromString(p).contact.name for _, p in mqtt.published] == ["kept", "unkept"]
