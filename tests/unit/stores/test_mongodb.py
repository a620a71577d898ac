"""The MongoDB backend without a server: the filters it builds, its verdicts, its errors, its
start-up, and the topology keys that select it. The behaviour it
shares with every backend is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import mongomock
import pytest

from cqrs_flow.contracts.ordering import CommandClock, supersedes
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.store import open_backends
from cqrs_flow.security.sources import read_source
from cqrs_flow.stores.base import (
    DuplicateKey,
    InvalidDocument,
    NotFound,
    StaleCommand,
    StoreError,
)
from cqrs_flow.stores.mongodb import (
    KeyState,
    MongoStore,
    applicable,
    delete_op,
    driver_errors,
    insert_op,
    redact,
    update_op,
    verdict,
)
from cqrs_flow.topology.model import SecretSource, Topology

from .mongo_emulation import EmulatedCollection

pymongo = pytest.importorskip("pymongo", reason="the mongodb extra is not installed")

# The driver's own modules, once the skip above has had its say.
from bson.errors import InvalidDocument as BSONInvalidDocument  # noqa: E402
from pymongo.errors import ServerSelectionTimeoutError, WriteError  # noqa: E402


def run(coroutine):
    return asyncio.run(coroutine)


# -- the filters --------------------------------------------------------------------------------


def test_the_command_filter_matches_exactly_the_keys_the_command_supersedes():
    clock = CommandClock()
    older, newer = clock.next_id(), clock.next_id()
    ids = [
        None,
        older,
        newer,
        older.upper(),
        older + "\n",
        older + "0",
        older[:-1],
        "client-a",
        "client-b",
        "",
    ]
    collection = mongomock.MongoClient().db.keys
    for i, last in enumerate(ids):
        collection.insert_one({"_id": i} if last is None else {"_id": i, "_cmd": last})
    for command in [c for c in ids if c]:
        matched = {d["_id"] for d in collection.find(applicable(command), {"_id": 1})}
        expected = {i for i, last in enumerate(ids) if supersedes(command, last or None)}
        assert matched == expected, command


def test_each_write_is_one_filter_on_the_key_and_its_state():
    where, update = insert_op("k", {"id": "k", "_id": "x"}, "seq-1", "client-a")
    assert where == {"_id": "k", "_seq": {"$exists": False}, "_cmd": {"$ne": "client-a"}}
    assert update == {"$set": {"d": {"id": "k"}, "_seq": "seq-1", "_cmd": "client-a"}}
    where, update = update_op("k", {"name": "Ann", "address": {"city": "Oslo"}}, None)
    assert where == {"_id": "k", "_seq": {"$exists": True}}
    assert update == {"$set": {"d.name": "Ann", "d.address": {"city": "Oslo"}}}
    command = CommandClock().next_id()
    where, update = delete_op("k", command)
    assert where["_id"] == "k" and where["_seq"] == {"$exists": True}
    assert [list(clause["_cmd"]) for clause in where["$or"]] == [["$lt"], ["$not"]]
    assert update == {"$unset": {"d": "", "_seq": ""}, "$set": {"_cmd": command}}
    assert "_seq" not in delete_op("k", command, anything=True)[0]


def test_verdicts_follow_the_embedded_backend():
    clock = CommandClock()
    old, new = clock.next_id(), clock.next_id()
    live, tombstone, nothing = KeyState(True, old), KeyState(False, old), KeyState(False, None)
    assert verdict("insert", live, new) == "duplicate"
    assert verdict("insert", live, old) == "stale"  # stale before duplicate, as MemoryStore
    assert verdict("insert", tombstone, new) == "apply"
    assert verdict("update", nothing, new) == "not found"
    assert verdict("update", tombstone, old) == "stale"
    assert verdict("delete", nothing, None) == "not found"
    assert verdict("insert", live, new, last_writer_wins=True) == "apply"
    assert verdict("insert", live, None, last_writer_wins=True) == "duplicate"
    assert verdict("update", nothing, new, last_writer_wins=True) == "apply"
    assert verdict("delete", tombstone, old, last_writer_wins=True) == "stale"
    assert KeyState.of(None) == nothing
    assert KeyState.of({"_id": "k", "_cmd": old}) == tombstone
    assert KeyState.of({"_id": "k", "_seq": "s", "_cmd": old}) == live


# -- one operation per key ------------------------------------------------------------------------


def test_keyed_writes_are_one_operation_each():
    async def scenario():
        collection = EmulatedCollection()
        store, clock = MongoStore(collection), CommandClock()
        for call, expected in [
            (store.insert("a", {"id": "a"}, clock.next_id()), ["find_one_and_update"]),
            (store.update("a", {"name": "Ann"}, clock.next_id()), ["find_one_and_update"]),
            (store.get("a"), ["find_one"]),
            (store.list(10), ["find"]),
            (store.delete("a", clock.next_id()), ["update_one"]),
            (
                store.insert("a", {"id": "a"}, clock.next_id()),
                ["find_one_and_update"],
            ),  # over its tombstone
            (store.delete_many(["a", "b"], clock.next_id()), ["find_one_and_update"] * 2),
        ]:
            collection.calls.clear()
            await call
            assert collection.calls == expected
        collection.calls.clear()
        with pytest.raises(NotFound):  # a refused write: one more read tells why
            await store.update("nobody", {"name": "x"}, clock.next_id())
        assert collection.calls == ["find_one_and_update", "find_one"]

    run(scenario())


class RacingCollection(EmulatedCollection):
    """Another store process inserts `key` right after this one's write missed it."""

    def __init__(self, key: str, command: str) -> None:
        super().__init__()
        self.race = (key, command)

    async def find_one(self, filter, projection=None):
        if self.race and projection == {"_cmd": 1, "_seq": 1}:
            key, command = self.race
            self.race = None
            self.collection.insert_one(
                {"_id": key, "d": {"id": key, "by": "other"}, "_seq": "0", "_cmd": command}
            )
        return await super().find_one(filter, projection)


def test_a_write_the_key_changed_under_is_tried_again():
    async def scenario():
        clock = CommandClock()
        other, mine = clock.next_id(), clock.next_id()
        store = MongoStore(RacingCollection("k", other))
        assert await store.update("k", {"name": "mine"}, mine) == {
            "id": "k",
            "by": "other",
            "name": "mine",
        }
        store = MongoStore(RacingCollection("k", mine))  # the other process's command is newer
        with pytest.raises(StaleCommand):
            await store.update("k", {"name": "older"}, other)

    run(scenario())


def two_store_processes():
    first = EmulatedCollection(interleave=True)
    return MongoStore(first), MongoStore(EmulatedCollection(shared=first, interleave=True))


def test_two_store_processes_apply_each_command_once_and_in_order():
    async def scenario():
        one, two = two_store_processes()
        clock = CommandClock()
        keys = [f"k{i}" for i in range(30)]
        inserts = {key: clock.next_id() for key in keys}

        async def answer(call):
            try:
                await call
                return "ok"
            except StaleCommand:
                return "stale"
            except DuplicateKey:
                return "duplicate"

        # the same insert delivered to both processes at once: applied by exactly one of them
        for key in keys:
            results = await asyncio.gather(
                answer(one.insert(key, {"id": key}, inserts[key])),
                answer(two.insert(key, {"id": key}, inserts[key])),
            )
            assert sorted(results) == ["ok", "stale"], (key, results)
        # an older and a newer update at once, in either order: the newer one's value stays
        for i, key in enumerate(keys):
            older, newer = clock.next_id(), clock.next_id()
            calls = [one.update(key, {"v": "older"}, older), two.update(key, {"v": "newer"}, newer)]
            await asyncio.gather(*(answer(call) for call in (calls if i % 2 else calls[::-1])))
            assert (await one.get(key))["v"] == "newer"
        # a delete and a re-delivered older insert at once: the key stays deleted
        for key in keys:
            delete = clock.next_id()
            results = await asyncio.gather(
                answer(two.delete(key, delete)), answer(one.insert(key, {"id": key}, inserts[key]))
            )
            assert results == ["ok", "stale"]
            with pytest.raises(NotFound):
                await one.get(key)
        # new keys inserted through both processes at once, without commands: one of each wins
        results = await asyncio.gather(
            *(
                answer(store.insert("new", {"id": "new", "by": n}))
                for n, store in enumerate((one, two, one, two))
            )
        )
        assert sorted(results) == ["duplicate"] * 3 + ["ok"]

    run(scenario())


def test_fields_named_like_the_bookkeeping_are_plain_fields():
    async def scenario():
        store, clock = MongoStore(EmulatedCollection()), CommandClock()
        first = clock.next_id()
        await store.insert("k", {"id": "k", "_cmd": "mine", "_seq": 0, "d": "x"}, first)
        assert await store.get("k") == {"id": "k", "_cmd": "mine", "_seq": 0, "d": "x"}
        with pytest.raises(StaleCommand):
            await store.update("k", {"_cmd": "again"}, first)

    run(scenario())


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raised, expected, text",
    [
        (
            BSONInvalidDocument("cannot encode object: <object>"),
            InvalidDocument,
            "cannot store the document",
        ),
        (
            OverflowError("MongoDB can only handle up to 8-byte ints"),
            InvalidDocument,
            "8-byte ints",
        ),
        (
            WriteError("too large", 10334, {"errmsg": "BSONObj size: 17000000 is invalid"}),
            InvalidDocument,
            "refused to insert 'k' \\(code 10334\\): BSONObj size",
        ),
        (
            WriteError("shutting down", 11600, {"errmsg": "interrupted at shutdown"}),
            StoreError,
            "could not insert 'k' now",
        ),
        (
            ServerSelectionTimeoutError("127.0.0.1:27017: connection refused"),
            StoreError,
            "could not insert 'k': ServerSelectionTimeoutError",
        ),
    ],
)
def test_driver_errors_become_store_errors(raised, expected, text):
    with pytest.raises(expected, match=text) as caught:
        with driver_errors("insert 'k'"):
            raise raised
    assert expected is InvalidDocument or not isinstance(caught.value, InvalidDocument)


def test_a_url_is_shown_without_its_password():
    assert (
        redact("mongodb://app:s3cret@db1:27017,db2/?replicaSet=rs0")
        == "mongodb://***@db1:27017,db2/?replicaSet=rs0"
    )
    assert (
        redact("mongodb+srv://app:s3cret@cluster.example.net/")
        == "mongodb+srv://***@cluster.example.net/"
    )
    assert redact("mongodb://127.0.0.1:27017") == "mongodb://127.0.0.1:27017"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_opening_an_unreachable_or_unusable_mongodb_fails_clearly():
    async def scenario():
        url = f"mongodb://app:s3cret@127.0.0.1:{free_port()}/"
        with pytest.raises(
            StoreError, match=r"could not be reached at mongodb://\*\*\*@127.0.0.1"
        ) as caught:
            await MongoStore.open(url, "cqrs_flow", "contacts", server_selection_ms=200)
        assert "s3cret" not in str(caught.value)
        with pytest.raises(StoreError, match="unacknowledged writes \\(w=0\\)"):
            await MongoStore.open(url + "?w=0", "cqrs_flow", "contacts")
        with pytest.raises(
            StoreError, match=r"not one pymongo accepts.*expected mongodb://"
        ) as caught:
            await MongoStore.open("http://app:s3cret@db/", "cqrs_flow", "contacts")
        assert "s3cret" not in str(caught.value)

    run(scenario())


# -- the topology keys, the URL's source and the store node -----------------------------------

MONGO_STORE = (
    "    document: contacts.Contact",
    "    document: contacts.Contact\n    backend: mongodb\n"
    "    mongodb: {url: {env: CONTACTS_MONGODB_URL}, database: contacts}",
)


def test_a_store_selects_the_mongodb_backend(edit, parse):
    store = parse(edit(MONGO_STORE)).nodes["store"]
    assert (store.backend, store.mongodb.url, store.mongodb.database) == (
        "mongodb",
        SecretSource(env="CONTACTS_MONGODB_URL"),
        "contacts",
    )
    defaults = parse(
        edit(
            (
                "    document: contacts.Contact",
                "    document: contacts.Contact\n    backend: mongodb\n"
                "    mongodb: {url: {file: secrets/url}}",
            )
        )
    ).nodes["store"]
    assert (defaults.mongodb.url.file.as_posix(), defaults.mongodb.database) == (
        "secrets/url",
        "cqrs_flow",
    )
    assert parse(edit()).nodes["store"].backend == "embedded"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            "mongodb: {url: 'mongodb://app:s3cret@db:27017/'}",
            r"expected \{env: NAME\} or \{file: path\}, got a value written in clear.*"
            r"write \{env: MONGODB_URL\}",
        ),
        ("mongodb: {url: {env: MONGODB_URL, file: url.txt}}", "exactly one of 'env' or 'file'"),
        ("mongodb: {url: {envv: MONGODB_URL}}", "did you mean 'env'"),
        ("mongodb: {url: {env: 'no spaces'}}", "the name of an environment variable"),
        ("mongodb: {url: {file: ../outside}}", "leads out of the project directory"),
        ("mongodb: {database: contacts}", "missing required key 'url'"),
        ("data: state/store", "backend: mongodb needs a 'mongodb' section"),
    ],
)
def test_mongodb_settings_that_do_not_load(edit, problems_of, change, message):
    text = edit(
        (
            "    document: contacts.Contact",
            f"    document: contacts.Contact\n    backend: mongodb\n    {change}",
        )
    )
    problems = problems_of(text)
    assert any(re.search(message, p.message) for p in problems), problems
    assert not any("s3cret" in p.message for p in problems)


def test_data_and_mongodb_exclude_each_other(edit, problems_of):
    both = edit(
        MONGO_STORE, ("    backend: mongodb\n", "    backend: mongodb\n    data: state/store\n")
    )
    assert [p.message for p in problems_of(both)] == [
        "'data' is the embedded backend's database directory; with backend: mongodb the documents "
        "are "
        "kept by MongoDB: remove 'data'"
    ]
    settings_only = edit(MONGO_STORE, ("    backend: mongodb\n", ""))
    assert "used only with backend: mongodb" in problems_of(settings_only)[0].message


def test_a_secret_source_is_read_when_the_node_starts(tmp_path):
    topology = Topology("t", tmp_path / "topology.yaml", (), {}, {})  # files: in tmp_path
    assert (
        read_source(SecretSource(env="URL"), topology, "k", env={"URL": " mongodb://db \n"})
        == "mongodb://db"
    )
    with pytest.raises(NodeError, match="environment variable URL, which is not set or empty"):
        read_source(SecretSource(env="URL"), topology, "k", env={})
    (tmp_path / "url").write_text("mongodb://db:27017/\n")
    (tmp_path / "url").chmod(0o600)
    assert read_source(SecretSource(file=Path("url")), topology, "k") == "mongodb://db:27017/"
    with pytest.raises(NodeError, match=r"cannot read k from the file missing.*chmod 600"):
        read_source(SecretSource(file="missing"), topology, "k")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "empty").chmod(0o600)
    with pytest.raises(NodeError, match="is empty"):
        read_source(SecretSource(file="empty"), topology, "k")


def test_a_store_node_without_its_mongodb_does_not_start(edit, parse, monkeypatch):
    topology = parse(edit(MONGO_STORE))
    node = topology.nodes["store"]
    monkeypatch.delenv("CONTACTS_MONGODB_URL", raising=False)
    with pytest.raises(
        NodeError, match=re.escape("nodes.store.mongodb.url is read from the environment variable")
    ):
        run(open_backends(topology, node))
    monkeypatch.setenv(
        "CONTACTS_MONGODB_URL", f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=200"
    )
    with pytest.raises(
        NodeError,
        match=re.escape("store store: MongoDB could not be reached at mongodb://127.0.0.1"),
    ):
        run(open_backends(topology, node))


def test_a_collection_with_a_collation_of_its_own_is_refused():
    from cqrs_flow.stores.mongodb import check_collation

    check_collation(None, "db.contacts")  # not there yet: created with the simple collation
    check_collation({"name": "contacts", "options": {}}, "db.contacts")
    check_collation(
        {"name": "contacts", "options": {"collation": {"locale": "simple"}}}, "db.contacts"
    )
    with pytest.raises(StoreError, match=r"db\.contacts has the default collation 'en'.*simple"):
        check_collation(
            {"name": "contacts", "options": {"collation": {"locale": "en", "strength": 2}}},
            "db.contacts",
        )
