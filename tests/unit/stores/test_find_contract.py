"""One contract for every backend's find (the `make_store` fixture, conftest.py): pages, filters,
orders, positions and counts answer as a brute-force reference over the same documents does,
keyset paging stays exact while documents come and go, and bad queries are refused clearly.

The reference below knows nothing of stores/find.py: it sorts and filters every document, then
cuts the page as the Relay specification reads (see Find and Page in stores/base.py).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.stores.base import (
    BadPosition,
    BadQuery,
    Condition,
    Find,
    NotIndexed,
)
from cqrs_flow.stores.find import Indexes

INDEXES = Indexes("id", ("city", "year", "name", "active"))
CITIES = ["Oslo", "Bergen", "Åre", "Zürich", "oslo", ""]
NAMES = ["Ann", "Anna", "Annabel", "Bo", "Émile", "zoë", "Ann-Marie", "🙂 smile", "A"]


@pytest.fixture(autouse=True)
def _finds_only_once(request):
    """A MongoDB store with a change log finds as one without: its writes only differ."""
    if (
        "make_store" in request.fixturenames
        and request.node.callspec.params.get("make_store") == "mongodb-logged"
    ):
        pytest.skip("the finds of the MongoDB backend are those of mongodb-emulated")


def run(coroutine):
    return asyncio.run(coroutine)


# -- the reference ---------------------------------------------------------------------------------


def rank(value):
    """null (or missing), numbers, strings, booleans: the order the contract gives values."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (3, value)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, value)


def meets(value, condition: Condition) -> bool:
    if value is None:
        return False
    mine = rank(value)
    if condition.op == "prefix":
        return isinstance(value, str) and value.startswith(condition.values[0])
    if condition.op in ("eq", "in"):
        return any(mine == rank(v) for v in condition.values)
    other = rank(condition.values[0])
    if mine[0] != other[0]:
        return False  # a value compares with values of its own kind only
    return {
        "gt": mine > other,
        "gte": mine >= other,
        "lt": mine < other,
        "lte": mine <= other,
    }[condition.op]


class Reference:
    """Documents with their insertion order, answering finds by sorting everything."""

    def __init__(self) -> None:
        self.documents: dict[str, dict] = {}
        self.seq: dict[str, int] = {}
        self.counter = 0

    def insert(self, key, document):
        self.counter += 1
        self.documents[key], self.seq[key] = dict(document), self.counter

    def update(self, key, fields):
        self.documents[key] = {**self.documents[key], **fields}

    def delete(self, key):
        del self.documents[key], self.seq[key]

    def value(self, key, field):
        return key if field == "id" else self.documents[key].get(field)

    def place(self, key, query):
        value = 0 if query.order_by is None else rank(self.value(key, query.order_by))
        return (value, self.seq[key])

    def ordered(self, query):
        keys = [
            key
            for key in self.documents
            if all(meets(self.value(key, c.field), c) for c in query.where)
        ]
        keys.sort(key=lambda key: self.place(key, query), reverse=query.descending)
        return keys

    def page(self, query, after_key=None, before_key=None):
        """(keys, has_next, has_previous, total), positions given as the keys of documents."""
        everything = self.ordered(query)
        places = [self.place(key, query) for key in everything]

        def position(key):  # where a key's document sorts, even if the filter drops it
            mine = self.place(key, query)
            return sum(1 for p in places if (p > mine if query.descending else p < mine)), mine

        start, end = 0, len(everything)
        if after_key is not None:
            index, mine = position(after_key)
            start = index + (1 if mine in places else 0)
        if before_key is not None:
            end, _ = position(before_key)
        window = list(range(start, max(start, end)))
        if query.first is not None:
            window = window[: query.first]
        if query.last is not None:
            window = window[max(0, len(window) - query.last) :]
        if window:
            has_previous, has_next = window[0] > 0, window[-1] < len(everything) - 1
        else:
            anchor = start
            if query.last is not None and query.first is None:
                anchor = max(start, end)
            elif query.first is not None and query.last is not None:
                anchor = min(start + query.first, max(start, end))
            has_previous, has_next = anchor > 0, anchor < len(everything)
        return (
            [everything[i] for i in window],
            has_next,
            has_previous,
            len(everything) if query.total else None,
        )


def random_document(rng: random.Random, key: str) -> dict:
    document = {"id": key, "n": rng.randrange(100)}
    if rng.random() < 0.85:
        document["city"] = rng.choice(CITIES)
    if rng.random() < 0.9:
        document["year"] = rng.choice([1990, 1999, 2000, 2001, 2010, 2024, -5, 1999.5, 0])
    if rng.random() < 0.9:
        document["name"] = rng.choice(NAMES)
    if rng.random() < 0.8:
        document["active"] = rng.random() < 0.5
    return document


def random_condition(rng: random.Random) -> Condition:
    field = rng.choice(["city", "year", "name", "active", "id"])
    if field == "active":
        op = rng.choice(["eq", "in", "gt", "gte", "lt", "lte"])
        values = (rng.random() < 0.5,) if op != "in" else (True, False)[: rng.randrange(1, 3)]
        return Condition(field, op, values)
    if field == "year":
        op = rng.choice(["eq", "in", "gt", "gte", "lt", "lte", "gt"])
        pool = [1990, 1999, 2000, 2001.0, 2010, 1999.5, 0, -5, 3000]
        if rng.random() < 0.05:
            return Condition(field, rng.choice(["gt", "lt"]), ("2000",))  # another kind
    else:
        op = rng.choice(["eq", "in", "gt", "gte", "lt", "lte", "prefix", "prefix"])
        pool = {
            "city": CITIES + ["Os", "Z", "Å"],
            "name": NAMES + ["An", "Ann", "É", "🙂", "zz"],
            "id": [f"k{i:03d}" for i in range(0, 60, 7)] + ["k0", "k01", "k"],
        }[field]
        if rng.random() < 0.05 and op != "prefix":
            return Condition(field, op, (7,))  # another kind: matches nothing
    if op == "in":
        return Condition(field, op, tuple(rng.sample(pool, rng.randrange(1, 4))))
    return Condition(field, op, (rng.choice(pool),))


def random_query(rng: random.Random) -> Find:
    where = tuple(random_condition(rng) for _ in range(rng.choice([0, 0, 1, 1, 1, 2])))
    first = rng.choice([None, 0, 1, 3, 7, 7, 20])
    last = rng.choice([None, None, None, 0, 1, 4]) if first is None or rng.random() < 0.2 else None
    if first is None and last is None and rng.random() < 0.7:
        first = 5
    return Find(
        where=where,
        order_by=rng.choice([None, None, "id", "city", "year", "name", "active"]),
        descending=rng.random() < 0.3,
        first=first,
        last=last,
        total=rng.random() < 0.5,
    )


def keys_of(page):
    return [document["id"] for document in page.documents]


async def fill(store, reference, rng, count):
    """Random writes through the store and the reference alike: inserts, updates, deletes."""
    clock = CommandClock()
    for _ in range(count):
        roll = rng.random()
        if roll < 0.7 or len(reference.documents) < 5:
            key = f"k{rng.randrange(count * 2):03d}"
            if key in reference.documents:
                continue
            document = random_document(rng, key)
            await store.insert(key, document, clock.next_id())
            reference.insert(key, document)
        elif roll < 0.85:
            key = rng.choice(sorted(reference.documents))
            fields = {k: v for k, v in random_document(rng, key).items() if k != "id"}
            fields = dict(rng.sample(sorted(fields.items()), rng.randrange(1, len(fields) + 1)))
            await store.update(key, fields, clock.next_id())
            reference.update(key, fields)
        else:
            key = rng.choice(sorted(reference.documents))
            await store.delete(key, clock.next_id())  # a tombstone: never found
            reference.delete(key)


# -- finds answer as the reference does ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_pages_answer_as_the_reference(make_store, seed):
    """Random documents, random queries (conditions, orders, first/last), then the pages after
    and before positions the backend gave, compared in full with the reference."""

    async def scenario():
        rng = random.Random(seed)
        store, reference = await make_store(indexes=INDEXES), Reference()
        await fill(store, reference, rng, 120)
        for step in range(120):
            query = random_query(rng)
            page = await store.find(query)
            expected = reference.page(query)
            got = (keys_of(page), page.has_next, page.has_previous, page.total)
            assert got == expected, (step, query)
            assert len(page.positions) == len(page.documents)
            if not page.documents:
                continue
            for _ in range(2):  # then from a position of this page, forwards or backwards
                index = rng.randrange(len(page.documents))
                position, key = page.positions[index], page.documents[index]["id"]
                forwards = rng.random() < 0.5
                query = Find(
                    where=query.where,
                    order_by=query.order_by,
                    descending=query.descending,
                    first=rng.choice([None, 0, 2, 5]) if forwards else None,
                    last=None if forwards else rng.choice([0, 2, 5]),
                    after=position if forwards else None,
                    before=None if forwards else position,
                    total=query.total,
                )
                page = await store.find(query)
                expected = reference.page(
                    query, key if forwards else None, None if forwards else key
                )
                got = (keys_of(page), page.has_next, page.has_previous, page.total)
                assert got == expected, (step, query, key)
                if not page.documents:
                    break
        await store.close()

    run(scenario())


def test_a_window_between_two_positions(make_store):
    async def scenario():
        store, reference = await make_store(indexes=INDEXES), Reference()
        await fill(store, reference, random.Random(7), 80)
        for order in [None, "year", "name", "id"]:
            query = Find(order_by=order, first=100)
            everything = await store.find(query)
            keys = keys_of(everything)
            for a, b in [(2, 9), (0, 1), (5, 5), (9, 2), (3, len(keys) - 1)]:
                for first, last in [(None, None), (3, None), (None, 3), (4, 2), (0, None)]:
                    between = Find(
                        order_by=order,
                        after=everything.positions[a],
                        before=everything.positions[b],
                        first=first,
                        last=last,
                    )
                    page = await store.find(between)
                    expected = reference.page(between, keys[a], keys[b])
                    assert (keys_of(page), page.has_next, page.has_previous) == expected[:3], (
                        order,
                        a,
                        b,
                        first,
                        last,
                    )
        await store.close()

    run(scenario())


def test_the_order_of_values_and_what_conditions_match(make_store, request):
    # mongomock matches {v: false} and {v: {$in: [false]}} on 0 as well (Python's False == 0);
    # MongoDB keeps booleans and numbers apart, as the other backends do.
    emulated = request.node.callspec.params["make_store"] == "mongodb-emulated"

    async def scenario():
        store = await make_store(indexes=Indexes("id", ("v",)))
        values = [None, -1.5, 0, 2, 2.0, 10, "", "10", "A", "a", "ab", "é", "😀", False, True]
        for i, value in enumerate(values):
            document = {"id": f"d{i:02d}"} if value is None else {"id": f"d{i:02d}", "v": value}
            await store.insert(f"d{i:02d}", document)

        async def ids(*where, **options):
            page = await store.find(Find(where=tuple(Condition(*c) for c in where), **options))
            return [d.get("v", "<none>") for d in page.documents]

        assert await ids(order_by="v") == [
            "<none>", -1.5, 0, 2, 2.0, 10, "", "10", "A", "a", "ab", "é", "😀", False, True,
        ]  # fmt: skip
        assert await ids(order_by="v", descending=True, first=3) == [True, False, "😀"]
        assert await ids(("v", "gt", (1,)), order_by="v") == [2, 2.0, 10]  # numbers only
        assert await ids(("v", "lte", ("a",)), order_by="v") == ["", "10", "A", "a"]
        assert await ids(("v", "eq", (2,))) == [2, 2.0]
        assert await ids(("v", "in", ("a", 10, True))) == [10, "a", True]
        if not emulated:
            assert await ids(("v", "eq", (False,))) == [False]
            assert await ids(("v", "gte", (False,))) == [False, True]
            assert await ids(("v", "eq", (0,))) == [0]
        assert await ids(("v", "prefix", ("a",))) == ["a", "ab"]
        assert await ids(("v", "prefix", ("",)), order_by="v", first=2) == ["", "10"]
        assert await ids(("v", "gt", (False,))) == [True]
        assert await ids(("v", "gt", (5,)), ("v", "lt", ("z",))) == []  # no value is both
        assert await ids(("v", "gte", (0,)), ("v", "lt", (10,)), ("v", "in", (2, 10, "x"))) == [
            2,
            2.0,
        ]
        assert await ids(("v", "eq", ("a",)), ("v", "eq", ("b",)), total=True) == []
        await store.close()

    run(scenario())


def test_keys_are_fetched_in_the_order_asked_and_filtered(make_store):
    async def scenario():
        store = await make_store(indexes=INDEXES)
        for i in range(6):
            await store.insert(f"k{i}", {"id": f"k{i}", "city": "Oslo" if i % 2 else "Bergen"})
        await store.delete("k3")
        page = await store.find(Find(keys=("k4", "k3", "nobody", "k1", "k4"), total=True))
        assert (keys_of(page), page.positions, page.total) == (["k4", "k1"], [], 2)
        page = await store.find(
            Find(keys=("k4", "k1", "k5"), where=(Condition("city", "eq", ("Oslo",)),))
        )
        assert keys_of(page) == ["k1", "k5"]
        assert keys_of(await store.find(Find(keys=()))) == []
        paged = Find(keys=("k1", "k2"), first=1, after=b"stale", order_by="city")
        assert keys_of(await store.find(paged)) == ["k1", "k2"]  # paging ignored
        await store.close()

    run(scenario())


def test_find_many_answers_each_query_in_order(make_store):
    async def scenario():
        store = await make_store(indexes=INDEXES)
        for i in range(10):
            await store.insert(f"k{i}", {"id": f"k{i}", "year": 2000 + i % 3})
        pages = await store.find_many(
            [
                Find(first=2),
                Find(where=(Condition("year", "eq", (2001,)),), total=True),
                Find(keys=("k9",)),
                Find(order_by="year", descending=True, last=1),
            ]
        )
        assert [keys_of(page) for page in pages] == [
            ["k0", "k1"],
            ["k1", "k4", "k7"],
            ["k9"],
            ["k0"],
        ]
        assert pages[1].total == 3
        assert await store.find_many([]) == []
        with pytest.raises(NotIndexed):  # every query is checked before any is answered
            await store.find_many([Find(first=1), Find(order_by="n")])
        await store.close()

    run(scenario())


def test_totals_count_every_match_and_no_tombstone(make_store):
    async def scenario():
        store, clock = await make_store(indexes=INDEXES), CommandClock()
        await store.insert_many(
            {f"k{i}": {"id": f"k{i}", "city": ["Oslo", "Bergen"][i % 2]} for i in range(50)}
        )
        await store.delete_many([f"k{i}" for i in range(0, 50, 5)], clock.next_id())
        await store.delete("k1")  # no command: gone altogether
        assert (await store.find(Find(first=0, total=True))).total == 39
        oslo = Find(where=(Condition("city", "eq", ("Oslo",)),), first=1, total=True)
        assert (await store.find(oslo)).total == 20  # the even ones, but 0, 10, 20, 30, 40
        everything = await store.find(Find(first=100))
        assert len(everything.documents) == 39 and "k5" not in keys_of(everything)
        await store.insert("k5", {"id": "k5", "city": "Oslo"}, clock.next_id())  # back, last
        assert keys_of(await store.find(Find(last=1))) == ["k5"]
        assert (await store.find(oslo)).total == 21
        await store.close()

    run(scenario())


# -- keyset paging while documents come and go ---------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        Find(first=7),
        Find(order_by="year", first=7),
        Find(order_by="name", descending=True, first=7),
        Find(where=(Condition("city", "eq", ("Oslo",)),), first=3),
        Find(where=(Condition("city", "in", ("Oslo", "Åre")),), first=4),
        Find(where=(Condition("year", "gte", (2000,)),), order_by="city", first=5),
        Find(order_by="id", last=6),
        Find(order_by="year", descending=True, last=5),
    ],
    ids=lambda query: (
        f"{query.order_by}-{'where' if query.where else 'all'}-"
        + ("first" if query.first else "last")
    ),
)
def test_paging_skips_nothing_present_throughout_and_repeats_nothing(make_store, query):
    """Between pages, documents are inserted and deleted at random (none of those present from
    the start to the end is changed): every document present throughout that matches is seen
    exactly once, and no document is seen twice."""

    async def scenario():
        rng = random.Random(hash(repr(query)) % 1000)
        store, reference = await make_store(indexes=INDEXES), Reference()
        await fill(store, reference, rng, 150)
        at_start = set(reference.documents)
        deleted: set[str] = set()
        seen: list[str] = []
        position = None
        forwards = query.last is None
        for _ in range(200):
            page = await store.find(
                Find(
                    where=query.where,
                    order_by=query.order_by,
                    descending=query.descending,
                    first=query.first,
                    last=query.last,
                    after=position if forwards else None,
                    before=None if forwards else position,
                )
            )
            seen += keys_of(page)
            more = page.has_next if forwards else page.has_previous
            if not page.documents or not more:
                break
            position = page.positions[-1] if forwards else page.positions[0]
            for _ in range(rng.randrange(6)):  # others write between the pages
                key = f"n{rng.randrange(10**6):06d}"
                if rng.random() < 0.5 and key not in reference.documents:
                    document = random_document(rng, key)
                    await store.insert(key, document)
                    reference.insert(key, document)
                else:
                    gone = rng.choice(sorted(reference.documents))
                    await store.delete(gone)
                    reference.delete(gone)
                    deleted.add(gone)
        assert len(seen) == len(set(seen)), "a document was seen twice"
        throughout = {key for key in at_start - deleted}
        matching = set(reference.ordered(Find(where=query.where))) & throughout
        assert matching <= set(seen), f"skipped: {sorted(matching - set(seen))}"
        await store.close()

    run(scenario())


# -- what is refused -----------------------------------------------------------------------------


def test_only_indexed_fields_filter_and_order(make_store):
    async def scenario():
        store = await make_store(collection="books", indexes=Indexes("id", ("title", "author_id")))
        await store.insert("b1", {"id": "b1", "title": "T", "year": 1990})
        for query in (
            Find(where=(Condition("year", "gt", (1980,)),)),
            Find(order_by="year"),
            Find(keys=("b1",), where=(Condition("year", "eq", (1990,)),)),
        ):
            with pytest.raises(NotIndexed) as refused:
                await store.find(query)
            assert str(refused.value) == (
                "'year' is not indexed; the indexed fields of books are: id, title, author_id"
            )
        with pytest.raises(NotIndexed, match="did you mean 'title'"):
            await store.find(Find(order_by="titel"))
        assert keys_of(await store.find(Find(where=(Condition("id", "prefix", ("b",)),)))) == ["b1"]
        await store.close()

    run(scenario())


@pytest.mark.parametrize(
    "condition, message",
    [
        (Condition("title", "prefix", (5,)), "prefix compares strings, and 5 is a number"),
        (Condition("title", "prefix", (True,)), "prefix compares strings.*boolean"),
        (Condition("title", "like", ("x",)), "no such condition; conditions are eq, in, gt"),
        (Condition("title", "eqq", ("x",)), "did you mean 'eq'"),
        (Condition("title", "in", ()), "give at least one value"),
        (Condition("title", "eq", ("a", "b")), "give exactly one value, not 2"),
        (Condition("title", "eq", (None,)), "a string, a finite number or a boolean"),
        (Condition("title", "eq", ([1],)), "a string, a finite number or a boolean"),
        (Condition("title", "gt", (float("nan"),)), "a string, a finite number or a boolean"),
        (Condition("title", "lt", (2**70,)), "beyond 64-bit integers"),
    ],
)
def test_conditions_that_mean_nothing_are_refused(make_store, condition, message):
    async def scenario():
        store = await make_store(collection="books", indexes=Indexes("id", ("title",)))
        with pytest.raises(BadQuery, match=message):
            await store.find(Find(where=(condition,)))
        await store.close()

    run(scenario())


def test_negative_counts_are_refused(make_store):
    async def scenario():
        store = await make_store(indexes=INDEXES)
        with pytest.raises(BadQuery, match="first must not be negative"):
            await store.find(Find(first=-1))
        with pytest.raises(BadQuery, match="last must not be negative"):
            await store.find(Find(last=-3))
        await store.close()

    run(scenario())


def test_a_position_holds_for_its_own_order_and_collection_only(make_store):
    async def scenario():
        store = await make_store(collection="books", indexes=Indexes("id", ("title",)))
        for i in range(4):
            await store.insert(f"b{i}", {"id": f"b{i}", "title": f"t{i}"})
        by_title = (await store.find(Find(order_by="title", first=2))).positions[-1]
        assert keys_of(await store.find(Find(order_by="title", after=by_title))) == ["b2", "b3"]
        with pytest.raises(BadPosition, match=r"insertion order, oldest first.*order that gave"):
            await store.find(Find(after=by_title))
        with pytest.raises(BadPosition, match="'title', ascending; this find is in the order "):
            await store.find(Find(order_by="title", descending=True, before=by_title))
        for garbage in (b"", b"\x01", b"\x02[]", b"\x01[1,2]", b"\x01" + b"\xff" * 4, b"cursor"):
            with pytest.raises(BadPosition, match="does not decode"):
                await store.find(Find(after=garbage))
        other = await make_store(collection="authors", indexes=Indexes("id", ("title",)))
        await other.insert("a1", {"id": "a1", "title": "x"})
        theirs = (await other.find(Find(order_by="title", first=1))).positions[0]
        with pytest.raises(BadPosition, match="a find over authors, not books"):
            await store.find(Find(order_by="title", after=theirs))
        await other.close()
        await store.close()

    run(scenario())
