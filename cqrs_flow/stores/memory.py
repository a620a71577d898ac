"""The embedded backend: documents in memory, in a mongomock collection, nothing to install or run.

Promises O(1) keyed operations and O(count) lists at any collection size (its own index beside
mongomock, which scans), finds whose pages cost what they hold (sorted indexes of the indexed
fields, which hold references to the stored values, never copies of documents), and that stored
documents are never changed in place, so a shallow copy of the index is a consistent snapshot.
Why and how: docs/ARCHITECTURE.md, "Store backends".
"""

from __future__ import annotations

import builtins
import heapq
import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

import mongomock
from sortedcontainers import SortedDict, SortedList

from cqrs_flow.contracts.ordering import supersedes
from cqrs_flow.stores.base import (
    Document,
    DocumentStore,
    DuplicateKey,
    Find,
    NotFound,
    Page,
    StaleCommand,
)
from cqrs_flow.stores.find import (
    MERGED,
    SORTED,
    Count,
    Fetch,
    Indexes,
    Piece,
    Plan,
    Request,
    Row,
    Scan,
    matches,
    pages,
    plan,
    run,
    sort_key,
)

if TYPE_CHECKING:
    from cqrs_flow.stores.memory_log import MemoryLog

__all__ = ["MemoryStore", "copy_out"]

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

    `indexes`: what finds may filter and order on (the key field, and the indexed fields).
    `log`: the change log every change is appended to, in the same step (the store node's; the
    stores of one node share it).
    """

    def __init__(
        self,
        collection: str,
        last_writer_wins: bool = False,
        indexes: Indexes | None = None,
        log: MemoryLog | None = None,
    ) -> None:
        self.name = collection
        self.last_writer_wins = last_writer_wins
        self.indexes = indexes or Indexes()
        self.log = log
        self.collection: mongomock.Collection[Document] = mongomock.MongoClient().get_database(
            "cqrs_flow"
        )[collection]
        # key -> stored document (with "_id"), oldest first; the same objects as in mongomock.
        self._documents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._mirror = _mirror_store(self.collection)
        self._commands: dict[str, str] = {}  # key -> id of the last command written to it
        # The finds' indexes: each live document's insertion order (an update keeps it, an
        # insert after a delete takes a new one), the keys by it, and per indexed field the
        # entries (kind, value, seq, key) in order; values are the stored documents' own.
        self._seq = 0
        self._seqs: dict[str, int] = {}
        self._by_seq: SortedDict[int, str] = SortedDict()
        self._by_field: dict[str, SortedList[Entry]] = {
            name: SortedList() for name in self.indexes.names
        }

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

    async def find(self, query: Find) -> Page:
        return self._find(plan(query, self.indexes, self.name), query)

    async def find_many(self, queries: builtins.list[Find]) -> builtins.list[Page]:
        plans = [plan(query, self.indexes, self.name) for query in queries]  # all checked first
        return [self._find(found, query) for found, query in zip(plans, queries, strict=True)]

    async def find_at(self, queries: builtins.list[Find]) -> tuple[builtins.list[Page], int]:
        # everything in one step of the event loop: the pages and the position agree exactly
        return await self.find_many(queries), self.log.last_position if self.log else 0

    # -- the operations -----------------------------------------------------------------------

    def _get(self, key: str) -> Document:
        stored = self._documents.get(key)
        if stored is None:
            raise NotFound(key)
        return copy_out(stored)

    def _list(self, count: int) -> builtins.list[Document]:
        return [copy_out(d) for d in islice(self._documents.values(), count)] if count > 0 else []

    # -- finds: everything in the calling thread, so every find sees one state -----------------

    def _find(self, found: Plan, query: Find) -> Page:
        return run(pages(query, found, int), lambda request: self._answer(found, request))

    def _answer(self, found: Plan, request: Request) -> Any:
        if isinstance(request, Fetch):
            return [
                (key, copy_out(self._documents[key]))
                for key in request.keys
                if key in self._documents
            ]
        if isinstance(request, Count):
            return self._count(found)
        return self._scan(found, request)

    def _scan(self, found: Plan, scan: Scan) -> builtins.list[Row]:
        window = found.window(scan.lower, scan.upper, scan.reverse)
        if found.mode == SORTED:
            places = (
                (key, seq)
                for key, seq in self._matches(found)
                if found.in_window(found.place_of(key, seq, self._documents[key]), window)
            )
            order = (  # the window's first documents, in the scan's direction
                heapq.nlargest if window.backwards else heapq.nsmallest
            )
            chosen = order(
                len(self._seqs) if scan.limit is None else scan.limit,
                places,
                key=lambda place: found.place_key(
                    found.place_of(place[0], place[1], self._documents[place[0]])
                ),
            )
            return [self._row(found, key, seq, scan.documents) for key, seq in chosen]
        pieces = found.pieces(window)
        entries: Iterator[tuple[str, int]]
        if found.mode == MERGED and len(pieces) > 1:
            runs = [self._piece(found.drive, piece, window.backwards) for piece in pieces]
            entries = heapq.merge(*runs, key=lambda entry: entry[1], reverse=window.backwards)
        else:
            drive = found.drive
            entries = chain.from_iterable(
                self._piece(drive, piece, window.backwards)
                for piece in (reversed(pieces) if window.backwards else pieces)
            )
        filters = found.filters
        wanted: Iterator[tuple[str, int]] = entries
        if filters:
            wanted = (
                (key, seq)
                for key, seq in entries
                if matches(filters, key, found.key_field, self._documents[key])
            )
        if scan.limit is not None:
            wanted = islice(wanted, scan.limit)
        return [self._row(found, key, seq, scan.documents) for key, seq in wanted]

    def _row(self, found: Plan, key: str, seq: int, documents: bool) -> Row:
        stored = self._documents[key]
        place = found.place_of(key, seq, stored)
        return Row(key, place, copy_out(stored) if documents else None)

    def _piece(self, name: str | None, piece: Piece, backwards: bool) -> Iterator[tuple[str, int]]:
        """(key, seq) of the piece's entries, in the index's order (reversed if `backwards`)."""
        if piece.values is None:  # the insertion order
            lo, hi = piece.seq_lo, piece.seq_hi
            for seq in self._by_seq.irange(
                None if lo is None else lo[0],
                None if hi is None else hi[0],
                (True if lo is None else lo[1], True if hi is None else hi[1]),
                reverse=backwards,
            ):
                yield self._by_seq[seq], seq
            return
        assert name is not None, "a piece of values is a piece of a field's index"
        lo, hi = _entry_bounds(piece)
        for entry in self._by_field[name].irange(lo, hi, (True, False), reverse=backwards):
            yield entry[3], entry[2]

    def _matches(self, found: Plan) -> Iterator[tuple[str, int]]:
        """(key, seq) of every document matching the plan's conditions (its drive's, and the
        others checked on each document), in the drive's order."""
        filters = found.filters
        for interval in found.sets[found.drive or ""]:
            for key, seq in self._piece(found.drive, Piece(interval), False):
                if not filters or matches(filters, key, found.key_field, self._documents[key]):
                    yield key, seq

    def _count(self, found: Plan) -> int:
        if not found.sets:
            return len(self._seqs)
        if found.filters:
            return sum(1 for _ in self._matches(found))
        entries = self._by_field[found.drive or ""]
        total = 0
        for interval in found.sets[found.drive or ""]:  # by bisection: no entry is read
            lo, hi = _entry_bounds(Piece(interval))
            total += (len(entries) if hi is None else entries.bisect_left(hi)) - (
                0 if lo is None else entries.bisect_left(lo)
            )
        return total

    # The writes. `lww`: last-writer-wins rules for this write (see the class).

    def _insert(
        self, key: str, document: Document, command: str | None = None, lww: bool = False
    ) -> None:
        self._admit(key, command)
        if key in self._documents:
            if not lww:
                raise DuplicateKey(key)
            previous = self._documents[key]
            self._replace(key, {**_copy(document), "_id": key})
            self._logged("update", key, command, previous)
        else:
            self._put_new(key, document)
            self._logged("insert", key, command)
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
            self._logged("update", key, command, stored)
        elif lww:  # the update is the document's whole state
            self._put_new(key, fields)
            updated = self._documents[key]
            self._logged("insert", key, command)
        else:
            raise NotFound(key)
        if command:
            self._commands[key] = command
        return copy_out(updated)

    def _delete(self, key: str, command: str | None = None, lww: bool = False) -> None:
        self._admit(key, command)
        if key in self._documents:
            self._logged("delete", key, command, self._remove(key))
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
                previous = self._documents[key]
                self._replace(key, {**_copy(document), "_id": key})
                self._logged("update", key, command, previous)
            else:
                self._put_new(key, document)
                self._logged("insert", key, command)
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
                self._logged("delete", key, command, self._remove(key))
                removed.append(key)
            if command:
                self._commands[key] = command
        return removed

    def _put(self, key: str, document: Document | None) -> None:
        """A read model's write (no command): the key's document is `document`, or none."""
        if document is None:
            if key in self._documents:
                self._logged("delete", key, None, self._remove(key))
        elif key in self._documents:
            previous = self._documents[key]
            self._replace(key, {**_copy(document), "_id": key})
            self._logged("update", key, None, previous)
        else:
            self._put_new(key, document)
            self._logged("insert", key, None)

    def _lww(self, command: str | None) -> bool:
        return self.last_writer_wins and bool(command)

    def _logged(
        self, op: str, key: str, command: str | None, previous: dict[str, Any] | None = None
    ) -> None:
        """The change just made, appended to the log: the stored document itself (documents
        are never changed in place, so the log may hold it as it is)."""
        if self.log is not None:
            self.log.append(
                self.name,
                key,
                op,
                command,
                None if op == "delete" else self._documents[key],
                previous,
            )

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
        self._seq += 1
        self._seqs[key] = self._seq
        self._by_seq[self._seq] = key
        self._index(key, self._seq, self._documents[key], add=True)

    def _replace(self, key: str, document: dict[str, Any]) -> None:
        if self._mirror is not None:
            self._mirror[key] = document  # an existing key keeps its place, as in the index
        else:
            self.collection.replace_one({"_id": key}, document)
        seq, old = self._seqs[key], self._documents[key]
        self._documents[key] = document
        for name, entries in self._by_field.items():  # the entries of the values replaced
            if name != self.indexes.key and old.get(name) is not document.get(name):
                entries.remove((*sort_key(old.get(name)), seq, key))
                entries.add((*sort_key(document.get(name)), seq, key))

    def _remove(self, key: str) -> dict[str, Any]:
        """Remove the key's document; the stored document removed."""
        if self._mirror is not None:
            del self._mirror[key]
        else:
            self.collection.delete_one({"_id": key})
        seq = self._seqs.pop(key)
        del self._by_seq[seq]
        stored = self._documents.pop(key)
        self._index(key, seq, stored, add=False)
        return stored

    def _index(self, key: str, seq: int, stored: dict[str, Any], add: bool) -> None:
        """Add (or remove) the document's entry in each field's index."""
        for name, entries in self._by_field.items():
            entry = (*sort_key(key if name == self.indexes.key else stored.get(name)), seq, key)
            if add:
                entries.add(entry)
            else:
                entries.remove(entry)


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


Entry = tuple[Any, ...]  # (kind, value, seq, key): sort_key(value), then insertion order
_PAST = float("inf")  # above every seq


def _entry_bounds(piece: Piece) -> tuple[Entry | None, Entry | None]:
    """The piece as a field index's range: (from, inclusive; to, exclusive), None: no bound."""
    values = piece.values
    assert values is not None
    lo: Entry | None = None
    if values.lo is not None:
        if len(values.lo) == 1:  # a bound between kinds
            lo = values.lo
        elif piece.seq_lo is not None:
            seq, included = piece.seq_lo
            lo = (*values.lo, seq if included else seq + 1)
        else:
            lo = values.lo if values.lo_in else (*values.lo, _PAST)
    hi: Entry | None = None
    if values.hi is not None:
        if len(values.hi) == 1:
            hi = values.hi
        elif piece.seq_hi is not None:
            seq, included = piece.seq_hi
            hi = (*values.hi, seq + 1 if included else seq)
        else:
            hi = (*values.hi, _PAST) if values.hi_in else values.hi
    return lo, hi


_IMMUTABLE = frozenset({str, int, float, bool, bytes, type(None)})


def _copy(value: Any) -> Any:
    """A deep copy of document data (dicts, lists and immutable scalars), faster than deepcopy."""
    if isinstance(value, dict):
        return {k: v if v.__class__ in _IMMUTABLE else _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if v.__class__ in _IMMUTABLE else _copy(v) for v in value]
    return value


def copy_out(stored: dict[str, Any]) -> Document:
    """What a caller gets: a copy without mongomock's `_id`."""
    return {
        k: v if v.__class__ in _IMMUTABLE else _copy(v) for k, v in stored.items() if k != "_id"
    }
