"""The backends under test: `make_store` runs a test over each of them (see test_contract.py)."""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid

import pytest

from cqrs_flow.stores import MemoryStore, SqliteStore

MONGODB_URL = os.environ.get("MONGODB_URL")
# mongodb-logged: the emulated one with a change log, whose writes are transactions of their own
# (stores/mongodb_log.py): a store node's always have one.
BACKENDS = ["memory", "sqlite", "mongodb-emulated", "mongodb-logged", "mongodb"]


@pytest.fixture(params=BACKENDS)
def make_store(request, tmp_path):
    """An async factory of the backend under test (call it inside the test's event loop)."""
    databases: list[str] = []

    async def make(**options):
        """`options`: constructor flags (last_writer_wins, indexes); a backend without one is
        skipped. The collection is named `collection` ("contacts" unless given)."""
        collection = options.pop("collection", "contacts")
        if request.param == "memory":
            return MemoryStore(collection, **supported(MemoryStore, options))
        if request.param == "sqlite":
            databases.append("")  # a directory of its own for each store of the test
            return await SqliteStore.open(
                tmp_path / f"data{len(databases)}",
                collection,
                **supported(SqliteStore.open, options),
            )
        from cqrs_flow.stores.mongodb import MongoStore

        if request.param == "mongodb-emulated":
            from .mongo_emulation import EmulatedCollection

            return MongoStore(EmulatedCollection(collection), **options)
        if request.param == "mongodb-logged":
            from cqrs_flow.stores.log import KEEP_EVERYTHING
            from cqrs_flow.stores.mongodb_log import MongoLog

            from .mongo_emulation import EmulatedClient, EmulatedCollection

            emulated = EmulatedCollection(collection)
            store = MongoStore(emulated, **options)
            MongoLog([store], KEEP_EVERYTHING, emulated.database, EmulatedClient(emulated.database))
            return store
        databases.append(f"cqrs_flow_test_{uuid.uuid4().hex[:12]}")
        return await MongoStore.open(MONGODB_URL, databases[-1], collection, **options)

    if request.param.startswith("mongodb"):
        pytest.importorskip("pymongo", reason="the mongodb extra is not installed")
    if request.param == "mongodb" and not MONGODB_URL:
        pytest.skip("MONGODB_URL is not set: no MongoDB server to run the contract against")
    yield make
    if databases and request.param.startswith("mongodb"):

        async def drop():
            from pymongo import AsyncMongoClient

            client = AsyncMongoClient(MONGODB_URL)
            for name in databases:
                await client.drop_database(name)
            await client.close()

        asyncio.run(drop())


def supported(constructor, options: dict) -> dict:
    missing = [name for name in options if name not in inspect.signature(constructor).parameters]
    if missing:
        pytest.skip(f"{constructor.__qualname__} has no {', '.join(missing)} flag (yet)")
    return options
