"""The change feed on its own, against a stand-in change log (fake_log.py): it starts with its
first subscriber and stops a while after its last; a log that restarted behind it, or one that
cannot be followed again in time, ends its subscriptions with an error saying so."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cqrs_flow.contracts.documents import EntityView
from cqrs_flow.nodes.gateway.feed import ChangeFeed, ChangesClient, LiveChange, Subscriber
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.security.tokens import Credentials
from cqrs_flow.topology.model import Limits

from .fake_log import FakeLog

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def protos() -> Any:
    return compile_protos([Path("examples/library/proto/library.proto")], ROOT)


def every(change: LiveChange) -> bool:
    return change.document is not None


def run(protos: Any, scenario: Any, **options: Any) -> Any:
    async def main() -> Any:
        log = await FakeLog(protos).start()
        changes = ChangesClient(protos, log.target, Credentials("gateway", "token"))
        books = EntityView("Book", protos.message_class("library.Book"), "id", {"id": "String"})
        feed = ChangeFeed(changes, {"Book": books}, ["Book"], Limits(), **options)
        try:
            return await scenario(feed, log, protos.message_class("library.Book"))
        finally:
            await feed.close()
            await changes.close()
            await log.stop()

    return asyncio.run(main())


async def take(changes: Any, count: int) -> list[Any]:
    return [await asyncio.wait_for(changes.__anext__(), 5) for _ in range(count)]


def test_the_feed_runs_while_it_has_subscribers_and_a_while_after(protos):
    async def scenario(feed: ChangeFeed, log: FakeLog, book: Any) -> list[bool]:
        running = [feed.running]
        changes = feed.follow(Subscriber("Book", None, every, 0, 10))
        log.write("Book", "b", book(id="b", title="one"))
        (change, shown), *_ = await take(changes, 1)
        assert (change.op, change.document["title"], shown) == ("INSERT", "one", True)
        running.append(feed.running)
        await changes.aclose()
        running.append(feed.running)  # lingers
        await asyncio.sleep(0.3)
        running.append(feed.running)
        return running

    assert run(protos, scenario, linger=0.1) == [False, True, True, False]


def test_a_log_that_restarted_behind_the_feed_ends_its_subscriptions(protos):
    async def scenario(feed: ChangeFeed, log: FakeLog, book: Any) -> Refused:
        for i in range(3):
            log.write("Book", "b", book(id="b", year=i))
        changes = feed.follow(Subscriber("Book", None, every, 0, 10))
        await take(changes, 3)
        log.log.clear()  # the store came back without its log (and its documents)
        await log.drop_follows()
        with pytest.raises(Refused) as ended:
            await take(changes, 1)
        return ended.value

    ended = run(protos, scenario)
    assert ended.code == "UNAVAILABLE"
    assert "the change log restarted: its last position is 0" in ended.message
    assert "subscribe again without after" in ended.message


def test_a_log_that_cannot_be_followed_again_in_time_ends_its_subscriptions(protos):
    async def scenario(feed: ChangeFeed, log: FakeLog, book: Any) -> Refused:
        log.write("Book", "b", book(id="b"))
        changes = feed.follow(Subscriber("Book", None, every, 0, 10))
        await take(changes, 1)
        await log.stop()  # the reader is gone for good
        with pytest.raises(Refused) as ended:
            await take(changes, 1)
        return ended.value

    ended = run(protos, scenario, reconnect_within=0.3)
    assert ended.code == "UNAVAILABLE"
    assert ended.message == (
        "the change log cannot be followed: the reader is unavailable; subscribe again with "
        'after: "1" to go on from there'
    )


def test_a_gateway_that_stops_ends_its_subscriptions(protos):
    async def scenario(feed: ChangeFeed, log: FakeLog, book: Any) -> Refused:
        changes = feed.follow(Subscriber("Book", "b", every, 0, 10))
        waiting = asyncio.ensure_future(take(changes, 1))
        await asyncio.sleep(0.1)
        await feed.close()
        with pytest.raises(Refused) as ended:
            await waiting
        return ended.value

    assert run(protos, scenario).code == "UNAVAILABLE"


def test_a_subscriber_drops_what_is_at_or_before_its_position(protos):
    change = LiveChange(5, "Book", "b", "UPDATE", {"id": "b"}, "", "")
    subscriber = Subscriber("Book", "b", every, 5, 10)
    assert subscriber.take(change) is None
    assert subscriber.take(dataclasses.replace(change, position=6)) is True
    assert subscriber.take(dataclasses.replace(change, position=6)) is None
