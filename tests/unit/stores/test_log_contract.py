"""One contract for every backend's change log (stores/log.py): each change a store applies is
in the log, once, in order, with the document after it; what retention keeps; and a projection's
writes applied together with its position, once.

Runs over the embedded backend's log (memory_log.py) and the durable one's (sqlite_log.py) and
the MongoDB backend's with its collections emulated (mongodb_log.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.stores.base import DuplicateKey, Find, StaleCommand
from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.log import (
    KEEP_EVERYTHING,
    Ahead,
    Retention,
    SetAside,
    Superseded,
    Trimmed,
    Write,
)

from .log_backends import LOGGED, open_logged


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(params=LOGGED)
def logged(request, tmp_path):
    """An async factory: (stores by collection, log) of the backend under test."""

    async def make(*collections: str, retention: Retention = KEEP_EVERYTHING, **options):
        return await open_logged(request.param, tmp_path, collections, retention, **options)

    return make


async def everything(log, after=0, collections=None):
    batch = await log.read(after, 10_000, collections)
    return batch.changes


def test_every_change_is_logged_once_in_order_across_collections(logged):
    async def scenario():
        (books, authors), log = await logged("books", "authors")
        clock = CommandClock()
        c1, c2, c3, c4 = (clock.next_id() for _ in range(4))
        await books.insert("b1", {"id": "b1", "title": "One"}, c1)
        await authors.insert("a1", {"id": "a1", "name": "Ann"}, c2)
        await books.update("b1", {"title": "Uno"}, c3)
        with pytest.raises(DuplicateKey):
            await books.insert("b1", {"id": "b1"})  # refused: no change
        with pytest.raises(StaleCommand):
            await books.update("b1", {"title": "late"}, c1)  # an older command: no change
        await books.delete("b1", c4)
        changes = await everything(log)
        assert [(c.collection, c.key, c.op, c.command) for c in changes] == [
            ("books", "b1", "insert", c1),
            ("authors", "a1", "insert", c2),
            ("books", "b1", "update", c3),
            ("books", "b1", "delete", c4),
        ]
        positions = [c.position for c in changes]
        assert positions == sorted(set(positions)) and positions[0] >= 1
        assert changes[0].document == {"id": "b1", "title": "One"}
        assert changes[2].document == {"id": "b1", "title": "Uno"}
        assert changes[3].document is None and changes[3].previous == {"id": "b1", "title": "Uno"}
        assert changes[2].previous == {"id": "b1", "title": "One"}  # an update's: before it
        assert changes[0].previous is None and changes[1].previous is None
        assert all(abs(c.at - time.time()) < 60 for c in changes)
        info = await log.info()
        assert (info.first, info.last, info.changes) == (positions[0], positions[-1], 4)
        assert info.bytes > 0
        await close(log, books, authors)

    run(scenario())


def test_bulk_writes_log_each_key_and_a_delete_of_nothing_logs_nothing(logged):
    async def scenario():
        (books,), log = await logged("books")
        await books.insert_many({"b1": {"id": "b1"}, "b2": {"id": "b2"}})
        assert await books.delete_many(["b1", "missing"], CommandClock().next_id()) == 1
        changes = await everything(log)
        assert [(c.key, c.op) for c in changes] == [
            ("b1", "insert"),
            ("b2", "insert"),
            ("b1", "delete"),
        ]
        await close(log, books)

    run(scenario())


def test_last_writer_wins_logs_what_happened_to_the_key(logged):
    """An insert over a live document is an update of the key; an update of a missing one is
    its insert: `op` says what happened to the key, whichever command did it."""

    async def scenario():
        (books,), log = await logged("books", last_writer_wins=True)
        clock = CommandClock()
        await books.update("b1", {"id": "b1", "title": "made"}, clock.next_id())
        await books.insert("b1", {"id": "b1", "title": "replaced"}, clock.next_id())
        await books.delete("b2", clock.next_id())  # nothing there: a tombstone, no change
        assert [(c.key, c.op) for c in await everything(log)] == [
            ("b1", "insert"),
            ("b1", "update"),
        ]
        await close(log, books)

    run(scenario())


def test_a_read_goes_on_from_a_position_and_filters_by_collection(logged):
    async def scenario():
        (books, authors), log = await logged("books", "authors")
        for i in range(5):
            await books.insert(f"b{i}", {"id": f"b{i}"})
            await authors.insert(f"a{i}", {"id": f"a{i}"})
        first = await log.read(0, 4, {"authors"})
        assert [c.key for c in first.changes] == ["a0", "a1"]  # of the 4 changes looked at
        rest = await log.read(first.through, 100, {"authors"})
        assert [c.key for c in rest.changes] == ["a2", "a3", "a4"]
        assert rest.through == (await log.info()).last
        empty = await log.read(rest.through, 100, None)
        assert empty.changes == [] and empty.through == rest.through
        with pytest.raises(Ahead, match="ahead of the change log"):
            await log.read(rest.through + 1, 100, None)
        await close(log, books, authors)

    run(scenario())


def test_a_find_reports_the_position_its_pages_were_read_at(logged):
    async def scenario():
        (books,), log = await logged("books")
        pages, position = await books.find_at([Find()])
        assert (pages[0].documents, position) == ([], 0)
        await books.insert("b1", {"id": "b1"})
        await books.insert("b2", {"id": "b2"})
        pages, position = await books.find_at([Find(), Find(keys=("b1",))])
        assert [d["id"] for d in pages[0].documents] == ["b1", "b2"]
        assert position == (await log.info()).last
        await close(log, books)

    run(scenario())


def test_retention_by_count_keeps_the_newest_and_refuses_a_position_it_dropped(logged):
    async def scenario():
        (books,), log = await logged("books", retention=Retention(changes=3))
        for i in range(10):
            await books.insert(f"b{i}", {"id": f"b{i}"})
        await log.trim()
        info = await log.info()
        assert (info.first, info.last, info.changes) == (info.last - 2, info.last, 3)
        assert [c.key for c in await everything(log, info.first - 1)] == ["b7", "b8", "b9"]
        with pytest.raises(Trimmed, match=f"the oldest change kept is {info.first}"):
            await log.read(info.first - 2, 10, None)
        await close(log, books)

    run(scenario())


def test_retention_by_age_drops_the_older_changes_only(logged):
    async def scenario():
        (books,), log = await logged("books", retention=Retention(age=0.3))
        await books.insert("old", {"id": "old"})
        await asyncio.sleep(0.4)
        await books.insert("new", {"id": "new"})
        assert await log.trim() == 1
        info = await log.info()
        assert [c.key for c in await everything(log, info.first - 1)] == ["new"]
        await asyncio.sleep(0.4)
        await log.trim()
        info = await log.info()  # nothing kept: the next position is named instead
        assert (info.changes, info.last) == (0, 2)
        with pytest.raises(Trimmed, match="no change is kept; the next will be 3"):
            await log.read(1, 10, None)
        assert (await log.read(2, 10, None)).changes == []
        await close(log, books)

    run(scenario())


def test_a_waiting_follower_wakes_when_a_change_is_made(logged):
    async def scenario():
        (books,), log = await logged("books")
        started = time.monotonic()
        await log.wait(0, 0.2)  # nothing comes: it gives up after the timeout
        assert time.monotonic() - started >= 0.15
        waiting = asyncio.create_task(log.wait(0, 10))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await books.insert("b1", {"id": "b1"})
        await asyncio.wait_for(waiting, 5)
        await close(log, books)

    run(scenario())


def test_a_projection_applies_its_writes_and_its_position_together_once(logged):
    async def scenario():
        (books, model), log = await logged("books", "model")
        state = await log.state("p")
        assert (state.live, state.position()) == (0, 0)
        writes = [Write("m1", {"id": "m1", "count": 1}), Write("m2", {"id": "m2", "count": 2})]
        assert await log.apply("p", 0, 5, model, writes, []) is True
        assert await log.apply("p", 0, 5, model, [Write("m1", None)], []) is False  # again
        assert await log.apply("p", 0, 4, model, [Write("m1", None)], []) is False  # older
        assert await model.get("m1") == {"id": "m1", "count": 1}
        aside = SetAside(6, "books", "b1", "insert", None, "ValueError: bad")
        assert await log.apply("p", 0, 7, model, [Write("m1", None)], [aside]) is True
        state = await log.state("p")
        assert (state.position(), state.set_aside) == (7, 1)
        assert [d["id"] for d in await model.list(10)] == ["m2"]
        # the read model's writes are changes of the store like any other
        assert [(c.collection, c.key, c.op) for c in await everything(log)] == [
            ("model", "m1", "insert"),
            ("model", "m2", "insert"),
            ("model", "m1", "delete"),
        ]
        await close(log, books, model)

    run(scenario())


def test_a_replay_builds_a_new_generation_and_switches_to_it(logged):
    async def scenario():
        (model,), log = await logged("model")
        await log.apply("p", 0, 3, model, [Write("m1", {"id": "m1"})], [])
        generation = await log.begin("p")
        assert generation == 1
        fresh = await log.collection("model_g1", Indexes("id"), None)
        assert await fresh.list(10) == []
        await log.apply("p", 1, 2, fresh, [Write("n1", {"id": "n1"})], [])
        state = await log.state("p")
        assert (state.live, state.position(0), state.position(1)) == (0, 3, 2)
        await log.apply("p", 0, 4, model, [Write("m2", {"id": "m2"})], [])  # the live one goes on
        await log.switch("p", 1)
        with pytest.raises(Superseded):
            await log.apply("p", 0, 5, model, [Write("m3", {"id": "m3"})], [])
        state = await log.state("p")
        assert (state.live, state.position()) == (1, 2)
        assert 0 not in state.positions
        assert [d["id"] for d in await fresh.list(10)] == ["n1"]
        await log.drop(model)
        # a replay that did not finish is started over: its generation is fresh again
        assert await log.begin("p") == 2
        await log.apply("p", 2, 9, fresh, [], [])
        assert await log.begin("p") == 2
        assert (await log.state("p")).position(2) == 0
        await close(log, fresh)

    run(scenario())


async def close(log, *stores):
    await log.close()
    for store in stores:
        await store.close()
