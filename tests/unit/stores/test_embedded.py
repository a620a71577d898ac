"""The embedded backend's own properties: the flat in-memory store (no scans), its finds' indexes
(references, not copies, kept in step with every write), and the `data` key that makes a store
durable (tests/unit/stores/test_sqlite.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import mongomock
import pytest

from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.nodes.store import open_backends
from cqrs_flow.stores import DuplicateKey, MemoryStore, SqliteStore
from cqrs_flow.stores.base import Condition, Find
from cqrs_flow.stores.find import Indexes
from cqrs_flow.topology.loader import parse_topology


def run(coroutine):
    return asyncio.run(coroutine)


def test_keyed_operations_list_and_find_never_scan_the_collection(monkeypatch):
    store = MemoryStore("contacts", indexes=Indexes("id", ("name",)))
    assert store._mirror is not None, "this mongomock's internals changed: writes would scan"

    def scan(*args, **kwargs):
        raise AssertionError("a scan of the whole collection")

    monkeypatch.setattr(mongomock.collection.Collection, "_iter_documents", scan)

    async def scenario():
        await store.insert("a", {"id": "a", "name": "Ann"})
        await store.insert_many({"b": {"id": "b"}, "c": {"id": "c"}})
        assert (await store.update("a", {"name": "Bea"}))["name"] == "Bea"
        assert (await store.get("a"))["name"] == "Bea"
        await store.delete("b")
        assert await store.delete_many(["c", "zz"]) == 1
        assert [d["id"] for d in await store.list(10)] == ["a"]
        with pytest.raises(DuplicateKey):
            await store.insert("a", {"id": "a"})
        found = await store.find(Find(where=(Condition("name", "prefix", ("B",)),), total=True))
        assert (found.documents, found.total) == ([{"id": "a", "name": "Bea"}], 1)

    run(scenario())


def test_the_finds_indexes_hold_the_stored_values_and_follow_every_write():
    async def scenario():
        store = MemoryStore("contacts", True, Indexes("id", ("city", "year")))
        clock = CommandClock()
        for i in range(200):
            await store.insert(f"k{i}", {"id": f"k{i}", "city": f"city {i % 7}", "year": i % 9})
        for i in range(0, 200, 3):
            await store.update(f"k{i}", {"city": f"moved {i}"}, clock.next_id())
        await store.delete_many([f"k{i}" for i in range(0, 200, 4)], clock.next_id())
        await store.insert("k0", {"id": "k0", "year": 1}, clock.next_id())  # back, no city
        await store.insert("k1", {"id": "k1", "city": "again"}, clock.next_id())  # replaced
        await store.insert("k2", {"id": "k2", "city": "city 2", "year": 2}, clock.next_id())
        live = store._documents
        for name, entries in store._by_field.items():
            assert len(entries) == len(live), name  # one entry per live document, no more
            for _kind, value, seq, key in entries:
                assert store._seqs[key] == seq
                if name != "id" and value is not None:
                    assert value is live[key][name]  # the stored value itself: no copy
        assert list(store._by_seq.values()) == list(live)  # insertion order, as `list` has it
        moved = await store.find(Find(where=(Condition("city", "prefix", ("moved",)),), total=True))
        assert moved.total == sum(1 for d in live.values() if d.get("city", "").startswith("mo"))

    run(scenario())


# -- the topology key ------------------------------------------------------------------------------


def test_the_store_data_key(shipped):
    text = shipped.source.read_text()
    assert shipped.nodes["store"].data is None
    durable_text = text.replace(
        "    document: contacts.Contact", "    document: contacts.Contact\n    data: state/store", 1
    )
    assert durable_text != text
    topology = parse_topology(durable_text, shipped.source)
    assert topology.nodes["store"].data == Path("state/store")


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
def test_a_store_node_gives_each_backend_its_entitys_key_and_indexes(
    edit, parse, tmp_path, durable
):
    text = edit(
        (
            "    document: contacts.Contact",
            "    document: contacts.Contact\n    indexes: [name]" + ("\n    data: state" * durable),
        )
    )
    topology = dataclasses.replace(parse(text), source=tmp_path / "topology.yaml")
    node = topology.nodes["store"]
    (entity,) = topology.entities_of(node)
    backend = run(open_backends(topology, node))[entity.name]
    assert isinstance(backend, SqliteStore if durable else MemoryStore)
    assert (backend.indexes.key, backend.indexes.fields) == ("id", ("name",))
    run(backend.close())
