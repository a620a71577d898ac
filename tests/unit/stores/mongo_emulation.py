"""pymongo's AsyncCollection calls that MongoStore makes, answered by a mongomock collection.

With it the contract suite runs the MongoDB backend's own code (its filters, upserts, retries
and verdicts) on every machine, MongoDB's query language being interpreted by mongomock. It
checks the backend's logic, not MongoDB: run the suite with MONGODB_URL set for that.
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
        self.name = self.collection.name
        self.calls: list[str] = []  # the operations made, by name, in order
        self.finds: list[dict] = []  # the keyword arguments of each find and count
        self.interleave = interleave

    async def find_one(self, filter: dict, projection: Any = None) -> dict | None:
        self.calls.append("find_one")
        await self._round_trip()
        return self.collection.find_one(filter, projection)

    def find(self, filter: dict, projection: Any = None, **options: Any) -> _Cursor:
        """pymongo's find; the hint is noted (mongomock has no indexes to read: it scans)."""
        self.calls.append("find")
        self.finds.append({"filter": filter, "projection": projection, **options})
        options.pop("hint", None)
        return _Cursor(self.collection.find(filter, projection, **options))

    async def count_documents(self, filter: dict, **options: Any) -> int:
        self.calls.append("count_documents")
        self.finds.append({"filter": filter, **options})
        await self._round_trip()
        return self.collection.count_documents(filter)

    async def find_one_and_update(self, filter: dict, update: dict, **options: Any) -> dict | None:
        self.calls.append("find_one_and_update")
        await self._round_trip()
        return self.collection.find_one_and_update(filter, update, **options)

    async def update_one(self, filter: dict, update: dict, **options: Any) -> Any:
        self.calls.append("update_one")
        await self._round_trip()
        return self.collection.update_one(filter, update, **options)

    async def delete_one(self, filter: dict) -> Any:
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
