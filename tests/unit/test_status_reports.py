"""The writer's status reports: batched, and every one published once the broker is back."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

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

    def subscribe(self, subscriptions) -> None:
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
        await asyncio.sleep(0.3)
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
