"""The change log of the MongoDB backend: a collection of changes written in the same
multi-document transaction as the change itself, positions from a counter document.

A store node with a log makes each write one transaction (`transaction`): it reads the key,
decides by the same rule as every backend (`verdict`), writes, and appends the change (the
counter's `$inc`, then the change under its position). The counter is incremented last, so the
document it is is held for as short a time as can be; two transactions that both increment it
conflict, and MongoDB lets the second go on only once the first has committed (the driver tries
it again), so positions are given in the order the changes commit: a follower that has read up
to a position never finds an older one appear later. Another store process writing the same
collections takes part in the same rule. Why this and not change streams: docs/ARCHITECTURE.md,
"The change log".

    cqrs_changes       {_id: <position>, c: <collection>, k: <key>, op, cmd, d, p, at, s}
    cqrs_counters      {_id: "changes", n: <the last position given>}
    cqrs_projections   {_id: <projection>, live: <generation>, positions: {"<g>": <position>},
                        set_aside: <count>}
    cqrs_set_aside     a projection's changes set aside, with the error
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from cqrs_flow.contracts.ordering import supersedes
from cqrs_flow.stores.base import Document, DocumentStore, DuplicateKey, NotFound, StaleCommand
from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.log import (
    Batch,
    Change,
    ChangeLog,
    LogInfo,
    ProjectionState,
    Retention,
    SetAside,
    Superseded,
    Write,
    check_position,
    current_subject,
)
from cqrs_flow.stores.mongodb import KeyState, MongoStore, driver_errors, verdict

__all__ = ["CHANGES", "COUNTERS", "MongoLog"]

T = TypeVar("T")

CHANGES, COUNTERS = "cqrs_changes", "cqrs_counters"
PROJECTIONS, SET_ASIDE = "cqrs_projections", "cqrs_set_aside"
POLL = 0.2  # how often a waiting follower looks for changes other store processes made
SAMPLE = 200  # newest changes whose size estimates the log's
TRIM_MOST = 50_000  # most changes one trim drops


class MongoLog(ChangeLog):
    """The log of the MongoStores of one node; every write of theirs goes through `transaction`
    and one of the write functions below."""

    def __init__(
        self,
        stores: builtins.list[MongoStore],
        retention: Retention,
        database: Any = None,
        client: Any = None,
    ) -> None:
        super().__init__(retention)
        first = stores[0]
        self.database = database if database is not None else first.collection.database
        shared = first._client
        self.client: Any = client if client is not None else (shared.client if shared else None)
        self._shared = shared
        self.template = first
        self.changes = self.database[CHANGES]
        self.counters = self.database[COUNTERS]
        self.projections = self.database[PROJECTIONS]
        self.set_aside = self.database[SET_ASIDE]
        for store in stores:
            store.log = self

    async def transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """`work(session)` as one transaction (tried again by the driver on a conflict); then
        the followers in this process are woken."""
        async with self.client.start_session() as session:
            result: T = await session.with_transaction(work)
        self.notify()
        return result

    async def append(
        self,
        session: Any,
        collection: str,
        key: str,
        op: str,
        command: str | None,
        document: Document | None,
        previous: Document | None,
    ) -> None:
        """The change, under the next position: the last step of its transaction."""
        from pymongo import ReturnDocument

        counter = await self.counters.find_one_and_update(
            {"_id": "changes"},
            {"$inc": {"n": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        await self.changes.insert_one(
            {
                "_id": counter["n"],
                "c": collection,
                "k": key,
                "op": op,
                "cmd": command,
                "d": document,
                "p": previous,
                "at": time.time(),
                "s": current_subject(),  # who asked for it (log.asked_by)
            },
            session=session,
        )

    # -- the log ---------------------------------------------------------------------------------

    async def last(self) -> int:
        with driver_errors("read the change log"):
            counter = await self.counters.find_one({"_id": "changes"})
        return int(counter["n"]) if counter else 0

    async def _extent(self) -> tuple[int, int]:
        last = await self.last()
        with driver_errors("read the change log"):
            oldest = [c async for c in self.changes.find({}, {"_id": 1}).sort("_id", 1).limit(1)]
        return (int(oldest[0]["_id"]) if oldest else 0), last

    async def info(self) -> LogInfo:
        first, last = await self._extent()
        if not first:
            return LogInfo(0, last, 0, 0)
        from bson import encode

        count = last - first + 1
        with driver_errors("read the change log"):
            sample = [
                len(encode(c)) async for c in self.changes.find({}).sort("_id", -1).limit(SAMPLE)
            ]
        return LogInfo(first, last, count, sum(sample) * count // max(len(sample), 1))

    async def read(self, after: int, limit: int, collections: Collection[str] | None) -> Batch:
        first, last = await self._extent()
        check_position(after, LogInfo(first, last, last - first + 1 if first else 0, 0))
        with driver_errors("read the change log"):
            rows = [
                row
                async for row in self.changes.find({"_id": {"$gt": after}})
                .sort("_id", 1)
                .limit(limit)
            ]
        changes = [
            Change(
                row["_id"],
                row["c"],
                row["k"],
                row["op"],
                row.get("cmd"),
                row.get("d"),
                row.get("p"),
                row["at"],
                row.get("s"),
            )
            for row in rows
            if collections is None or row["c"] in collections
        ]
        return Batch(changes, rows[-1]["_id"] if rows else after)

    async def wait(self, after: int, timeout: float) -> None:
        """Other store processes may append: look every POLL seconds too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await super().wait(after, min(POLL, max(deadline - time.monotonic(), 0.0)))
            if await self.last() > after:
                return

    async def trim(self) -> int:
        retention = self.retention
        if retention.changes is None and retention.age is None:
            return 0
        first, last = await self._extent()
        if not first:
            return 0
        bound = first - 1
        if retention.changes is not None:
            bound = max(bound, last - retention.changes)
        with driver_errors("trim the change log"):
            if retention.age is not None:
                young = [
                    c
                    async for c in self.changes.find(
                        {"at": {"$gte": time.time() - retention.age}}, {"_id": 1}
                    )
                    .sort("_id", 1)
                    .limit(1)
                ]
                bound = max(bound, young[0]["_id"] - 1 if young else last)
            bound = min(bound, first - 1 + TRIM_MOST)
            done = await self.changes.delete_many({"_id": {"$lte": bound}})
        return int(done.deleted_count)

    # -- read models -----------------------------------------------------------------------------

    async def state(self, projection: str) -> ProjectionState:
        with driver_errors("read a projection's state"):
            return _state(await self.projections.find_one({"_id": projection}))

    async def apply(
        self,
        projection: str,
        generation: int,
        position: int,
        target: DocumentStore,
        writes: builtins.list[Write],
        set_aside: builtins.list[SetAside],
    ) -> bool:
        assert isinstance(target, MongoStore)

        async def work(session: Any) -> bool:
            state = _state(await self.projections.find_one({"_id": projection}, session=session))
            if generation < state.live:
                raise Superseded(
                    f"generation {generation} of {projection} is behind the live one ({state.live})"
                )
            if position <= state.position(generation):
                return False
            for write in writes:
                await put(target, session, write.key, write.document)
            if set_aside:
                now = time.time()
                await self.set_aside.insert_many(
                    [
                        {
                            "projection": projection,
                            "position": s.position,
                            "c": s.collection,
                            "k": s.key,
                            "op": s.op,
                            "cmd": s.command,
                            "error": s.error,
                            "at": now,
                        }
                        for s in set_aside
                    ],
                    session=session,
                )
            await self.projections.update_one(
                {"_id": projection},
                {
                    "$set": {f"positions.{generation}": position},
                    "$setOnInsert": {"live": 0},
                    "$inc": {"set_aside": len(set_aside)},
                },
                upsert=True,
                session=session,
            )
            return True

        with driver_errors("write a read model"):
            return await self.transaction(work)

    async def begin(self, projection: str) -> int:
        state = await self.state(projection)
        generation = state.live + 1
        positions = {str(g): p for g, p in state.positions.items() if g <= state.live}
        positions[str(generation)] = 0
        with driver_errors("begin a replay"):
            await self.projections.update_one(
                {"_id": projection},
                {"$set": {"positions": positions, "live": state.live}},
                upsert=True,
            )
        return generation

    async def switch(self, projection: str, generation: int) -> None:
        state = await self.state(projection)
        positions = {str(g): p for g, p in state.positions.items() if g >= generation}
        with driver_errors("switch a read model"):
            await self.projections.update_one(
                {"_id": projection}, {"$set": {"live": generation, "positions": positions}}
            )

    async def collection(self, name: str, indexes: Indexes, timestamp: str | None) -> DocumentStore:
        store = MongoStore(
            self.database[name],
            last_writer_wins=self.template.last_writer_wins,
            clock=self.template._clock,
            indexes=indexes,
        )
        if self._shared is not None:
            self._shared.users += 1
            store._client = self._shared
        store.log = self
        with driver_errors(f"make the indexes of {name}"):
            await store._make_indexes()
        return store

    async def drop(self, target: DocumentStore) -> None:
        assert isinstance(target, MongoStore)
        with driver_errors(f"drop {target.name}"):
            await target.collection.drop()


def _state(found: dict[str, Any] | None) -> ProjectionState:
    if not found:
        return ProjectionState()
    positions = {int(g): int(p) for g, p in (found.get("positions") or {}).items()}
    return ProjectionState(int(found.get("live", 0)), positions, int(found.get("set_aside", 0)))


# -- the writes of a store with a log: each in the caller's transaction ---------------------------


async def _key(store: MongoStore, session: Any, key: str) -> tuple[KeyState, Document | None]:
    found = await store.collection.find_one(
        {"_id": key}, {"_cmd": 1, "_seq": 1, "d": 1}, session=session
    )
    state = KeyState.of(found)
    return state, (found.get("d", {}) if state.live and found else None)


def _stamp(command: str | None) -> dict[str, str]:
    return {"_cmd": command} if command else {}


async def _set(
    store: MongoStore,
    session: Any,
    key: str,
    fields: Document,
    command: str | None,
    previous: Document | None,
) -> None:
    """The key holds `fields` now: in its place if it held a document (`previous`), else as a
    new one; logged."""
    fields = {k: v for k, v in fields.items() if k != "_id"}
    if previous is not None:
        await store.collection.update_one(
            {"_id": key}, {"$set": {"d": fields, **_stamp(command)}}, session=session
        )
    else:
        await store.collection.update_one(
            {"_id": key},
            {"$set": {"d": fields, "_seq": store._clock.next_id(), **_stamp(command)}},
            upsert=True,
            session=session,
        )
    op = "update" if previous is not None else "insert"
    await store.log.append(session, store.name, key, op, command, fields, previous)


async def _remove(
    store: MongoStore, session: Any, key: str, command: str | None, previous: Document | None
) -> None:
    """The key holds no document now; a tombstone keeps its command (a key without one goes).
    Logged if there was a document."""
    if command:
        await store.collection.update_one(
            {"_id": key},
            {"$unset": {"d": "", "_seq": ""}, "$set": {"_cmd": command}},
            upsert=True,
            session=session,
        )
    else:
        await store.collection.delete_one({"_id": key, "_cmd": {"$exists": False}}, session=session)
        await store.collection.update_one(
            {"_id": key}, {"$unset": {"d": "", "_seq": ""}}, session=session
        )
    if previous is not None:
        await store.log.append(session, store.name, key, "delete", command, None, previous)


def _check(op: str, key: str, state: KeyState, command: str | None, lww: bool) -> None:
    outcome = verdict(op, state, command, lww)
    if outcome == "stale":
        raise StaleCommand(key, state.last or "")
    if outcome == "duplicate":
        raise DuplicateKey(key)
    if outcome == "not found":
        raise NotFound(key)


async def insert(store: MongoStore, key: str, document: Document, command: str | None) -> None:
    async def work(session: Any) -> None:
        state, previous = await _key(store, session, key)
        _check("insert", key, state, command, store.last_writer_wins)
        await _set(store, session, key, document, command, previous)

    await store.log.transaction(work)


async def update(store: MongoStore, key: str, fields: Document, command: str | None) -> Document:
    async def work(session: Any) -> Document:
        state, previous = await _key(store, session, key)
        _check("update", key, state, command, store.last_writer_wins)
        updated = {**(previous or {}), **{k: v for k, v in fields.items() if k != "_id"}}
        await _set(store, session, key, updated, command, previous)
        return updated

    updated: Document = await store.log.transaction(work)
    return updated


async def delete(store: MongoStore, key: str, command: str | None) -> None:
    async def work(session: Any) -> None:
        state, previous = await _key(store, session, key)
        _check("delete", key, state, command, store.last_writer_wins)
        if previous is not None or command:  # else nothing there, and nothing to remember
            await _remove(store, session, key, command, previous)

    await store.log.transaction(work)


async def insert_many(
    store: MongoStore, documents: dict[str, Document], command: str | None
) -> int:
    """All the new documents or none: one transaction."""

    async def work(session: Any) -> int:
        wanted = []
        taken = []
        for key in documents:
            state, previous = await _key(store, session, key)
            outcome = verdict("insert", state, command, store.last_writer_wins)
            if outcome == "duplicate":
                taken.append(key)
            elif outcome == "apply":
                wanted.append((key, previous))
        if taken:
            raise DuplicateKey(", ".join(taken))
        for key, previous in wanted:
            await _set(store, session, key, documents[key], command, previous)
        return len(wanted)

    count: int = await store.log.transaction(work)
    return count


async def delete_many(store: MongoStore, keys: builtins.list[str], command: str | None) -> int:
    async def work(session: Any) -> int:
        removed = 0
        for key in dict.fromkeys(keys):
            state, previous = await _key(store, session, key)
            if command and not supersedes(command, state.last):
                continue
            if previous is not None:
                removed += 1
            if previous is not None or command:
                await _remove(store, session, key, command, previous)
        return removed

    count: int = await store.log.transaction(work)
    return count


async def put(store: MongoStore, session: Any, key: str, document: Document | None) -> None:
    """A read model's write, in the caller's transaction."""
    _, previous = await _key(store, session, key)
    if document is None:
        if previous is not None:
            await _remove(store, session, key, None, previous)
    else:
        await _set(store, session, key, document, None, previous)
