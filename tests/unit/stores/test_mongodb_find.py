"""What the MongoDB backend asks of MongoDB for finds (stores/mongodb_find.py), without a server:
its indexes, and the filter, sort, hint and limit of each request. The answers themselves are in
test_find_contract.py (mongomock standing in, and a real MongoDB with MONGODB_URL)."""

from __future__ import annotations

import asyncio

import pytest

from cqrs_flow.stores.base import Condition, Find
from cqrs_flow.stores.find import Bound, Indexes, Interval, Place, Scan, plan
from cqrs_flow.stores.mongodb_find import (
    LIVE,
    count_query,
    index_specs,
    interval_filter,
    scan_query,
)

from .mongo_emulation import EmulatedCollection

pytest.importorskip("pymongo", reason="the mongodb extra is not installed")

INDEXES = Indexes("id", ("city", "year"))
S1, S2 = "0190a1b2-0000-7000-8000-000000000001", "0190a1b2-0000-7000-8000-000000000002"


def run(coroutine):
    return asyncio.run(coroutine)


def query_of(scan, **asked):
    return scan_query(plan(Find(**asked), INDEXES, "books"), INDEXES, scan)


def test_the_indexes_are_compound_with_the_insertion_order_and_hold_live_documents():
    assert index_specs(INDEXES) == [
        ([("_seq", 1)], {"name": "live_by_seq", "partialFilterExpression": LIVE}),
        ([("_id", 1), ("_seq", 1)], {"name": "live_by_id", "partialFilterExpression": LIVE}),
        ([("d.city", 1), ("_seq", 1)], {"name": "by_city", "partialFilterExpression": LIVE}),
        ([("d.year", 1), ("_seq", 1)], {"name": "by_year", "partialFilterExpression": LIVE}),
    ]


def test_a_filtered_page_in_insertion_order_reads_the_fields_index_by_seq():
    asked = query_of(
        Scan(Bound(Place(None, S1)), None, False, 21),
        where=(Condition("city", "eq", ("Oslo",)),),
    )
    assert asked == {
        "filter": {"$and": [LIVE, {"d.city": "Oslo", "_seq": {"$gt": S1}}]},
        "projection": {"d": 1, "_seq": 1},
        "sort": [("_seq", 1)],
        "limit": 21,
        "hint": "by_city",
    }
    several = query_of(Scan(None, None, True, 1, documents=False), where=(
        Condition("city", "in", ("Oslo", "Bergen")),
    ))  # fmt: skip
    assert several["filter"] == {
        "$and": [LIVE, {"$or": [{"d.city": "Bergen"}, {"d.city": "Oslo"}]}]
    }
    assert (several["sort"], several["projection"]) == ([("_seq", -1)], {"_seq": 1})


def test_an_ordered_page_after_a_position_is_a_keyset_on_the_compound_index():
    after = Bound(Place(1999, S1))
    asked = query_of(Scan(after, None, False, 21), order_by="year")
    assert asked["filter"] == {
        "$and": [
            LIVE,
            {"$or": [{"d.year": 1999, "_seq": {"$gt": S1}}, {"d.year": {"$gt": 1999}}]},
        ]
    }
    assert (asked["sort"], asked["hint"]) == ([("d.year", 1), ("_seq", 1)], "by_year")
    descending = query_of(Scan(after, None, False, 21), order_by="year", descending=True)
    assert descending["filter"]["$and"][1] == {  # after 1999, descending: below it
        "$or": [
            {"d.year": None},
            {"d.year": {"$lt": 1999}},
            {"d.year": 1999, "_seq": {"$lt": S1}},
        ]
    }
    assert descending["sort"] == [("d.year", -1), ("_seq", -1)]
    by_key = query_of(Scan(Bound(Place("k7", S2)), None, False, 5), order_by="id")
    assert by_key["hint"] == "live_by_id" and by_key["sort"][0] == ("_id", 1)


def test_pieces_after_null_and_a_range_condition():
    from_start = query_of(Scan(None, None, False, 10), order_by="year")
    assert from_start["filter"]["$and"][1] == {"$or": [{"d.year": None}, {"d.year": {"$ne": None}}]}
    ranged = query_of(
        Scan(None, None, False, 10), order_by="year", where=(Condition("year", "lt", (2000,)),)
    )
    assert ranged["filter"]["$and"][1] == {"d.year": {"$lt": 2000}}  # numbers only, no null


def test_a_filter_on_another_field_than_the_order_reads_the_filter_and_sorts():
    asked = query_of(
        Scan(Bound(Place("Oslo", S1)), None, False, 6),
        order_by="city",
        where=(Condition("year", "gte", (2000,)),),
    )
    assert asked["hint"] == "by_year"
    assert asked["filter"] == {
        "$and": [
            LIVE,
            {"d.year": {"$gte": 2000}},
            {"$or": [{"d.city": {"$gt": "Oslo"}}, {"d.city": "Oslo", "_seq": {"$gt": S1}}]},
        ]
    }
    assert asked["sort"] == [("d.city", 1), ("_seq", 1)]


def test_counts_use_the_drive_index():
    found = plan(
        Find(where=(Condition("city", "eq", ("Oslo",)), Condition("year", "gt", (1990,)))),
        INDEXES,
        "books",
    )
    assert count_query(found, INDEXES) == {
        "filter": {"$and": [LIVE, {"d.city": "Oslo"}, {"d.year": {"$gt": 1990}}]},
        "hint": "by_city",
    }
    assert count_query(plan(Find(), INDEXES, "books"), INDEXES) == {
        "filter": {"$and": [LIVE]},
        "hint": "live_by_seq",
    }


def test_a_kinds_bounds_become_a_type():
    assert interval_filter(Interval((2,), True, (2.5,), False)) == {"$type": "string"}
    assert interval_filter(Interval((1,), True, (1, 5), False)) == {"$lt": 5}


def test_the_indexes_follow_the_topology():
    from cqrs_flow.stores.mongodb import MongoStore

    async def scenario():
        collection = EmulatedCollection("books")
        await MongoStore(collection, indexes=INDEXES)._make_indexes()
        names = {info["name"] for info in collection.collection.list_indexes()}
        assert {"live_by_seq", "live_by_id", "by_city", "by_year"} <= names
        await MongoStore(collection, indexes=Indexes("id", ("year",)))._make_indexes()
        names = {info["name"] for info in collection.collection.list_indexes()}
        assert "by_city" not in names and "by_year" in names

    run(scenario())


def test_stores_of_one_node_share_a_client_closed_by_the_last():
    from cqrs_flow.stores.mongodb import MongoStore, _SharedClient

    class Client:
        closed = 0

        async def close(self):
            Client.closed += 1

    async def scenario():
        shared = _SharedClient(Client(), users=2)
        first, second = MongoStore(EmulatedCollection("a")), MongoStore(EmulatedCollection("b"))
        first._client = second._client = shared
        await first.close()
        await first.close()  # twice: still one release
        assert Client.closed == 0
        await second.close()
        assert Client.closed == 1

    run(scenario())
