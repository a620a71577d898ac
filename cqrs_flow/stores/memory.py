"""The embedded backend: documents in memory, in a mongomock collection, nothing to install or run.

Promises O(1) keyed operations and O(count) lists at any collection size (its own index beside
mongomock, which scans), and that stored documents are never changed in place, so a shallow copy
of the index is a consistent snapshot. Why and how: docs/ARCHITECTURE.md, "Store backends".
"""

from __future__ import annotations

import builtins
import logging
from collections import OrderedDict
from collections.abc import Iterable
from itertools import islice
from typing import Any

import mongomock

from cqrs_flow.contracts.ordering import supersedes
from cqrs_flow.stores.base import Document, DocumentStore, DuplicateKey, NotFound, StaleCommand

__all__ = ["MemoryStore"]

log = logging.getLogger("cqrs_flow.store")


class MemoryStore(DocumentStore):
    """Documents keyed by a string, in an ordered index and a mongomock collection (`_id` = key).

    Everything happens in memory in the calling thread, so the calls below never block on I/O.
    The synchronous `_insert` ... `_delete_many` carry out each write; the migration of a data
    directory of the format before SQLite replays its journals with them (stores/legacy.py).

    `last_writer_wins`: every write made by a command is an assignment of the key's state, and
    the newest command on a key wins whatever order commands arrive in: an update of a missing
    document creates it, a delete of a missing one succeeds (leaving its tombstone), an insert
    over a live document replaces it. Several writers applying one entity's commands side by
    side (writer replicas) then converge to the state the commands give in the order they were
    accepted. Writes without a command keep the default rules.
    """

    def __init__(self, collection: str, last_writer_wins: bool = False) -> None:
        self.last_writer_wins = last_writer_wins
        self.collection: mongomock.Collection[Document] = mongomock.MongoClient().get_database(
            "cqrs_flow"
        )[collection]
        # key -> stored document (with "_id"), oldest first; the same objects as in mongomock.
        self._documents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._mirror = _mirror_store(self.collection)
        self._commands: dict[str, str] = {}  # key -> id of the last command written to it

    def __len__(self) -> int:
        return len(self._documents)

    # -- the interface ------------------------------------------------------------------------

    async def insert(self, key: str, document: Document, command: str | None = None) -> None:
        self._insert(key, document, command, self._lww(command))

    async def update(self, key: str, fields: Document, command: str | None = None) -> Document:
        return self._update(key, fields, command, self._lww(command))

    async def delete(self, key: str, command: str | None = None) -> None:
        self._delete(key, command, self._lww(command))

    async def insert_many(self, documents: dict[str, Document], command: str | None = None) -> int:
        return self._insert_many(documents, command, self._lww(command))

    async def delete_many(self, keys: list[str], command: str | None = None) -> int:
        return len(self._delete_many(keys, command))

    def last_command(self, key: str) -> str | None:
        """The id of the last command written to the key (a delete included), or None."""
        return self._commands.get(key)

    async def get(self, key: str) -> Document:
        return self._get(key)

    async def list(self, count: int) -> list[Document]:
        return self._list(count)

    # -- the operations -----------------------------------------------------------------------

    def _get(self, key: str) -> Document:
        stored = self._documents.get(key)
        if stored is None:
            raise NotFound(key)
        return _copy_out(stored)

    def _list(self, count: int) -> builtins.list[Document]:
        return [_copy_out(d) for d in islice(self._documents.values(), count)] if count > 0 else []

    # The writes. `lww`: last-writer-wins rules for this write (see the class).

    def _insert(
        self, key: str, document: Document, command: str | None = None, lww: bool = False
    ) -> None:
        self._admit(key, command)
        if key in self._documents:
            if not lww:
                raise DuplicateKey(key)
            self._replace(key, {**_copy(document), "_id": key})
        else:
            self._put_new(key, document)
        if command:
            self._commands[key] = command

    def _update(
        self, key: str, fields: Document, command: str | None = None, lww: bool = False
    ) -> Document:
        self._admit(key, command)
        stored = self._documents.get(key)
        if stored is not None:
            updated = {
                **stored,
                **_copy(fields),
                "_id": key,
            }  # a new dict: stored ones never change
            self._replace(key, updated)
        elif lww:  # the update is the document's whole state
            self._put_new(key, fields)
            updated = self._documents[key]
        else:
            raise NotFound(key)
        if command:
            self._commands[key] = command
        return _copy_out(updated)

    def _delete(self, key: str, command: str | None = None, lww: bool = False) -> None:
        self._admit(key, command)
        if key in self._documents:
            self._remove(key)
        elif not lww:
            raise NotFound(key)
        if command:
            self._commands[key] = command

    def _insert_many(
        self, documents: dict[str, Document], command: str | None = None, lww: bool = False
    ) -> int:
        if command:
            documents = {
                k: d for k, d in documents.items() if supersedes(command, self._commands.get(k))
            }
        taken = [key for key in documents if key in self._documents]
        if taken and not lww:
            raise DuplicateKey(", ".join(taken))
        for key, document in documents.items():
            if key in self._documents:
                self._replace(key, {**_copy(document), "_id": key})
            else:
                self._put_new(key, document)
            if command:
                self._commands[key] = command
        return len(documents)

    def _delete_many(self, keys: Iterable[str], command: str | None = None) -> builtins.list[str]:
        """Remove the documents that exist; the keys removed, each once."""
        removed = []
        for key in keys:
            if command and not supersedes(command, self._commands.get(key)):
                continue
            if key in self._documents:
                self._remove(key)
                removed.append(key)
            if command:
                self._commands[key] = command
        return removed

    def _lww(self, command: str | None) -> bool:
        return self.last_writer_wins and bool(command)

    def _admit(self, key: str, command: str | None) -> None:
        last = self._commands.get(key)
        if command and last is not None and not supersedes(command, last):
            raise StaleCommand(key, last)

    # -- index and collection in step ----------------------------------------------------------

    def _put_new(self, key: str, document: Document) -> None:
        """Store a document under a key that is not taken (checked by the caller)."""
        try:
            self.collection.insert_one({**document, "_id": key})  # mongomock copies it
        except mongomock.DuplicateKeyError:  # only if someone wrote to the collection directly
            raise DuplicateKey(key) from None
        if self._mirror is not None:
            # mongomock stores its own copy of what it is given; index that very object.
            self._documents[key] = self._mirror[key]
        else:
            stored = self.collection.find_one({"_id": key})
            assert stored is not None, "inserted just above"
            self._documents[key] = stored

    def _replace(self, key: str, document: dict[str, Any]) -> None:
        if self._mirror is not None:
            self._mirror[key] = document  # an existing key keeps its place, as in the index
        else:
            self.collection.replace_one({"_id": key}, document)
        self._documents[key] = document

    def _remove(self, key: str) -> None:
        if self._mirror is not None:
            del self._mirror[key]
        else:
            self.collection.delete_one({"_id": key})
        del self._documents[key]


def _mirror_store(collection: mongomock.Collection[Document]) -> Any:
    """mongomock's per-collection document store, if this mongomock has the one we know."""
    store_class = getattr(getattr(mongomock, "store", None), "CollectionStore", None)
    try:
        store = collection._store  # a property: the CollectionStore of this collection
    except Exception:
        store = None
    if (
        store_class is not None
        and isinstance(store, store_class)
        and all(
            hasattr(store_class, name) for name in ("__getitem__", "__setitem__", "__delitem__")
        )
    ):
        return store
    log.warning(
        "mongomock %s: unknown internals; the store's writes fall back to mongomock's "
        "public calls, which scan the whole collection",
        getattr(mongomock, "__version__", "?"),
    )
    return None


_IMMUTABLE = frozenset({str, int, float, bool, bytes, type(None)})


def _copy(value: Any) -> Any:
    """A deep copy of document data (dicts, lists and immutable scalars), faster than deepcopy."""
    if isinstance(value, dict):
        return {k: v if v.__class__ in _IMMUTABLE else _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if v.__class__ in _IMMUTABLE else _copy(v) for v in value]
    return value


def _copy_out(stored: dict[str, Any]) -> Document:
    """What a caller gets: a copy without mongomock's `_id`."""
    return {
        k: v if v.__class__ in _IMMUTABLE else _copy(v) for k, v in stored.items() if k != "_id"
    }
