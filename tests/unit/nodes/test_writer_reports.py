"""The status topic: the writer's reports (batched, and every one published once the broker is
back) and its online message, on which the gateway publishes again what it may have lost."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

from cqrs_flow.contracts.status import online_message, writer_online
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.writer import WriterService

PLAN = SimpleNamespace(name="add_contact")


class FlakyClient:
    """A stand-in for the writer's gmqtt client: while the broker is away it is not connected,
    and a publish can be made to fail (a connection that breaks as the message goes out)."""

    def __init__(self, connected: bool = True, failures: int = 0) -> None:
        self.connected = connected
        self.failures = failures  # publishes that raise before they go through
        self.published: list[tuple[str, bytes]] = []

    @property
    def is_connected(self) -> bool:
        return self.connected

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        if not self.connected or self.failures:
            self.failures = max(0, self.failures - 1)
            raise ConnectionResetError("the broker went away")
        self.published.append((topic, payload))

    def subscribe(self, subscriptions, qos: int = 0) -> None:
        pass

    def reported(self) -> list[str]:
        return [r["id"] for _, payload in self.published for r in json.loads(payload)]


def reporting_writer(shipped, client: FlakyClient) -> WriterService:
    """A writer with just what reporting needs (what `start` sets up): its client and no reports."""
    writer = WriterService(shipped, shipped.nodes["writer"], None, None)
    writer.mqtt, writer.statuses, writer.subscriptions = client, [], []
    return writer


def test_reports_made_while_the_broker_was_away_are_published_once_it_is_back(shipped):
    async def scenario():
        client = FlakyClient(connected=False)
        writer = reporting_writer(shipped, client)
        for i in range(6):
            writer._report(PLAN, f"c{i}", f"k{i}", "APPLIED" if i % 2 else "FAILED", "")
        await asyncio.sleep(0.3)
        assert client.published == []
        client.connected = True  # the broker is back; gmqtt calls on_connect
        writer._on_connect(client, 0, 0, None)
        await asyncio.sleep(0.1)  # at once, not at the next retry
        assert client.reported() == [f"c{i}" for i in range(6)]
        assert {topic for topic, _ in client.published} == {shipped.status_topic}

    asyncio.run(scenario())


def test_reports_whose_publish_failed_are_published_on_a_later_try(shipped):
    async def scenario():
        client = FlakyClient(connected=True, failures=2)
        writer = reporting_writer(shipped, client)
        for i in range(6):
            writer._report(PLAN, f"c{i}", f"k{i}", "APPLIED", "")
        await asyncio.sleep(2.0)  # no reconnect: the writer tries again by itself
        writer._report(PLAN, "c6", "k6", "APPLIED", "")
        await asyncio.sleep(0.3)
        assert sorted(client.reported()) == [f"c{i}" for i in range(7)]  # each once

    asyncio.run(scenario())


def test_the_writer_says_it_is_online_each_time_it_has_subscribed(shipped):
    client = FlakyClient()
    writer = reporting_writer(shipped, client)
    writer.plans, writer.instance = {"CONTACT/ADD": PLAN, "CONTACT/DELETE": PLAN}, "writer.1"
    writer.subscribed = asyncio.Event()
    for _ in range(2):  # connected, then reconnected
        writer._on_subscribe(client, 1, [1], None)
    assert writer.subscribed.is_set()
    assert [(topic, writer_online(payload)) for topic, payload in client.published] == [
        (shipped.status_topic, ("writer.1", ["CONTACT/ADD", "CONTACT/DELETE"]))
    ] * 2


def test_the_gateway_publishes_at_once_what_a_writer_that_is_online_again_may_have_lost(shipped):
    async def scenario():
        now = asyncio.get_running_loop().time
        gateway = Delivery(shipped.status_topic, FlakyClient(), Outbox(60.0), logging.getLogger())
        await gateway.outbox.add("a", "CONTACT/ADD", b"1", now())
        await gateway.outbox.add("b", "CONTACT/UPDATE", b"2", now())
        status = shipped.status_topic
        for payload in (b"\xff", b'{"online": 5}', b"[]"):  # set aside, nothing else happens
            gateway.on_status(None, status, payload, 1, None)
        gateway.on_status(None, "elsewhere", online_message("writer", ["CONTACT/ADD"]), 1, None)
        assert not gateway.republish.is_set() and gateway.outbox.due(now()) == []
        gateway.on_status(None, status, online_message("writer", ["CONTACT/ADD"]), 1, None)
        assert gateway.republish.is_set()
        assert gateway.outbox.due(now()) == [("a", "CONTACT/ADD", b"1")]

    asyncio.run(scenario())


def test_the_gateway_publishes_at_once_what_a_broker_it_reconnected_to_may_have_lost(shipped):
    async def scenario():
        now = asyncio.get_running_loop().time
        gateway = Delivery(shipped.status_topic, FlakyClient(), Outbox(60.0), logging.getLogger())
        await gateway.outbox.add("a", "CONTACT/ADD", b"1", now())
        gateway.on_connect(FlakyClient(), 0, 0, None)  # the first connect: nothing was lost
        assert gateway.outbox.due(now()) == []
        gateway.on_connect(FlakyClient(), 0, 0, None)
        assert gateway.republish.is_set() and gateway.outbox.due(now()) == [
            ("a", "CONTACT/ADD", b"1")
        ]

    asyncio.run(scenario())
