"""pymongo's AsyncCollection calls that MongoStore makes, answered by a mongomock collection.

With it the contract suite runs the MongoDB backend's own code (its filters, upserts, retries
and verdicts) on every machine, MongoDB's query language being interpreted by mongomock. It
checks the backend's logic, not MongoDB: run the suite with MONGODB_URL set for that.

`EmulatedClient` stands for the client a store with a change log makes its transactions with:
a transaction that raises puts back what its writes changed (as MongoDB aborts one); nothing
runs between a transaction's operations unless `interleave` is set.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mongomock


class EmulatedCollection:
    def __init__(
        self,
        name: str = "contacts",
        shared: EmulatedCollection | None = None,
        interleave: bool = False,
    ) -> None:
        """`shared`: another store process's view of the same collection. `interleave`: let
        other tasks run before each operation, as a network round trip would."""
        self.collection = (
            shared.collection if shared else mongomock.MongoClient().get_database("cqrs_flow")[name]
        )
        self.database = EmulatedDatabase(self.collection.database, interleave)
        self.name = self.collection.name
        self.calls: list[str] = []  # the operations made, by name, in order
        self.finds: list[dict] = []  # the keyword arguments of each find and count
        self.interleave = interleave

    async def find_one(
        self, filter: dict, projection: Any = None, session: Any = None
    ) -> dict | None:
        self.calls.append("find_one")
        await self._round_trip()
        return self.collection.find_one(filter, projection)

    def find(self, filter: dict, projection: Any = None, **options: Any) -> _Cursor:
        """pymongo's find; the hint is noted (mongomock has no indexes to read: it scans)."""
        options.pop("session", None)
        self.calls.append("find")
        self.finds.append({"filter": filter, "projection": projection, **options})
        options.pop("hint", None)
        return _Cursor(self.collection.find(filter, projection, **options))

    async def count_documents(self, filter: dict, **options: Any) -> int:
        options.pop("session", None)
        self.calls.append("count_documents")
        self.finds.append({"filter": filter, **options})
        await self._round_trip()
        return self.collection.count_documents(filter)

    async def find_one_and_update(self, filter: dict, update: dict, **options: Any) -> dict | None:
        self._undo(options.pop("session", None), filter)
        self.calls.append("find_one_and_update")
        await self._round_trip()
        return self.collection.find_one_and_update(filter, update, **options)

    async def update_one(self, filter: dict, update: dict, **options: Any) -> Any:
        self._undo(options.pop("session", None), filter)
        self.calls.append("update_one")
        await self._round_trip()
        return self.collection.update_one(filter, update, **options)

    async def insert_one(self, document: dict, session: Any = None) -> Any:
        self._undo(session, {"_id": document["_id"]})
        self.calls.append("insert_one")
        await self._round_trip()
        return self.collection.insert_one(document)

    async def insert_many(self, documents: list, session: Any = None) -> Any:
        for document in documents:
            if "_id" in document:
                self._undo(session, {"_id": document["_id"]})
        self.calls.append("insert_many")
        await self._round_trip()
        return self.collection.insert_many(documents)

    async def delete_many(self, filter: dict, session: Any = None) -> Any:
        self._undo(session, filter)
        self.calls.append("delete_many")
        await self._round_trip()
        return self.collection.delete_many(filter)

    def _undo(self, session: Any, filter: dict) -> None:
        """In a transaction: note how to put back what `filter` matches (and the key it names,
        which an upsert may create), should the transaction be aborted."""
        if not isinstance(session, _Session):
            return
        for found in self.collection.find(filter):
            session.undo.append((self.collection, found["_id"], found))
        key = filter.get("_id")
        if isinstance(key, (str, int)) and self.collection.find_one({"_id": key}) is None:
            session.undo.append((self.collection, key, None))

    async def drop(self) -> None:
        self.collection.drop()

    async def delete_one(self, filter: dict, session: Any = None) -> Any:
        self._undo(session, filter)
        self.calls.append("delete_one")
        await self._round_trip()
        return self.collection.delete_one(filter)

    async def _round_trip(self) -> None:
        if self.interleave:
            await asyncio.sleep(0)

    async def create_index(self, keys: Any, **options: Any) -> str:
        return self.collection.create_index(keys, **options)

    async def list_indexes(self) -> _Cursor:
        return _Cursor(iter(self.collection.list_indexes()))

    async def drop_index(self, name: str) -> None:
        self.collection.drop_index(name)


class _Cursor:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def sort(self, *args: Any) -> _Cursor:
        self.cursor = self.cursor.sort(*args)
        return self

    def limit(self, count: int) -> _Cursor:
        self.cursor = self.cursor.limit(count)
        return self

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        for document in self.cursor:
            yield document


class EmulatedDatabase:
    """The database of emulated collections: `database[name]`, as the change log reaches its
    collections."""

    def __init__(self, database: Any, interleave: bool = False) -> None:
        self.mongomock = database
        self.interleave = interleave

    def __getitem__(self, name: str) -> EmulatedCollection:
        collection = EmulatedCollection.__new__(EmulatedCollection)
        collection.collection = self.mongomock[name]
        collection.name = name
        collection.database = self
        collection.calls, collection.finds, collection.interleave = [], [], self.interleave
        return collection


class EmulatedClient:
    """Sessions and transactions over an emulated database (see the module)."""

    def __init__(self, database: EmulatedDatabase) -> None:
        self.database = database
        self.transactions = 0  # committed

    def start_session(self) -> _Session:
        return _Session(self)


class _Session:
    def __init__(self, client: EmulatedClient) -> None:
        self.client = client
        self.undo: list[tuple[Any, Any, dict | None]] = []  # (collection, key, document before)

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def with_transaction(self, callback: Any) -> Any:
        database = self.client.database.mongomock
        saved = {name: list(database[name].find()) for name in database.list_collection_names()}
        try:
            result = await callback(self)
        except BaseException:
            for name in database.list_collection_names():
                database[name].delete_many({})
                if saved.get(name):
                    database[name].insert_many(saved[name])
            raise
        self.client.transactions += 1
        return result
