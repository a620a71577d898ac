"""The MongoDB backend: documents in a MongoDB collection, shared by any number of store processes.

A store node with `backend: mongodb` uses it (the `mongodb` extra). It answers exactly as the
embedded backend does; each write is one conditional operation by `_id`, so the command rule holds
whatever other store processes do. Finds read compound indexes made at open, one `find` per
request of a page, with no snapshot across them (stores/mongodb_find.py). Layout and filters:
docs/ARCHITECTURE.md, "Store backends".
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from cqrs_flow.contracts.ordering import CommandClock, is_ordered, supersedes
from cqrs_flow.stores import mongodb_find
from cqrs_flow.stores.base import (
    Document,
    DocumentStore,
    DuplicateKey,
    Find,
    InvalidDocument,
    NotFound,
    Page,
    StaleCommand,
    StoreError,
)
from cqrs_flow.stores.find import Count, Fetch, Indexes, Plan, Request, Row, pages, plan, run_async

__all__ = [
    "KeyState",
    "MongoStore",
    "applicable",
    "check_collation",
    "delete_op",
    "insert_op",
    "redact",
    "update_op",
    "verdict",
]

log = logging.getLogger("cqrs_flow.store")

# A canonical UUIDv7, as cqrs_flow.contracts.ordering.is_ordered reads it. `(?![\s\S])` ends the
# match at the end of the string, in Python's re and in MongoDB's PCRE alike (`$` would also match
# before a final newline in both).
ORDERED_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}(?![\s\S])"
LIVE = mongodb_find.LIVE
GONE = {"_seq": {"$exists": False}}  # a tombstone, or no MongoDB document at all
SEQ_INDEX = mongodb_find.SEQ_INDEX
REPLACED = object()  # what _insert returns for a live document it replaced
RETRIES = 5  # writes tried again when the key changed under them, before giving up
SERVER_SELECTION_MS = 5000  # how long an operation waits for a usable server, unless the URL says

# Write errors about the operation's moment, not its document: try again later.
_TRANSIENT_CODES = frozenset({50, 91, 112, 189, 262, 10107, 11600, 11602, 13435, 13436})


# -- the operations as MongoDB documents (pure functions) --------------------------------------


def applicable(command: str | None) -> dict[str, Any]:
    """The filter matching a key whose last command `command` supersedes (all keys without one)."""
    if not command:
        return {}
    if is_ordered(command):
        return {"$or": [{"_cmd": {"$lt": command}}, {"_cmd": {"$not": re.compile(ORDERED_ID)}}]}
    return {"_cmd": {"$ne": command}}


def _where(key: str, state: dict[str, Any], command: str | None) -> dict[str, Any]:
    return {"_id": key, **state, **applicable(command)}


def insert_op(
    key: str, document: Document, seq: str, command: str | None, live: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) of an insert: upserted over nothing or a tombstone; `live=True` is the
    last-writer-wins replacement of a live document (which keeps its `_seq`)."""
    fields = {k: v for k, v in document.items() if k != "_id"}
    if live:
        return _where(key, LIVE, command), {"$set": {"d": fields, **_stamp(command)}}
    return _where(key, GONE, command), {"$set": {"d": fields, "_seq": seq, **_stamp(command)}}


def update_op(
    key: str, fields: Document, command: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) setting `fields` on a live document."""
    sets = {f"d.{name}": value for name, value in fields.items() if name != "_id"}
    return _where(key, LIVE, command), {"$set": {**sets, **_stamp(command)}}


def delete_op(
    key: str, command: str | None, anything: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, update) turning a live document into a tombstone; `anything=True` matches the
    key whatever its state (for an upsert that leaves a tombstone where there was nothing)."""
    update: dict[str, Any] = {"$unset": {"d": "", "_seq": ""}}
    if command:
        update["$set"] = {"_cmd": command}
    return _where(key, {} if anything else LIVE, command), update


def _stamp(command: str | None) -> dict[str, str]:
    return {"_cmd": command} if command else {}


@dataclass(frozen=True)
class KeyState:
    """What one read says about a key: a live document or not, and its last command."""

    live: bool
    last: str | None

    @classmethod
    def of(cls, found: dict[str, Any] | None) -> KeyState:
        if found is None:
            return cls(False, None)
        return cls("_seq" in found, found.get("_cmd"))


def verdict(op: str, state: KeyState, command: str | None, last_writer_wins: bool = False) -> str:
    """What the embedded backend does with `op` on a key in `state`: "stale", "not found",
    "duplicate" or "apply" (the rule of MemoryStore, written once more as data)."""
    if command and not supersedes(command, state.last):
        return "stale"
    if op == "insert" and state.live and not (last_writer_wins and command):
        return "duplicate"
    if op in ("update", "delete") and not state.live and not (last_writer_wins and command):
        return "not found"
    return "apply"


def redact(url: str) -> str:
    """The URL without its user and password, for messages."""
    return re.sub(r"^([a-z+]+://)[^@/]*@", r"\1***@", url)


def check_collation(info: Mapping[str, Any] | None, name: str) -> None:
    """StoreError if the collection (its listCollections entry) has a collation other than
    simple."""
    collation = ((info or {}).get("options") or {}).get("collation")
    if collation and collation.get("locale") != "simple":
        raise StoreError(
            f"the collection {name} has the default collation {collation.get('locale')!r}: "
            "the store needs the simple (binary) one, under which keys match exactly and "
            "command ids compare byte by byte; give the store another collection "
            "(its 'collection' key), or recreate this one without a collation"
        )


# -- errors ----------------------------------------------------------------------------------


@contextmanager
def driver_errors(what: str) -> Iterator[None]:
    """The driver's exceptions as the interface's: InvalidDocument or StoreError."""
    from bson.errors import BSONError
    from pymongo.errors import DocumentTooLarge, PyMongoError, WriteError

    try:
        yield
    except (BSONError, OverflowError, DocumentTooLarge) as exc:  # raised before anything is sent
        raise InvalidDocument(f"MongoDB cannot store the document: {exc}") from None
    except WriteError as exc:
        if exc.code in _TRANSIENT_CODES:
            raise StoreError(
                f"MongoDB could not {what} now (code {exc.code}): {_first_line(exc)}"
            ) from None
        raise InvalidDocument(
            f"MongoDB refused to {what} (code {exc.code}): {_first_line(exc)}"
        ) from None
    except PyMongoError as exc:
        raise StoreError(
            f"MongoDB could not {what}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None


def _first_line(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    message = (
        str(details["errmsg"]) if isinstance(details, dict) and details.get("errmsg") else str(exc)
    )
    message = message.split(", Topology Description:")[0]  # server selection: the rest is internals
    return message.splitlines()[0][:300] if message else type(exc).__name__


# -- the backend -------------------------------------------------------------------------------


class _SharedClient:
    """A client the stores of one node share: closed when the last of them is."""

    def __init__(self, client: Any, users: int = 1) -> None:
        self.client, self.users = client, users

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            await self.client.close()


class MongoStore(DocumentStore):
    """Documents in a MongoDB collection (layout and rules: docs/ARCHITECTURE.md, "Store backends").

    Open it with `await MongoStore.open(url, database, collection)`, or several collections on
    one client with `open_many`; tests may hand the constructor any object with pymongo's
    AsyncCollection calls used here. `indexes`: what finds may use.
    """

    def __init__(
        self,
        collection: Any,
        *,
        last_writer_wins: bool = False,
        client: Any = None,
        clock: CommandClock | None = None,
        indexes: Indexes | None = None,
    ) -> None:
        from pymongo import ReturnDocument

        self.collection = collection
        self.name: str = getattr(collection, "name", None) or "documents"
        self.last_writer_wins = last_writer_wins
        self.indexes = indexes or Indexes()
        self._client = _SharedClient(client) if client is not None else None
        self._clock = clock or CommandClock()
        self._after = ReturnDocument.AFTER
        self._before = ReturnDocument.BEFORE
        # The node's change log (stores/mongodb_log.MongoLog sets it): with one, every write is
        # a transaction with its change (the functions of mongodb_log), without, the single
        # conditional operations below.
        self.log: Any = None

    @classmethod
    async def open(
        cls,
        url: str,
        database: str,
        collection: str,
        *,
        last_writer_wins: bool = False,
        indexes: Indexes | None = None,
        server_selection_ms: int = SERVER_SELECTION_MS,
    ) -> MongoStore:
        """The store of one collection (see open_many)."""
        (store,) = await cls.open_many(
            url,
            database,
            {collection: indexes or Indexes()},
            last_writer_wins=last_writer_wins,
            server_selection_ms=server_selection_ms,
        )
        return store

    @classmethod
    async def open_many(
        cls,
        url: str,
        database: str,
        collections: dict[str, Indexes],
        *,
        last_writer_wins: bool = False,
        server_selection_ms: int = SERVER_SELECTION_MS,
    ) -> builtins.list[MongoStore]:
        """A store per collection (name -> its indexes), sharing one client (closed with the last
        store): connect, check that a server answers, and make the indexes `list` and the finds
        need; StoreError (with the URL's password left out) if MongoDB cannot be reached or
        used."""
        try:
            from pymongo import AsyncMongoClient
        except ImportError:
            raise StoreError(
                "backend: mongodb needs the pymongo package: pip install 'cqrs-flow[mongodb]'"
            ) from None
        from pymongo.errors import ConfigurationError, InvalidURI

        where = redact(url)
        # Keyword options would win over the URL's: pass only those the URL leaves out.
        options: dict[str, Any] = (
            {}
            if "serverselectiontimeoutms" in url.lower()
            else {"serverSelectionTimeoutMS": server_selection_ms}
        )
        if "appname" not in url.lower():
            options["appname"] = "cqrs-flow store"
        try:
            client: AsyncMongoClient[Document] = AsyncMongoClient(url, **options)
        except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
            raise StoreError(
                f"the MongoDB connection URL ({where}) is not one pymongo accepts: "
                f"{exc}; expected mongodb://host:port/ or mongodb+srv://host/, "
                f"options after '?'"
            ) from None
        if not client.write_concern.acknowledged:
            await client.close()
            raise StoreError(
                f"the MongoDB URL ({where}) asks for unacknowledged writes (w=0): a "
                "conditional write could not tell whether it applied; remove w=0 "
                "(w=majority is the setting to use)"
            )
        shared = _SharedClient(client, users=len(collections))
        stores = []
        for name, indexes in collections.items():
            store = cls(client[database][name], last_writer_wins=last_writer_wins, indexes=indexes)
            store._client = shared
            stores.append(store)
        try:
            try:
                with driver_errors(f"be reached at {where}"):
                    await client[database].command("ping")
            except StoreError as exc:
                raise StoreError(
                    f"{exc}; check that MongoDB runs there and that the URL is right"
                ) from None
            with driver_errors(f"list the collections of {database}"):
                found = {
                    info["name"]: info
                    async for info in await client[database].list_collections(
                        filter={"name": {"$in": builtins.list(collections)}}
                    )
                }
            for store in stores:
                check_collation(found.get(store.name), f"{database}.{store.name}")
                with driver_errors(f"make the indexes of {database}.{store.name}"):
                    await store._make_indexes()
        except StoreError:
            await client.close()
            raise
        log.info(
            "MongoDB at %s: %s in %s (write concern %s, read concern %s)",
            where,
            ", ".join(collections),
            database,
            client.write_concern.document or "server default",
            client.read_concern.level or "server default",
        )
        return stores

    async def _make_indexes(self) -> None:
        """The index `list` reads and those of the finds (made if missing: MongoDB builds them
        without blocking writes), and drop the indexes of fields no longer indexed."""
        specs = mongodb_find.index_specs(self.indexes)
        wanted = {options["name"] for _, options in specs}
        present = [info["name"] async for info in await self.collection.list_indexes()]
        for name in present:
            if mongodb_find.is_field_index(name) and name not in wanted:
                await self.collection.drop_index(name)
        for keys, options in specs:
            await self.collection.create_index(keys, **options)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.release()

    # -- finds -----------------------------------------------------------------------------------

    async def find(self, query: Find) -> Page:
        found = plan(query, self.indexes, self.name)
        with driver_errors("find documents"):
            return await run_async(pages(query, found, str), partial(self._answer, found))

    async def find_at(self, queries: builtins.list[Find]) -> tuple[builtins.list[Page], int]:
        """The log's position read first, then the pages: no snapshot holds both, so the pages
        may show changes after the position, never miss one before it."""
        position = await self.log.last() if self.log is not None else 0
        return await self.find_many(queries), position

    async def find_many(self, queries: builtins.list[Find]) -> builtins.list[Page]:
        """One query after the other (no snapshot across them: see the module)."""
        plans = [plan(query, self.indexes, self.name) for query in queries]
        with driver_errors("find documents"):
            return [
                await run_async(pages(query, found, str), partial(self._answer, found))
                for query, found in zip(queries, plans, strict=True)
            ]

    async def _answer(self, found: Plan, request: Request) -> Any:
        if isinstance(request, Fetch):
            documents = {
                stored["_id"]: stored.get("d", {})
                async for stored in self.collection.find(
                    {"_id": {"$in": builtins.list(request.keys)}, **LIVE}, {"d": 1}
                )
            }
            return [(key, documents[key]) for key in request.keys if key in documents]
        if isinstance(request, Count):
            return await self.collection.count_documents(
                **mongodb_find.count_query(found, self.indexes)
            )
        query = mongodb_find.scan_query(found, self.indexes, request)
        if query is None:
            return []
        rows = []
        async for stored in self.collection.find(**query):
            document = stored.get("d", {}) if request.documents else None
            place = found.place_of(stored["_id"], stored["_seq"], document)
            rows.append(Row(stored["_id"], place, document))
        return rows

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, key: str) -> Document:
        with driver_errors(f"read {key!r}"):
            found = await self.collection.find_one({"_id": key, **LIVE}, {"d": 1})
        if found is None:
            raise NotFound(key)
        document: Document = found.get("d", {})
        return document

    async def list(self, count: int) -> list[Document]:
        if count <= 0:
            return []  # a limit of 0 would mean no limit to MongoDB
        with driver_errors("list documents"):
            cursor = self.collection.find(LIVE, {"d": 1}).sort("_seq", 1).limit(count)
            return [found.get("d", {}) async for found in cursor]

    async def _state(self, key: str) -> KeyState:
        return KeyState.of(await self.collection.find_one({"_id": key}, {"_cmd": 1, "_seq": 1}))

    # -- single-key writes -----------------------------------------------------------------------

    async def insert(self, key: str, document: Document, command: str | None = None) -> None:
        with driver_errors(f"insert {key!r}"):
            if self.log is not None:
                from cqrs_flow.stores import mongodb_log

                return await mongodb_log.insert(self, key, document, command)
            await self._insert(key, document, command, self._clock.next_id())

    async def _insert(self, key: str, document: Document, command: str | None, seq: str) -> Any:
        """Insert, or raise. What undoing it needs: the last command of the tombstone it
        replaced (None: there was nothing), or REPLACED (a live document, last writer wins)."""
        for _ in range(RETRIES):
            made, before = await self._insert_new(key, document, command, seq)
            if made:
                return before
            if self.last_writer_wins and command:  # a live document a newer command replaces
                where, update = insert_op(key, document, seq, command, live=True)
                if (await self.collection.update_one(where, update)).matched_count:
                    return REPLACED
            self._refuse("insert", key, await self._state(key), command)
        raise self._busy(key)

    async def _insert_new(
        self, key: str, document: Document, command: str | None, seq: str
    ) -> tuple[bool, str | None]:
        """The one conditional upsert of an insert: (made, the replaced tombstone's command);
        (False, None) if the key holds a live document or a command `command` does not supersede."""
        from pymongo.errors import DuplicateKeyError

        where, update = insert_op(key, document, seq, command)
        try:
            before = await self.collection.find_one_and_update(
                where, update, upsert=True, projection={"_cmd": 1}, return_document=self._before
            )
        except DuplicateKeyError:
            return False, None
        return True, before.get("_cmd") if before else None

    async def update(self, key: str, fields: Document, command: str | None = None) -> Document:
        if not command and not any(name != "_id" for name in fields):
            return await self.get(key)  # nothing to set (MongoDB refuses an empty $set)
        with driver_errors(f"update {key!r}"):
            if self.log is not None:
                from cqrs_flow.stores import mongodb_log

                return await mongodb_log.update(self, key, fields, command)
            for _ in range(RETRIES):
                where, update = update_op(key, fields, command)
                found = await self.collection.find_one_and_update(
                    where, update, projection={"d": 1}, return_document=self._after
                )
                if found is not None:
                    document: Document = found.get("d", {})
                    return document
                if self.last_writer_wins and command:  # no live document: this update makes one
                    made, _ = await self._insert_new(key, fields, command, self._clock.next_id())
                    if made:
                        return {k: v for k, v in fields.items() if k != "_id"}
                self._refuse("update", key, await self._state(key), command)
            raise self._busy(key)

    async def delete(self, key: str, command: str | None = None) -> None:
        with driver_errors(f"delete {key!r}"):
            if self.log is not None:
                from cqrs_flow.stores import mongodb_log

                return await mongodb_log.delete(self, key, command)
            if not await self._delete(key, command) and not (self.last_writer_wins and command):
                raise NotFound(key)

    async def _tombstone(self, where: dict[str, Any], update: dict[str, Any]) -> bool:
        """Upsert a key's tombstone (`delete_op(..., anything=True)`); whether a live document was
        there. DuplicateKeyError when the key's last command is this one or newer."""
        before = await self.collection.find_one_and_update(
            where, update, upsert=True, projection={"_seq": 1}, return_document=self._before
        )
        return before is not None and "_seq" in before

    async def _delete(self, key: str, command: str | None) -> bool:
        """Delete one key; whether a live document was removed. StaleCommand, or NotFound unless
        last_writer_wins (then a tombstone is left for the command)."""
        from pymongo.errors import DuplicateKeyError

        for _ in range(RETRIES):
            if not command:
                # Nothing to remember: a key never written by a command goes altogether.
                gone = await self.collection.delete_one(
                    {"_id": key, **LIVE, "_cmd": {"$exists": False}}
                )
                if gone.deleted_count:
                    return True
            where, update = delete_op(key, command)
            if (await self.collection.update_one(where, update)).matched_count:
                return True
            if not command:
                self._refuse("delete", key, await self._state(key), command)
                continue
            if self.last_writer_wins:  # a tombstone for the command, wherever the key stands
                try:
                    return await self._tombstone(*delete_op(key, command, anything=True))
                except DuplicateKeyError:
                    pass
            self._refuse("delete", key, await self._state(key), command)
        raise self._busy(key)

    def _refuse(self, op: str, key: str, state: KeyState, command: str | None) -> None:
        """Raise what the refused write means, or return if it applies now (to try it again)."""
        outcome = verdict(op, state, command, self.last_writer_wins)
        if outcome == "stale":
            raise StaleCommand(key, state.last or "")
        if outcome == "duplicate":
            raise DuplicateKey(key)
        if outcome == "not found":
            raise NotFound(key)

    def _busy(self, key: str) -> StoreError:
        return StoreError(
            f"the document '{key}' changed {RETRIES} times while being written; try again"
        )

    # -- bulk writes -----------------------------------------------------------------------------

    async def insert_many(self, documents: dict[str, Document], command: str | None = None) -> int:
        if not documents:
            return 0
        with driver_errors(f"insert {len(documents)} documents"):
            if self.log is not None:
                from cqrs_flow.stores import mongodb_log

                return await mongodb_log.insert_many(self, documents, command)
            states = {
                found["_id"]: KeyState.of(found)
                async for found in self.collection.find(
                    {"_id": {"$in": list(documents)}}, {"_cmd": 1, "_seq": 1}
                )
            }
            wanted: dict[str, Document] = {}
            taken = []
            for key, document in documents.items():
                outcome = verdict(
                    "insert", states.get(key, KeyState(False, None)), command, self.last_writer_wins
                )
                if outcome == "duplicate":
                    taken.append(key)
                elif outcome == "apply":
                    wanted[key] = document
            if taken:
                raise DuplicateKey(", ".join(taken))
            seqs = {key: self._clock.next_id() for key in wanted}  # in order: list shows them so
            results = await asyncio.gather(
                *(
                    self._insert(key, document, command, seqs[key])
                    for key, document in wanted.items()
                ),
                return_exceptions=True,
            )
            outcomes = dict(zip(wanted, results, strict=True))
            taken = [key for key, result in outcomes.items() if isinstance(result, DuplicateKey)]
            failed = [
                result
                for result in outcomes.values()
                if isinstance(result, BaseException)
                and not isinstance(result, (DuplicateKey, StaleCommand))
            ]
            if taken or failed:
                await self._undo(
                    {
                        key: last
                        for key, last in outcomes.items()
                        if not isinstance(last, BaseException)
                    },
                    seqs,
                )
                if failed:
                    raise failed[0]
                raise DuplicateKey(", ".join(taken))
            return sum(1 for result in results if not isinstance(result, StaleCommand))

    async def _undo(self, inserted: dict[str, str | None], seqs: dict[str, str]) -> None:
        """Take back this call's inserts (each only while it is still the key's document)."""
        for key, last in inserted.items():
            if last is REPLACED:
                continue  # last writer wins: not a new document, and what it replaced is gone
            where = {"_id": key, "_seq": seqs[key]}
            if last is None:
                await self.collection.delete_one(where)
            else:
                await self.collection.update_one(
                    where, {"$unset": {"d": "", "_seq": ""}, "$set": {"_cmd": last}}
                )

    async def delete_many(self, keys: builtins.list[str], command: str | None = None) -> int:
        from pymongo.errors import DuplicateKeyError

        async def one(key: str) -> bool:
            if not command:
                try:
                    return await self._delete(key, None)
                except NotFound:
                    return False
            where, update = delete_op(key, command, anything=True)
            for _ in range(RETRIES):
                try:
                    return await self._tombstone(where, update)
                except DuplicateKeyError:  # the key's last command is C or newer: leave it out
                    if verdict("delete", await self._state(key), command, True) == "stale":
                        return False
            raise self._busy(key)

        with driver_errors(f"delete {len(keys)} documents"):
            if self.log is not None:
                from cqrs_flow.stores import mongodb_log

                return await mongodb_log.delete_many(self, keys, command)
            removed = await asyncio.gather(*(one(key) for key in dict.fromkeys(keys)))
        return sum(removed)
