"""The cost of an operation (limits.cost) and the per-caller limits of the request gate."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
from tartiflette import create_engine

from cqrs_flow.nodes.gateway.cost import Costs
from cqrs_flow.nodes.gateway.limits import (
    Busy,
    LimitExceeded,
    RequestGate,
    TooManyRequests,
    caller_of,
)
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.topology.model import Limits, Rate

INTROSPECTION = (Path(__file__).parent / "introspection.graphql").read_text()
ROOT = Path(__file__).resolve().parents[4]

SDL = """
type Tag { name: String  uses: [Use] }
type Use { at: String }
type Contact { id: String  name: String!  last_updated: String  tags: [Tag]  labels: [String] }
type Query {
  contact(id: String!): Contact
  listContacts(count: Int!): [Contact]
  page(first: Int, count: Int): [Contact!]!
}
type Mutation { addContact(name: String!): Contact }
"""
ATTACK = (
    "{ "
    + " ".join(f"a{i}: listContacts(count: 1000) {{ id name last_updated }}" for i in range(30))
    + " }"
)


def engine_for(sdl: str, name: str):
    return asyncio.run(create_engine(sdl, schema_name=f"test-cost-{name}"))


@pytest.fixture(scope="module")
def engine():
    return engine_for(SDL, "nested")


@pytest.fixture(scope="module")
def subscribing():
    return engine_for(SDL + "type Subscription { ticks: Int }", "subscribing")


def costs_of(engine, list_size: int = 100) -> Costs:
    return Costs.of(engine, list_size)


@pytest.mark.parametrize(
    "query, variables, expected",
    [
        # an object costs 1, its scalars nothing
        ('{ contact(id: "x") { id name } }', None, 1),
        ("{ __typename }", None, 0),
        # a list multiplies each item's cost by its count
        ("{ listContacts(count: 10) { id name last_updated } }", None, 10),
        ("{ listContacts(count: 0) { id } }", None, 0),
        # aliases count each
        ("{ a: listContacts(count: 10) { id } b: listContacts(count: 10) { id } }", None, 20),
        # nesting multiplies; a list without a count argument is list_size (100 here) long
        ("{ listContacts(count: 10) { tags { name } } }", None, 10 * (1 + 100)),
        (
            "{ listContacts(count: 2) { tags { uses { at } } } }",
            None,
            2 * (1 + 100 * (1 + 100)),
        ),
        # a list of scalars adds nothing
        ("{ listContacts(count: 10) { labels } }", None, 10),
        # a count over list_size counts as list_size (the gateway refuses it anyway: list_count)
        ("{ listContacts(count: 5000) { id } }", None, 100),
        # the largest whole-number argument is the count
        ("{ page(first: 3, count: 7) { id } }", None, 7),
        ("{ page { id } }", None, 100),
        # fragments count where they are spread, inline ones too
        ("{ listContacts(count: 10) { ...F } } fragment F on Contact { id name }", None, 10),
        (
            "{ listContacts(count: 10) { ...F ...F } } fragment F on Contact { tags { name } }",
            None,
            10 * (1 + 2 * 100),
        ),
        (
            '{ x: listContacts(count: 10) { ...F } y: contact(id: "a") { ...F } } '
            "fragment F on Contact { id tags { name } }",
            None,
            10 * (1 + 100) + (1 + 100),
        ),
        ("{ listContacts(count: 10) { ... on Contact { id name } } }", None, 10),
        # counts in variables, and their defaults
        ("query($n: Int!) { listContacts(count: $n) { id } }", {"n": 5}, 5),
        ("query($n: Int = 7) { listContacts(count: $n) { id } }", None, 7),
        ("query($n: Int = 7) { listContacts(count: $n) { id } }", {"n": 3}, 3),
        ("query($n: Int) { page(count: $n) { id } }", None, 100),
        ("query($n: Int) { page(count: $n) { id } }", {"n": None}, 100),
        (
            "query F($n: Int!) { ...L } fragment L on Query { listContacts(count: $n) { id } }",
            {"n": 4},
            4,
        ),
        # mutations count too
        ('mutation { a: addContact(name: "x") { id } b: addContact(name: "y") { id } }', None, 2),
        # what does not validate costs nothing here: the engine answers its errors
        ("{ nope }", None, 0),
        ("{ listContacts(count: 10) { id }", None, 0),
    ],
)
def test_the_cost_of_an_operation(engine, query, variables, expected):
    assert costs_of(engine).cost(query, None, variables) == expected


def test_the_operation_named_is_the_one_counted(engine):
    query = 'query Small { contact(id: "x") { id } } query Big { listContacts(count: 50) { id } }'
    costs = costs_of(engine)
    assert costs.cost(query, "Small") == 1
    assert costs.cost(query, "Big") == 50
    assert costs.cost(query, None) == 50  # ambiguous: the engine refuses it; the dearest counts


def test_a_query_text_is_compiled_once(engine):
    parses = []

    def parse(query):
        parses.append(query)
        return engine._cached_parse_and_validate_query(query, engine._schema)[0]

    costs = Costs(engine._schema, parse, 100)
    query = "query($n: Int!) { listContacts(count: $n) { id } }"
    assert [costs.cost(query, None, {"n": n}) for n in (1, 2, 3)] == [1, 2, 3]
    assert parses == [query]


def test_the_default_cost_admits_one_large_list_and_introspection_but_not_the_attack():
    engine = engine_for((ROOT / "schema" / "contacts.graphql").read_text(), "contacts")
    gate = RequestGate(Limits(), costs=costs_of(engine, list_size=1000))
    gate.check("{ listContacts(count: 1000) { id name last_updated } }", None)
    gate.check(INTROSPECTION, None)
    assert costs_of(engine, 1000).cost(INTROSPECTION) < Limits().cost
    expected = r"the query costs 30,000, more than 10,000 \(limits.cost\)"
    with pytest.raises(LimitExceeded, match=expected):
        gate.check(ATTACK, None)
    # the measure of the text comes first: what it refuses is not parsed
    with pytest.raises(LimitExceeded, match=r"limits\.aliases"):
        gate.check("{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }", None)


@pytest.mark.parametrize(
    "query",
    [
        "{ __schema { types { name } } }",
        '{ __type(name: "Contact") { name } }',
        "query { ...S } fragment S on Query { __schema { types { name } } }",
        # an alias names the key of the answer, not the field (audit M1)
        "{ s: __schema { types { name } } }",
        '{ t: __type(name: "Contact") { fields { name } } }',
        '{t:__type(name:"Contact"){name}}',
        "query { ...S } fragment S on Query { s: __schema { queryType { name } } }",
        '{ ... on Query { t: __type(name: "Contact") { name } } }',
        '{ contact(id: "x") { id } ...S } fragment S on Query { x: __schema { __typename } }',
    ],
)
def test_introspection_switched_off_is_refused_however_it_is_spelled(engine, query):
    costs = costs_of(engine)
    RequestGate(Limits(), costs=costs).check(query, None)  # on by default
    with pytest.raises(LimitExceeded, match="introspection is switched off") as refused:
        RequestGate(Limits(), introspection=False, costs=costs).check(query, None)
    assert refused.value.code == "INTROSPECTION_OFF"


@pytest.mark.parametrize(
    "query",
    [
        "{ __typename }",
        "{ schema: __typename }",
        '{ __schema: contact(id: "x") { __type: id } }',  # aliases named like introspection
        '{ contact(id: "__schema") { id } }',
        "{ nope { __schema } }",  # does not validate: the engine answers the error
    ],
)
def test_what_is_not_introspection_passes_with_introspection_off(engine, query):
    RequestGate(Limits(), introspection=False, costs=costs_of(engine)).check(query, None)


def test_introspection_off_needs_the_parsed_document():
    with pytest.raises(ValueError):
        RequestGate(Limits(), introspection=False)


@pytest.mark.parametrize(
    "query, name, expected",
    [
        ("subscription { ticks }", None, "subscription"),
        ("{ __typename }", None, "query"),
        ('mutation { addContact(name: "x") { id } }', None, "mutation"),
        ("query Q { __typename } subscription S { ticks }", "S", "subscription"),
        ("query Q { __typename } subscription S { ticks }", "Q", "query"),
        ("query Q { __typename } subscription S { ticks }", None, None),  # the engine refuses
        ("query Q { __typename }", "Nope", None),
        # words are not keywords: an alias, an operation's name, a comment, a string (audit L7)
        ("{ subscription: __typename }", None, "query"),
        ("query subscription { __typename }", None, "query"),
        ('# subscription\n{ contact(id: "subscription { ticks }") { id } }', None, "query"),
        ("subscription { nope }", None, None),  # does not validate
    ],
)
def test_what_an_operation_is_comes_from_the_parsed_document(subscribing, query, name, expected):
    gate = RequestGate(Limits(), costs=costs_of(subscribing))
    assert gate.operation_type(query, name) == expected
    assert RequestGate(Limits()).operation_type(query, name) is None  # nothing parsed: unknown


@pytest.mark.parametrize(
    "query, variables",
    [
        ('{ contact(id: "a\ud800") { id } }', None),
        ("query($n: String) { contact(id: $n) { id } }", {"n": "\udfff"}),
        ("query($n: [String]) { __typename }", {"n": ["ok", "b\udc00"]}),
        ("{ __typename }", {"\ud800": 1}),
    ],
)
def test_text_that_is_not_unicode_is_refused(query, variables):
    with pytest.raises(Refused, match="lone surrogate") as refused:
        RequestGate(Limits()).check(query, variables)
    assert refused.value.code == "INVALID_TEXT" and refused.value.status == 400


def test_one_caller_cannot_take_every_place_in_flight():
    gate = RequestGate(Limits(in_flight=3, per_caller_in_flight=2))
    with gate.admitted("10.0.0.1"), gate.admitted("10.0.0.1"):
        with pytest.raises(TooManyRequests, match=r"limits.per_caller_in_flight") as refused:
            with gate.admitted("10.0.0.1"):
                pass
        assert refused.value.retry_after_header == "1"
        with gate.admitted("10.0.0.2"):  # another caller still gets in
            with pytest.raises(Busy, match=r"limits\.in_flight"):
                with gate.admitted("10.0.0.3"):
                    pass
    assert gate.in_flight == 0 and gate.callers == {}


def test_one_caller_cannot_hold_every_websocket():
    gate = RequestGate(Limits(websockets=3, websockets_per_caller=2))
    with gate.connected("10.0.0.1"), gate.connected("10.0.0.1"):
        with pytest.raises(TooManyRequests, match=r"limits.websockets_per_caller"):
            with gate.connected("10.0.0.1"):
                pass
        with gate.connected("10.0.0.2"):  # another caller still gets in
            with pytest.raises(Busy, match=r"limits\.websockets\b"):
                with gate.connected("10.0.0.3"):
                    pass
    assert gate.connections == 0 and gate.sockets == {}


def test_the_rate_per_caller_is_a_token_bucket():
    gate = RequestGate(Limits(rate=Rate(requests=2, per=1.0)))
    gate.pace("a", now=0.0)
    gate.pace("a", now=0.0)
    expected = r"more than 2 requests in 1s .*\(limits.rate\)"
    with pytest.raises(TooManyRequests, match=expected) as refused:
        gate.pace("a", now=0.1)
    assert refused.value.retry_after == pytest.approx(0.4)
    gate.pace("b", now=0.1)  # another caller has its own bucket
    gate.pace("a", now=0.5)  # half a second refills one request
    with pytest.raises(TooManyRequests):
        gate.pace("a", now=0.5)
    RequestGate(Limits()).pace("a")  # no rate limit by default


def test_idle_callers_are_forgotten():
    gate = RequestGate(Limits(rate=Rate(requests=1, per=1.0)))
    for i in range(50):
        gate.pace(f"caller {i}", now=float(i))
    assert len(gate._buckets) <= 3


NETWORKS = (ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("10.1.0.0/16"))


@pytest.mark.parametrize(
    "peer, forwarded, trusted, expected",
    [
        ("127.0.0.1", None, (), "127.0.0.1"),
        ("127.0.0.1", "203.0.113.9", (), "127.0.0.1"),  # no proxy trusted: the header is ignored
        ("127.0.0.1", "203.0.113.9", NETWORKS, "203.0.113.9"),
        ("198.51.100.7", "203.0.113.9", NETWORKS, "198.51.100.7"),  # not from a trusted proxy
        # the client may send its own X-Forwarded-For: only what trusted proxies appended counts
        ("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3", NETWORKS, "203.0.113.9"),
        ("127.0.0.1", "10.1.2.3", NETWORKS, "10.1.2.3"),
        ("127.0.0.1", "", NETWORKS, "127.0.0.1"),
        (None, None, (), "-"),
    ],
)
def test_the_caller_is_the_peer_or_what_a_trusted_proxy_says(peer, forwarded, trusted, expected):
    assert caller_of(peer, forwarded, trusted) == expected


def test_one_callers_operations_run_within_one_operations_cost_at_a_time():
    gate = RequestGate(Limits(cost=100))
    order: list[str] = []

    async def run(caller: str, name: str, cost: int, hold: asyncio.Event):
        async def operation() -> None:
            order.append(f"{name} starts")
            await hold.wait()
            order.append(f"{name} ends")

        await gate.in_share(caller, cost, operation)

    async def main():
        first, second, third, other = (asyncio.Event() for _ in range(4))
        tasks = [
            asyncio.ensure_future(run("a", "a1", 60, first)),
            asyncio.ensure_future(run("a", "a2", 60, second)),  # 120 > 100: waits
            asyncio.ensure_future(run("a", "a3", 10, third)),  # fits, but waits its turn
            asyncio.ensure_future(run("b", "b1", 100, other)),
        ]  # another caller: at once
        await asyncio.sleep(0.01)
        assert order == ["a1 starts", "b1 starts"]
        first.set()
        await asyncio.sleep(0.01)
        assert order[2:] == ["a1 ends", "a2 starts", "a3 starts"]
        cancelled = asyncio.ensure_future(run("a", "a4", 60, asyncio.Event()))
        await asyncio.sleep(0.01)
        cancelled.cancel()  # a waiting operation cut off (limits.timeout) leaves the queue
        for event in (second, third, other):
            event.set()
        await asyncio.gather(*tasks)
        await asyncio.gather(cancelled, return_exceptions=True)
        assert gate._shares == {}

    asyncio.run(main())


CONNECTIONS_SDL = """
type PageInfo { hasNextPage: Boolean!  endCursor: String }
type Book { title: String  author: Author }
type Author { name: String  books(first: Int, last: Int, where: String): BookConnection! }
type BookEdge { cursor: String!  node: Book! }
type BookConnection { edges: [BookEdge!]!  nodes: [Book!]!  pageInfo: PageInfo!  totalCount: Int }
type Query { books(first: Int, last: Int): BookConnection!  tags(year: Int): [Book] }
"""


@pytest.fixture(scope="module")
def paged():
    return engine_for(CONNECTIONS_SDL, "connections")


@pytest.mark.parametrize(
    "query, variables, expected",
    [
        # a connection is 1; its edges and nodes are lists of its page's size (first or last)
        ("{ books(first: 10) { totalCount } }", None, 1),
        ("{ books(first: 10) { nodes { title } } }", None, 1 + 10),
        ("{ books(first: 10) { edges { cursor node { title } } } }", None, 1 + 10 * 2),
        ("{ books(last: 4) { nodes { title } pageInfo { endCursor } } }", None, 1 + 4 + 1),
        # neither first nor last: the page size (20 here)
        ("{ books { nodes { title } } }", None, 1 + 20),
        ("query($n: Int) { books(first: $n) { nodes { title } } }", {"n": 3}, 1 + 3),
        # nested: 10 books, each with its author and that author's first 5 books
        (
            "{ books(first: 10) { nodes { author { books(first: 5) { nodes { title } } } } } }",
            None,
            1 + 10 * (1 + 1 + (1 + 5)),
        ),
        # fragments on the connection count where they are spread, at the page's size
        ("{ books(first: 6) { ...P } } fragment P on BookConnection { nodes { title } }", None, 7),
        # a page beyond list_size counts as list_size (the gateway refuses it anyway)
        ("{ books(first: 5000) { nodes { title } } }", None, 1 + 100),
        # other lists keep their rule: their whole-number argument, or list_size
        ("{ tags(year: 1990) { title } }", None, 100),
    ],
)
def test_the_cost_of_connections(paged, query, variables, expected):
    costs = Costs.of(paged, 100, frozenset({"BookConnection"}), page_size=20)
    assert costs.cost(query, None, variables) == expected
