"""The durable store's finds (stores/sqlite_find.py): every statement reads an index, never the
table from end to end; indexes are made at start and follow the topology; the count of
documents is kept in each write's transaction; several finds are one read."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3

import pytest

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.stores import InvalidDocument, SqliteStore
from cqrs_flow.stores.base import Condition, Find
from cqrs_flow.stores.find import Indexes, plan
from cqrs_flow.stores.sqlite_find import expression

INDEXES = Indexes("id", ("city", "year", "title-x"))


def run(coroutine):
    return asyncio.run(coroutine)


async def filled(tmp_path, count=300, indexes=INDEXES):
    store = await SqliteStore.open(tmp_path / "data", "books", indexes=indexes)
    await store.insert_many(
        {
            f"k{i:04d}": {
                "id": f"k{i:04d}",
                "city": f"c{i % 10}",
                "year": 1900 + i % 120,
                "title-x": f"t{i}",
            }
            for i in range(count)
        }
    )
    return store


class Recording:
    """A connection that notes every statement and its parameters."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection, self.statements = connection, []

    def execute(self, text, params=()):
        self.statements.append((text, list(params)))
        return self.connection.execute(text, params)


def statements_of(store, query):
    connection = sqlite3.connect(store.database.path, isolation_level=None)
    recording = Recording(connection)
    store._find_all(recording, [(query, plan(query, store.indexes, store.collection))])
    found = [(t, p) for t, p in recording.statements if t.startswith("SELECT")]
    plans = [
        " / ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + text, params))
        for text, params in found
    ]
    connection.close()
    return plans


def position(store, query, index):
    return run(store.find(query)).positions[index]


def test_filtered_and_ordered_finds_search_an_index(tmp_path):
    store = run(filled(tmp_path))
    oslo = (Condition("city", "eq", ("c3",)),)
    cases = {
        "filtered": Find(where=oslo, first=20, total=True),
        "filtered, after a position": Find(
            where=oslo, first=20, after=position(store, Find(where=oslo, first=25), -1)
        ),
        "ordered": Find(order_by="year", first=20),
        "ordered, after a position": Find(
            order_by="year", first=20, after=position(store, Find(order_by="year", first=99), -1)
        ),
        "ordered, descending, before a position": Find(
            order_by="year",
            descending=True,
            last=5,
            before=position(store, Find(order_by="year", descending=True, first=40), -1),
        ),
        "in, insertion order": Find(where=(Condition("city", "in", ("c1", "c2")),), first=5),
        "prefix on a quoted name": Find(where=(Condition("title-x", "prefix", ("t1",)),), first=5),
        "by key": Find(order_by="id", first=5, after=position(store, Find(order_by="id"), 50)),
    }
    for name, query in cases.items():
        plans = statements_of(store, query)
        assert plans, name
        for text in plans:
            assert "USING" in text and "INDEX" in text, (name, text)  # never SCAN docs_books
            if name != "prefix on a quoted name":  # a range: sorted by insertion order
                assert "TEMP B-TREE" not in text, (name, text)  # the index gives the order
    searched = statements_of(store, cases["filtered, after a position"])[0]
    assert searched.startswith("SEARCH docs_books USING INDEX docs_books.city (<expr>=? AND seq>?)")
    run(store.close())


def test_an_index_added_later_is_built_at_the_next_start_and_one_removed_is_dropped(
    tmp_path, caplog
):
    store = run(filled(tmp_path, indexes=Indexes("id", ("city",))))
    run(store.close())

    def indexes():
        connection = sqlite3.connect(tmp_path / "data" / "store.db")
        names = {
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'docs_books'"
            )
        }
        connection.close()
        return names

    assert indexes() >= {"docs_books.city", "keys_of_books", "seq_of_books"}
    caplog.set_level(logging.INFO, "cqrs_flow.store")
    store = run(SqliteStore.open(tmp_path / "data", "books", indexes=INDEXES))
    assert "built the index of year, title-x in books" in caplog.text
    page = run(store.find(Find(where=(Condition("year", "eq", (1901,)),), total=True)))
    assert [d["id"] for d in page.documents] == ["k0001", "k0121", "k0241"]
    run(store.close())
    store = run(SqliteStore.open(tmp_path / "data", "books", indexes=Indexes("id", ("year",))))
    run(store.close())
    assert "docs_books.city" not in indexes() and "docs_books.year" in indexes()


def test_the_count_is_kept_in_the_writes_transactions(tmp_path):
    async def scenario():
        store = await filled(tmp_path, 50)
        clock = CommandClock()
        await store.delete_many([f"k{i:04d}" for i in range(10)], clock.next_id())
        await store.delete("k0010")
        await store.insert("k0000", {"id": "k0000"}, clock.next_id())  # over its tombstone
        await store.delete_many(["k0011", "never"], clock.next_id())
        with pytest.raises(InvalidDocument):
            await store.insert("bad", {"id": "bad", "score": math.nan})
        assert (await store.find(Find(first=0, total=True))).total == 39

        def counted(c):
            return c.execute("SELECT count(*) FROM docs_books WHERE seq IS NOT NULL").fetchone()[0]

        assert await store.database.read(counted) == 39
        await store.close()
        connection = sqlite3.connect(tmp_path / "data" / "store.db")  # as an older version left it
        connection.execute("DROP TABLE counts")
        for name in ("in", "out", "change"):
            connection.execute(f'DROP TRIGGER "count_{name}_books"')
        connection.commit()
        connection.close()
        store = await SqliteStore.open(tmp_path / "data", "books", indexes=INDEXES)
        assert (await store.find(Find(first=0, total=True))).total == 39
        await store.close()

    run(scenario())


def test_several_finds_are_one_read(tmp_path, monkeypatch):
    async def scenario():
        store = await filled(tmp_path, 30)
        reads = []
        original = store.database.read

        async def read(work):
            reads.append(work)
            return await original(work)

        monkeypatch.setattr(store.database, "read", read)
        pages = await store.find_many(
            [Find(first=3), Find(order_by="year", last=2), Find(keys=("k0001",), total=True)]
        )
        assert [len(page.documents) for page in pages] == [3, 2, 1]
        assert len(reads) == 1
        await store.close()

    run(scenario())


def test_booleans_and_lists_have_places_of_their_own_in_the_index():
    connection = sqlite3.connect(":memory:")
    indexes = Indexes("id", ("v",))
    values = ['{"v": true}', '{"v": false}', '{"v": 1}', '{"v": [1]}', '{"v": "x"}', "{}"]
    got = [
        connection.execute(
            f"SELECT {expression('v', indexes)} FROM (SELECT ? AS doc)", (doc,)
        ).fetchone()[0]
        for doc in values
    ]
    assert got == [b"\x01", b"\x00", 1, None, "x", None]
