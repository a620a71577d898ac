"""One contract for every store backend: the same calls get the same answers.

Runs over the embedded backend (in memory), the durable one (SQLite, on disk), the MongoDB
backend's code with mongomock answering its queries (tests/unit/stores/mongo_emulation.py), and a
real MongoDB when MONGODB_URL is set (each test in a database of its own, dropped afterwards):
the `make_store` fixture (conftest.py). Finds have a contract of their own: test_find_contract.py.

    MONGODB_URL=mongodb://127.0.0.1:27017 pytest tests/unit/stores/test_contract.py
"""

from __future__ import annotations

import asyncio
import random

import mongomock
import pytest

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.stores import DuplicateKey, MemoryStore, NotFound
from cqrs_flow.stores.base import StaleCommand


def run(coroutine):
    return asyncio.run(coroutine)


class ReferenceStore:
    """The store as it was before the index: every operation through mongomock's public calls."""

    def __init__(self) -> None:
        self.c = mongomock.MongoClient().db.reference

    async def insert(self, key, document):
        try:
            self.c.insert_one({**document, "_id": key})
        except mongomock.DuplicateKeyError:
            raise DuplicateKey(key) from None

    async def update(self, key, fields):
        found = self.c.find_one_and_update({"_id": key}, {"$set": fields}, return_document=True)
        if found is None:
            raise NotFound(key)
        found.pop("_id")
        return found

    async def delete(self, key):
        if self.c.delete_one({"_id": key}).deleted_count == 0:
            raise NotFound(key)

    async def insert_many(self, documents):
        taken = [d["_id"] for d in self.c.find({"_id": {"$in": list(documents)}}, {"_id": 1})]
        if taken:
            raise DuplicateKey(", ".join(taken))
        if documents:
            self.c.insert_many([{**doc, "_id": key} for key, doc in documents.items()])
        return len(documents)

    async def delete_many(self, keys):
        return self.c.delete_many({"_id": {"$in": list(keys)}}).deleted_count

    async def get(self, key):
        found = self.c.find_one({"_id": key})
        if found is None:
            raise NotFound(key)
        found.pop("_id")
        return found

    async def list(self, count):
        return (
            [{k: v for k, v in d.items() if k != "_id"} for d in self.c.find().limit(count)]
            if count > 0
            else []
        )


async def outcome(call):
    try:
        return ("ok", await call)
    except (NotFound, DuplicateKey) as exc:
        # insert_many names the taken keys in the order of the request (mongomock: in the
        # collection's order)
        return (type(exc).__name__, sorted(str(exc).split(", ")))


def random_operation(rng: random.Random, step: int):

    def key() -> str:
        return f"k{rng.randrange(12)}"  # few keys, so that they collide

    def doc(k: str) -> dict:
        return {
            "id": k,
            "name": f"n{step}",
            "tags": [step, {"deep": step}],
            "address": {"city": "Oslo"},
        }

    op = rng.choice(
        ["insert", "insert", "update", "delete", "insert_many", "delete_many", "get", "list"]
    )
    if op == "insert":
        k = key()
        return op, (k, doc(k))
    if op == "update":
        return op, (key(), {"name": f"u{step}", "address": {"city": f"c{step}"}})
    if op in ("delete", "get"):
        return op, (key(),)
    if op == "insert_many":
        keys = list(dict.fromkeys(key() for _ in range(rng.randrange(4))))
        return op, ({k: doc(k) for k in keys},)
    if op == "delete_many":
        return op, ([key() for _ in range(rng.randrange(4))],)
    return op, (rng.randrange(-1, 15),)


# -- the documents ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_every_operation_answers_as_mongomock_did(make_store, seed):
    async def scenario():
        store, reference, rng = await make_store(), ReferenceStore(), random.Random(seed)
        for step in range(250):
            op, args = random_operation(rng, step)
            mine = await outcome(getattr(store, op)(*args))
            theirs = await outcome(getattr(reference, op)(*args))
            assert mine == theirs, (step, op, args)
            assert await store.list(100) == await reference.list(100), (step, op, args)
        if isinstance(store, MemoryStore):  # its mongomock collection holds what it serves
            assert list(store.collection.find()) == list(reference.c.find())
        await store.close()

    run(scenario())


def test_list_is_oldest_first_and_an_update_keeps_the_place(make_store):
    async def scenario():
        store = await make_store()
        for key in "abcd":
            await store.insert(key, {"id": key})
        await store.update("b", {"name": "changed"})
        await store.delete("a")
        await store.insert("a", {"id": "a"})
        assert [d["id"] for d in await store.list(10)] == ["b", "c", "d", "a"]
        assert [d["id"] for d in await store.list(2)] == ["b", "c"]
        assert await store.list(0) == []
        await store.close()

    run(scenario())


def test_documents_go_in_and_out_as_copies(make_store):
    async def scenario():
        store = await make_store()
        given = {"id": "a", "address": {"city": "Oslo"}, "tags": ["x"]}
        await store.insert("a", given)
        given["address"]["city"] = "changed by the caller"
        given["tags"].append("y")
        got = await store.get("a")
        assert got == {"id": "a", "address": {"city": "Oslo"}, "tags": ["x"]}
        got["address"]["city"] = "changed again"
        (await store.list(1))[0]["tags"].append("z")
        updated = await store.update("a", {"name": "Ann"})
        updated["address"]["city"] = "and again"
        assert await store.get("a") == {
            "id": "a",
            "address": {"city": "Oslo"},
            "tags": ["x"],
            "name": "Ann",
        }
        await store.close()

    run(scenario())


def test_insert_many_stores_none_when_a_key_is_taken(make_store):
    async def scenario():
        store = await make_store()
        await store.insert("b", {"id": "b"})
        with pytest.raises(DuplicateKey, match="b"):
            await store.insert_many({"a": {"id": "a"}, "b": {"id": "b"}})
        assert [d["id"] for d in await store.list(10)] == ["b"]
        assert await store.delete_many(["b", "b", "nobody"]) == 1
        assert await store.insert_many({"x": {"id": "x"}, "y": {"id": "y"}}) == 2
        assert [d["id"] for d in await store.list(10)] == ["x", "y"]
        await store.close()

    run(scenario())


# -- the command rule ------------------------------------------------------------------------------


async def stale(call) -> str:
    """The last command a StaleCommand names (fails if the call is not refused as stale)."""
    with pytest.raises(StaleCommand) as refused:
        await call
    return refused.value.last


def test_a_command_delivered_again_is_not_applied_again(make_store):
    async def scenario():
        store, clock = await make_store(), CommandClock()
        first, second = clock.next_id(), clock.next_id()
        await store.insert("c1", {"id": "c1", "name": "Ann"}, first)
        assert await stale(store.insert("c1", {"id": "c1", "name": "Ann"}, first)) == first
        assert await store.update("c1", {"name": "Bea"}, second) == {"id": "c1", "name": "Bea"}
        assert await stale(store.update("c1", {"name": "Bea again"}, second)) == second
        assert await stale(store.delete("c1", second)) == second
        assert await store.get("c1") == {"id": "c1", "name": "Bea"}
        await store.close()

    run(scenario())


def test_an_older_command_does_not_undo_a_newer_one(make_store):
    async def scenario():
        store, clock = await make_store(), CommandClock()
        add, older, newer = clock.next_id(), clock.next_id(), clock.next_id()
        await store.insert("c1", {"id": "c1", "name": "Ann"}, add)
        await store.update("c1", {"name": "Newer"}, newer)
        assert await stale(store.update("c1", {"name": "Older"}, older)) == newer
        assert await stale(store.delete("c1", older)) == newer
        assert (await store.get("c1"))["name"] == "Newer"
        await store.close()

    run(scenario())


def test_a_deleted_key_keeps_its_last_command(make_store):
    async def scenario():
        store, clock = await make_store(), CommandClock()
        insert, delete, later = clock.next_id(), clock.next_id(), clock.next_id()
        await store.insert("c1", {"id": "c1"}, insert)
        await store.delete("c1", delete)
        assert await stale(store.insert("c1", {"id": "c1", "again": True}, insert)) == delete
        with pytest.raises(NotFound):
            await store.get("c1")
        assert await store.list(10) == []  # a tombstone is no document
        with pytest.raises(NotFound):  # a newer command finds nothing to update or delete
            await store.update("c1", {"name": "x"}, later)
        with pytest.raises(NotFound):
            await store.delete("c1", later)
        await store.insert(
            "c1", {"id": "c1", "back": True}, clock.next_id()
        )  # a newer insert brings it back
        assert await store.list(10) == [{"id": "c1", "back": True}]
        await store.close()

    run(scenario())


def test_a_stale_command_is_stale_before_anything_else(make_store):
    async def scenario():
        store, clock = await make_store(), CommandClock()
        older, newer = clock.next_id(), clock.next_id()
        await store.insert("c1", {"id": "c1"}, newer)
        assert await stale(store.insert("c1", {"id": "c1"}, older)) == newer  # not DuplicateKey
        await store.delete("c1", clock.next_id())
        last = clock.next_id()
        assert await store.delete_many(["gone"], last) == 0  # a tombstone for a key never stored
        assert await stale(store.update("gone", {"name": "x"}, newer)) == last  # not NotFound
        assert await stale(store.delete("gone", last)) == last
        await store.close()

    run(scenario())


def test_writes_without_a_command_keep_the_keys_last_command(make_store):
    async def scenario():
        store, clock = await make_store(), CommandClock()
        first = clock.next_id()
        await store.insert("c1", {"id": "c1"}, first)
        await store.update("c1", {"name": "plain"})
        await store.delete("c1")
        await store.insert("c1", {"id": "c1", "plain": True})
        assert await stale(store.update("c1", {"name": "old"}, first)) == first
        await store.insert("p", {"id": "p"})  # never a command: any command applies
        await store.update("p", {"name": "x"}, "client-chosen")
        assert await store.get("p") == {"id": "p", "name": "x"}
        await store.close()

    run(scenario())


def test_commands_with_ids_of_their_own_apply_once_each(make_store):
    async def scenario():
        store, clock = await make_store(), CommandClock()
        ordered = clock.next_id()
        await store.insert("c1", {"id": "c1"}, "client-b")
        await store.update("c1", {"name": "A"}, "client-a")  # no order between the two: applies
        assert await stale(store.update("c1", {"name": "A again"}, "client-a")) == "client-a"
        await store.update("c1", {"name": "V7"}, ordered)  # an ordered id after one without order
        await store.update("c1", {"name": "B"}, "client-b")  # and the reverse: both apply
        assert await stale(store.update("c1", {"name": "B"}, "client-b")) == "client-b"
        upper = ordered.upper()  # not canonical: no order
        await store.update("c1", {"name": "upper"}, upper)
        await store.update("c1", {"name": "back"}, ordered)
        assert (await store.get("c1"))["name"] == "back"
        await store.close()

    run(scenario())


def test_bulk_commands_leave_out_the_keys_they_must_not_touch(make_store):
    async def scenario():
        store, clock = await make_store(), CommandClock()
        old, new, newest = clock.next_id(), clock.next_id(), clock.next_id()
        await store.insert("c1", {"id": "c1"}, new)
        await store.insert("plain", {"id": "plain"})
        assert (
            await store.delete_many(["c1", "plain", "plain", "never"], old) == 1
        )  # c1 holds a newer one
        assert [d["id"] for d in await store.list(10)] == ["c1"]
        assert await stale(store.insert("plain", {"id": "plain"}, old)) == old  # tombstones now
        assert await stale(store.insert("never", {"id": "never"}, old)) == old
        # insert_many: keys the command does not supersede are left out, the others stored
        assert (
            await store.insert_many(
                {"c1": {"id": "c1"}, "plain": {"id": "plain"}, "fresh": {"id": "fresh"}}, new
            )
            == 2
        )
        assert [d["id"] for d in await store.list(10)] == ["c1", "plain", "fresh"]
        assert (
            await store.insert_many({"plain": {"id": "plain"}, "fresh": {"id": "fresh"}}, new) == 0
        )  # again
        with pytest.raises(DuplicateKey, match="fresh"):
            await store.insert_many({"fresh": {"id": "fresh"}, "other": {"id": "other"}}, newest)
        assert [d["id"] for d in await store.list(10)] == ["c1", "plain", "fresh"]
        assert await store.delete_many(["c1", "fresh"], newest) == 2
        assert await store.delete_many(["c1", "fresh"], newest) == 0  # delivered again
        await store.close()

    run(scenario())


@pytest.mark.parametrize("seed", range(3))
def test_commands_in_any_order_answer_as_the_embedded_backend(make_store, seed):
    """A random walk of writes with commands (new ones, redelivered ones, older ones, ids of a
    client's own), answered as MemoryStore answers them."""

    async def scenario():
        store, reference, rng = await make_store(), MemoryStore("reference"), random.Random(seed)
        clock, issued = CommandClock(), []

        def command():
            roll = rng.random()
            if roll < 0.1:
                return None
            if roll < 0.2:
                return f"client-{rng.randrange(5)}"
            if roll < 0.45 and issued:
                return rng.choice(issued)  # redelivered, or older than the key's last
            issued.append(clock.next_id())
            return issued[-1]

        async def answer(call):
            try:
                return ("ok", await call)
            except StaleCommand as exc:
                return ("stale", exc.key, exc.last)
            except (NotFound, DuplicateKey) as exc:
                return (type(exc).__name__, str(exc))

        for step in range(300):
            op, args = random_operation(rng, step)
            if op in ("get", "list"):
                continue
            args = (*args, command())
            mine = await answer(getattr(store, op)(*args))
            theirs = await answer(getattr(reference, op)(*args))
            assert mine == theirs, (step, op, args)
            assert await store.list(100) == await reference.list(100), (step, op, args)
        await store.close()

    run(scenario())


# -- last writer wins -----------------------------------------------------------------------------


def test_last_writer_wins_makes_every_write_an_assignment(make_store):
    """With the flag, a write with a newer command applies whatever the key holds: an update of a
    missing document creates it, a delete of a missing one succeeds (and leaves a tombstone), an
    insert over a live document replaces it (in its place). Stale commands are still refused,
    and an insert without a command over a live document is still a duplicate."""

    async def scenario():
        store, clock = await make_store(last_writer_wins=True), CommandClock()
        c = [clock.next_id() for _ in range(8)]
        assert await store.update("a", {"id": "a", "name": "made"}, c[1]) == {
            "id": "a",
            "name": "made",
        }
        assert await store.get("a") == {"id": "a", "name": "made"}
        await store.delete("ghost", c[2])  # nothing there: succeeds, and remembers the command
        assert await stale(store.insert("ghost", {"id": "ghost"}, c[0])) == c[2]
        await store.insert("b", {"id": "b"}, c[3])
        await store.insert("a", {"id": "a", "name": "replaced"}, c[4])  # over a live document
        assert await store.list(10) == [{"id": "a", "name": "replaced"}, {"id": "b"}]
        assert await stale(store.insert("a", {"id": "a", "name": "older"}, c[0])) == c[4]
        with pytest.raises(DuplicateKey):
            await store.insert("b", {"id": "b"})  # no command: nothing says which is newer
        assert await store.insert_many({"b": {"id": "b", "n": 2}, "c": {"id": "c"}}, c[5]) == 2
        assert await store.get("b") == {"id": "b", "n": 2}
        assert await store.delete_many(["b", "nobody"], c[6]) == 1
        await store.delete("b", c[7])  # a tombstone already: fine
        with pytest.raises(NotFound):
            await store.delete("b")  # no command: the default rules
        with pytest.raises(NotFound):
            await store.update("nobody", {"id": "nobody", "name": "x"})
        assert [d["id"] for d in await store.list(10)] == ["a", "c"]
        await store.close()

    run(scenario())
