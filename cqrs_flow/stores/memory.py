"""The embedded backend: an in-memory mongomock collection, nothing to install or run."""

from __future__ import annotations

from typing import Any

import mongomock

from cqrs_flow.stores.base import Document, DocumentStore, DuplicateKey, NotFound

__all__ = ["MemoryStore"]


class MemoryStore(DocumentStore):
    """Documents in a mongomock collection, keyed by `_id`.

    mongomock answers from memory in the calling thread, so the calls below never block on I/O.
    """

    def __init__(self, collection: str) -> None:
        self._collection = mongomock.MongoClient().get_database("cqrs_flow")[collection]

    async def insert(self, key: str, document: Document) -> None:
        try:
            self._collection.insert_one({**document, "_id": key})
        except mongomock.DuplicateKeyError:
            raise DuplicateKey(key) from None

    async def update(self, key: str, fields: Document) -> Document:
        found = self._collection.find_one_and_update(
            {"_id": key}, {"$set": fields}, return_document=True)  # pymongo.ReturnDocument.AFTER
        if found is None:
            raise NotFound(key)
        return _strip(found)

    async def delete(self, key: str) -> None:
        if self._collection.delete_one({"_id": key}).deleted_count == 0:
            raise NotFound(key)

    async def insert_many(self, documents: dict[str, Document]) -> int:
        taken = [d["_id"] for d in self._collection.find({"_id": {"$in": list(documents)}}, {"_id": 1})]
        if taken:
            raise DuplicateKey(", ".join(taken))
        if documents:
            self._collection.insert_many([{**doc, "_id": key} for key, doc in documents.items()])
        return len(documents)

    async def delete_many(self, keys: list[str]) -> int:
        return self._collection.delete_many({"_id": {"$in": list(keys)}}).deleted_count

    async def get(self, key: str) -> Document:
        found = self._collection.find_one({"_id": key})
        if found is None:
            raise NotFound(key)
        return _strip(found)

    async def list(self, count: int) -> list[Document]:
        return [_strip(d) for d in self._collection.find().limit(count)] if count > 0 else []


def _strip(document: dict[str, Any]) -> Document:
    document.pop("_id", None)
    return document
