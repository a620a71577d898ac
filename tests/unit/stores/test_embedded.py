"""The embedded backend's own properties: the flat in-memory store (no scans), and the `data`
key that makes a store durable (tests/unit/stores/test_sqlite.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import mongomock
import pytest

from cqrs_flow.stores import DuplicateKey, MemoryStore
from cqrs_flow.topology.loader import parse_topology


def run(coroutine):
    return asyncio.run(coroutine)


def test_keyed_operations_and_list_never_scan_the_collection(monkeypatch):
    store = MemoryStore("contacts")
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
