"""Live subscriptions of the library gateway (bookChanged, booksChanged) against a stand-in
reader serving the document service and the change log (fake_log.py), through the gateway's
real engine and feed: the first message is the state, then every change after exactly its log
position, in order; a client resumes after a position; a filtered list tells what leaves it;
clear errors for what cannot be served."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import pytest

from cqrs_flow.nodes.gateway.refusals import Refused

from .fake_log import FakeLog
from .live_gateway import LIST, ONE, Gateway, Stream, book, code_of, run

# -- one document ---------------------------------------------------------------------------------


def test_a_document_subscription_starts_with_the_document_then_each_change_in_order(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        log.write("Book", "b1", book(library, "b1", "Mort"))
        log.write("Book", "b2", book(library, "b2", "Other"))
        stream = gateway.subscribe(ONE, id="b1")
        assert await stream.next() == {
            "op": "CURRENT",
            "position": "2",
            "key": "b1",
            "matches": True,
            "command_id": None,
            "document": {"id": "b1", "title": "Mort", "year": 2000, "genre": "FICTION"},
        }
        log.write("Book", "b1", book(library, "b1", "Mort", 1987), command_id="c1")
        log.write("Book", "b2", book(library, "b2", "Not this one"))
        log.write("Book", "b1", book(library, "b1", "Mort (2nd ed.)", 1987), command_id="c2")
        log.write("Book", "b1", None, command_id="c3")
        updated, renamed, deleted = await stream.take(3)
        assert (updated["op"], updated["position"], updated["command_id"]) == ("UPDATE", "3", "c1")
        assert updated["document"]["year"] == 1987
        assert (renamed["position"], renamed["document"]["title"]) == ("5", "Mort (2nd ed.)")
        assert deleted == {
            "op": "DELETE",
            "position": "6",
            "key": "b1",
            "matches": False,
            "command_id": "c3",
            "document": None,
        }
        log.write("Book", "b1", book(library, "b1", "Back"))
        assert (await stream.next())["op"] == "INSERT"
        assert await stream.nothing()

    run(library, scenario)


def test_a_document_that_is_not_there_starts_as_null(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        stream = gateway.subscribe(ONE, id="later")
        first = await stream.next()
        assert (first["op"], first["position"], first["document"], first["matches"]) == (
            "CURRENT",
            "0",
            None,
            False,
        )
        log.write("Book", "later", book(library, "later", "Now"))
        assert (await stream.next())["document"]["title"] == "Now"

    run(library, scenario)


def test_no_change_is_missed_or_repeated_between_the_state_and_the_feed(library):
    """Subscribers join while a book changes as fast as the loop lets it; each sees the state
    it started from and then every later change exactly once, in order."""

    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        gateway.feed._recent_size = 8
        log.write("Book", "b", book(library, "b", year=0))
        last = 300
        streams: list[Stream] = []

        async def write() -> None:
            for year in range(1, last + 1):
                log.write("Book", "b", book(library, "b", year=year))
                for other in range(random.randrange(6)):  # bursts: the feed passes joiners
                    log.write("Book", f"other{other}", book(library, "other", year=year))
                await asyncio.sleep(0 if random.random() < 0.8 else 0.002)

        async def join() -> None:
            for _ in range(12):
                streams.append(gateway.subscribe(ONE, id="b"))
                await asyncio.sleep(random.random() * 0.02)

        random.seed(7)
        await asyncio.gather(write(), join())
        for stream in streams:
            first = await stream.next()
            assert first["op"] == "CURRENT"
            years = [first["document"]["year"]]
            positions = [int(first["position"])]
            while years[-1] < last:
                message = await stream.next()
                years.append(message["document"]["year"])
                positions.append(int(message["position"]))
            assert years == list(range(years[0], last + 1))
            assert positions == sorted(set(positions))
        assert sum(1 for _, _, wait in log.follows if wait) == 1  # one follow for them all

    run(library, scenario)


def test_a_subscriber_behind_the_feeds_recent_changes_catches_up_from_the_log(library):
    """The feed keeps 8 changes; a client resuming 40 changes back reads them from the log with
    a follow of its own that ends there, then joins the feed, while changes go on coming: each
    change once, in order, none missed at the seam."""

    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        gateway.feed._recent_size = 8
        log.write("Book", "b", book(library, "b", year=0))
        live = gateway.subscribe(ONE, id="b")
        await live.next()
        for year in range(1, 41):
            log.write("Book", "b", book(library, "b", year=year))
            log.write("Book", "x", book(library, "x", year=year))
        await live.take(40)
        assert gateway.feed.floor > 2

        async def write_on() -> None:
            for year in range(41, 101):
                log.write("Book", "b", book(library, "b", year=year))
                await asyncio.sleep(0)

        late = gateway.subscribe(ONE, id="b", after="1")  # right after year 0
        await write_on()
        years = [(await late.next())["document"]["year"] for _ in range(100)]
        assert years == list(range(1, 101))
        assert await late.nothing(0.1)
        # One live follow; the late one's own, from its position (and again from where that
        # one ended if the feed had moved on by more than it keeps meanwhile).
        assert [(after, wait) for after, _, wait in log.follows][:2] == [(1, True), (1, False)]
        assert [wait for _, _, wait in log.follows].count(True) == 1

    run(library, scenario)


def test_one_follow_of_the_log_serves_every_subscriber(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        log.write("Book", "b", book(library, "b"))
        streams = [gateway.subscribe(ONE, id="b") for _ in range(50)]
        for stream in streams:
            assert (await stream.next())["op"] == "CURRENT"
        log.write("Book", "b", book(library, "b", year=1))
        for stream in streams:
            assert (await stream.next())["document"]["year"] == 1
        assert gateway.feed.subscribers == 50
        assert log.follows == [(1, ("Book",), True)]

    run(library, scenario)


# -- a filtered list ------------------------------------------------------------------------------


def test_a_list_starts_with_the_page_then_tells_what_joins_and_leaves_it(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        for key, genre in (
            ("s1", "SCIENCE"),
            ("f1", "FICTION"),
            ("s2", "SCIENCE"),
            ("s3", "SCIENCE"),
        ):
            log.write("Book", key, book(library, key, key, genre=genre))
        stream = gateway.subscribe(LIST, where={"genre": {"eq": "SCIENCE"}}, first=2)
        first = await stream.next()
        assert (first["op"], first["position"], first["has_more"], first["matches"]) == (
            "CURRENT",
            "4",
            True,
            True,
        )
        assert first["documents"] == [{"id": "s1", "title": "s1"}, {"id": "s2", "title": "s2"}]
        log.write("Book", "s4", book(library, "s4", "new", genre="SCIENCE"))  # joins
        log.write("Book", "f2", book(library, "f2", genre="FICTION"))  # not its concern
        log.write("Book", "s1", book(library, "s1", genre="HISTORY"))  # leaves
        log.write("Book", "f1", None)  # never shown: not told
        log.write("Book", "s2", None)  # shown, deleted
        joined, left, deleted = await stream.take(3)
        assert (joined["op"], joined["key"], joined["matches"]) == ("INSERT", "s4", True)
        assert joined["document"] == {"id": "s4", "title": "new"}
        assert (left["op"], left["key"], left["matches"], left["document"]) == (
            "UPDATE",
            "s1",
            False,
            None,
        )
        assert (deleted["op"], deleted["key"], deleted["matches"]) == ("DELETE", "s2", False)
        assert [joined["position"], left["position"], deleted["position"]] == ["5", "7", "9"]
        assert await stream.nothing()

    run(library, scenario)


def test_a_filter_on_a_field_that_is_not_indexed_or_means_nothing_is_refused(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> list[Any]:
        wrong = gateway.subscribe(LIST, where={"year": {"in": []}})
        unknown = gateway.subscribe(
            LIST.replace("$where: BookWhere", "$where: BookWhere"), where={"rating": {"eq": 1.5}}
        )
        too_many = gateway.subscribe(LIST, first=1001)
        return [await wrong.next(), await unknown.next(), await too_many.next()]

    wrong, unknown, too_many = run(library, scenario)
    assert code_of(wrong) == "INVALID_ARGUMENT" and "give at least one value" in str(wrong)
    assert "rating" in json.dumps(unknown["errors"])  # the schema refuses it before it runs
    assert code_of(too_many) == "LIMIT_EXCEEDED"


# -- resuming -------------------------------------------------------------------------------------


def test_a_client_resumes_after_the_last_position_it_saw(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        log.write("Book", "b", book(library, "b", year=0))
        stream = gateway.subscribe(ONE, id="b")
        await stream.next()
        log.write("Book", "b", book(library, "b", year=1))
        seen = await stream.next()
        await stream.close()
        for year in (2, 3):
            log.write("Book", "b", book(library, "b", year=year))
        again = gateway.subscribe(ONE, id="b", after=seen["position"])
        resumed = await again.take(2)
        assert [(m["op"], m["document"]["year"]) for m in resumed] == [("UPDATE", 2), ("UPDATE", 3)]
        assert await again.nothing()

    run(library, scenario)


def test_a_resumed_list_tells_every_change_that_does_not_match(library):
    """The gateway cannot know which documents the client holds (and this log does not say what
    a document was before a change): each change that leaves a document out of the filter is
    told, whether the client had it or not; an insert that does not match never was in it."""

    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        log.write("Book", "s", book(library, "s", genre="SCIENCE"))
        log.write("Book", "s", book(library, "s", genre="HISTORY"))
        log.write("Book", "f", book(library, "f", genre="FICTION"))
        log.write("Book", "f", book(library, "f", "renamed", genre="FICTION"))
        stream = gateway.subscribe(LIST, where={"genre": {"eq": "SCIENCE"}}, after="1")
        left, other = await stream.take(2)
        assert (left["key"], left["position"], left["matches"]) == ("s", "2", False)
        assert (other["key"], other["position"], other["matches"]) == ("f", "4", False)

    run(library, scenario)


@pytest.mark.parametrize(
    "after, code, words",
    [
        ("x1", "INVALID_ARGUMENT", "argument 'after' is the position of a message"),
        ("99", "OUT_OF_RANGE", "beyond the change log's last one (3)"),
        (
            "1",
            "OUT_OF_RANGE",
            "the changes after position 1 are no longer kept (the oldest kept is 3)",
        ),
    ],
)
def test_a_position_the_log_does_not_have_is_refused_clearly(library, after, code, words):
    async def scenario(gateway: Gateway, log: FakeLog) -> Any:
        for year in range(3):
            log.write("Book", "b", book(library, "b", year=year))
        log.first_kept = 3
        return await gateway.subscribe(ONE, id="b", after=after).next()

    ended = run(library, scenario)
    assert code_of(ended) == code and words in ended.message


# -- what cannot be served ------------------------------------------------------------------------


def test_a_slow_consumer_is_closed_with_where_to_resume_and_holds_no_one_back(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        log.write("Book", "b", book(library, "b", year=0))
        fast = gateway.subscribe(ONE, id="b")
        slow = gateway.engine.subscribe(ONE, variables={"id": "b"}, context={})
        assert (await slow.__anext__())["data"]["bookChanged"]["position"] == "1"
        waiting = asyncio.ensure_future(slow.__anext__())  # waits for the next change
        log.write("Book", "b", book(library, "b", year=1))
        assert (await waiting)["data"]["bookChanged"]["position"] == "2"
        for year in range(2, 12):  # the slow one reads nothing meanwhile; it has room for 5
            log.write("Book", "b", book(library, "b", year=year))
            await asyncio.sleep(0.01)
        years = [(await fast.next())["document"]["year"] for _ in range(12)]
        assert years == list(range(12))
        with pytest.raises(Refused) as ended:
            while True:
                await slow.__anext__()
        assert ended.value.code == "SLOW_CONSUMER"
        assert "fell more than 5 changes behind (limits.live_queue)" in ended.value.message
        assert 'subscribe again with after: "2" to go on from there' in ended.value.message
        log.write("Book", "b", book(library, "b", year=12))
        assert (await fast.next())["document"]["year"] == 12

    run(library, scenario, live_queue=5)


def test_a_store_without_a_change_log_is_refused_clearly_and_queries_still_run(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> Any:
        log.write("Book", "b", book(library, "b", "Mort"))
        ended = await gateway.subscribe(ONE, id="b").take(2)
        answer = await gateway.query('{ book(id: "b") { title } }')
        return ended, answer

    (first, ended), answer = run(library, scenario, changes=False)
    assert first["op"] == "CURRENT"
    assert code_of(ended) == "NO_CHANGE_LOG"
    assert "keeps no change log" in ended.message and "after" not in ended.message
    assert answer == {"data": {"book": {"title": "Mort"}}}


def test_more_subscriptions_than_limits_live_subscriptions_are_refused_busy(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> Any:
        log.write("Book", "b", book(library, "b"))
        first, second = gateway.subscribe(ONE, id="b"), gateway.subscribe(ONE, id="b")
        await first.next()
        await second.next()
        refused = await gateway.subscribe(ONE, id="b").next()  # before any state is read
        await first.close()
        await asyncio.sleep(0.05)
        again = await gateway.subscribe(ONE, id="b").take(1)
        return refused, again

    refused, (again,) = run(library, scenario, live_subscriptions=2)
    assert code_of(refused) == "BUSY" and "limits.live_subscriptions" in refused.message
    assert again["op"] == "CURRENT"


def test_a_lost_follow_is_followed_again_from_where_it_was(library):
    async def scenario(gateway: Gateway, log: FakeLog) -> None:
        log.write("Book", "b", book(library, "b", year=0))
        stream = gateway.subscribe(ONE, id="b")
        await stream.next()
        log.write("Book", "b", book(library, "b", year=1))
        assert (await stream.next())["document"]["year"] == 1
        await log.drop_follows()  # the reader restarts
        for year in (2, 3):
            log.write("Book", "b", book(library, "b", year=year))
        assert [(await stream.next())["document"]["year"] for _ in range(2)] == [2, 3]
        assert [after for after, _, wait in log.follows if wait] == [1, 2]

    run(library, scenario)


# -- over the wire --------------------------------------------------------------------------------


def test_the_gql_client_follows_a_book_over_graphql_transport_ws(library):
    """The Python gql client, as users run it, over the gateway's WebSocket endpoint: the first
    message, a change, and a refusal as a GraphQL error with its code."""
    gql = pytest.importorskip("gql")
    from aiohttp.test_utils import TestServer
    from gql.transport.aiohttp_websockets import AIOHTTPWebsocketsTransport
    from gql.transport.exceptions import TransportQueryError

    from cqrs_flow.nodes.gateway.cost import Costs
    from cqrs_flow.nodes.gateway.http import GraphQLHttp
    from cqrs_flow.nodes.gateway.limits import RequestGate

    async def scenario(gateway: Gateway, log: FakeLog) -> tuple[list[Any], Any]:
        node = library.topology.nodes["gateway"]
        gate = RequestGate(node.limits, costs=Costs.of(gateway.engine.engine, 100))
        http = GraphQLHttp(node, gateway.engine, gate, None, lambda: True, logging.getLogger())
        log.write("Book", "b", book(library, "b", "Mort"))
        async with TestServer(http.app()) as server:
            url = str(server.make_url("/graphql")).replace("http", "ws", 1)

            def transport() -> Any:
                return AIOHTTPWebsocketsTransport(
                    url=url, subprotocols=[AIOHTTPWebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
                )

            received: list[Any] = []
            async with gql.Client(transport=transport()) as session:
                request = gql.GraphQLRequest(ONE, variable_values={"id": "b"})
                async for result in session.subscribe(request):
                    received.append(result["bookChanged"])
                    if len(received) == 1:
                        log.write("Book", "b", book(library, "b", "Mort", 1987))
                    else:
                        break
            async with gql.Client(transport=transport()) as session:
                with pytest.raises(TransportQueryError) as refused:
                    request = gql.GraphQLRequest(ONE, variable_values={"id": "b", "after": "no"})
                    async for _ in session.subscribe(request):
                        pass
            return received, refused.value.errors

    received, errors = run(library, scenario)
    assert [(m["op"], m["position"], m["document"]["year"]) for m in received] == [
        ("CURRENT", "1", 2000),
        ("UPDATE", "2", 1987),
    ]
    assert errors[0]["extensions"]["code"] == "INVALID_ARGUMENT"


def test_where_the_log_gives_the_document_before_a_change_a_list_tells_exactly_what_left(
    library,
):
    """A log that records what each document was before an update or delete (Change.previous)
    lets a list tell a change out of its filter whether or not it showed the document (a
    resumed subscription included), and nothing about documents that never matched."""
    from cqrs_flow.contracts.documents import SubscriptionPlan
    from cqrs_flow.nodes.gateway.feed import LiveChange
    from cqrs_flow.nodes.gateway.live import _list_select, plan_of
    from cqrs_flow.stores.base import Condition

    (books,) = [
        p for p in library.plan.documents.subscriptions if p.many and p.entity.name == "Book"
    ]
    assert isinstance(books, SubscriptionPlan)
    planned = plan_of(books, [Condition("genre", "eq", ("SCIENCE",))])
    science, fiction = {"id": "b", "genre": "SCIENCE"}, {"id": "b", "genre": "FICTION"}

    def change(op: str, document: Any, previous: Any, known: bool = True) -> LiveChange:
        return LiveChange(1, "Book", "b", op, document, "", "", previous, known)

    select = _list_select(planned.sets, planned.key_field, None)  # resumed: nothing shown known
    assert select(change("INSERT", fiction, None)) is None
    assert select(change("UPDATE", fiction, fiction)) is None  # never matched: not told
    assert select(change("UPDATE", science, fiction)) is True
    assert select(change("UPDATE", fiction, science)) is False  # left the filter
    assert select(change("DELETE", None, science)) is False
    assert select(change("DELETE", None, fiction)) is None
    # Without it, a resumed list tells every change that does not match.
    fallback = _list_select(planned.sets, planned.key_field, None)
    assert fallback(change("UPDATE", fiction, None, known=False)) is False
