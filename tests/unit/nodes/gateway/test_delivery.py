"""Delivery.publish: a command is published only once it is kept until a writer reports on it;
otherwise it is refused and nothing is published."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.stores.base import StoreError
from cqrs_flow.topology.problems import Problems

from .fakes import FakeMqtt


def publish(shipped, protos, outbox: Outbox, mqtt: FakeMqtt):
    plan = gateway_plan(shipped, shipped.nodes["gateway"], protos, Problems(shipped.located))
    add = plan.mutations["addContact"]
    delivery = Delivery(shipped.status_topic, mqtt, outbox, logging.getLogger())

    async def run():
        return await delivery.publish(add, add.request(), "k1")

    return asyncio.run(run()), delivery


def test_a_published_command_waits_in_the_outbox_and_the_book(shipped, shipped_protos):
    outbox, mqtt = Outbox(60.0), FakeMqtt(connected=True)
    command_id, delivery = publish(shipped, shipped_protos, outbox, mqtt)
    assert [topic for topic, _ in mqtt.published] == ["CONTACT/ADD"] and len(outbox) == 1
    assert delivery.book.get(command_id)["state"] == "QUEUED"


class FailingOutbox(Outbox):
    async def add(self, *args, **kwargs) -> None:
        raise StoreError("disk full")


@pytest.mark.parametrize(
    "outbox, connected, code, message",
    [
        (Outbox(60.0), False, "UNAVAILABLE", "the broker is unavailable; nothing was queued"),
        (Outbox(60.0, capacity=0), True, "BUSY", "0 commands are waiting for a writer"),
        (FailingOutbox(60.0), True, "INTERNAL", "the gateway cannot record commands"),
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
