"""The change log of the durable store: the `changes` table of its database, which every write
appends to in its own transaction (stores/sqlite.py), and the projections' bookkeeping beside it.

A position is a row's `seq` (AUTOINCREMENT: never given twice, even after the rows before it are
trimmed; a rolled-back write gives its number back, as it was never seen). Reads run on the
reader connections, each in one read transaction; trimming and a projection's writes go through
the database's writer like any write. Why and how: docs/ARCHITECTURE.md, "The change log".
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Collection
from typing import Any

from cqrs_flow.stores.base import DocumentStore
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
)
from cqrs_flow.stores.sqlite import SqliteStore, last_position, schema, table_of

__all__ = ["SqliteLog"]

TRIM_ROWS = 50_000  # most changes one trim drops (a transaction the writes wait behind)
SAMPLE = 1000  # newest changes whose size estimates the log's


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SqliteLog(ChangeLog):
    """The log of the SqliteStores of one database (one store node)."""

    def __init__(self, stores: builtins.list[SqliteStore], retention: Retention) -> None:
        super().__init__(retention)
        self.database = stores[0].database
        self.last_writer_wins = stores[0].last_writer_wins
        self.database.on_commit.append(self.notify)

    # -- the log ---------------------------------------------------------------------------------

    async def read(self, after: int, limit: int, collections: Collection[str] | None) -> Batch:
        def work(c: sqlite3.Connection) -> builtins.list[Any]:
            c.execute("BEGIN")  # the check and the rows from one snapshot
            try:
                check_position(after, _info(c, size=False))
                return c.execute(
                    "SELECT seq, collection, key, op, cmd, doc, prev, at, subject FROM changes"
                    " WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, limit),
                ).fetchall()
            finally:
                c.execute("COMMIT")

        rows = await self.database.read(work)
        changes = [
            Change(seq, collection, key, op, cmd, _loads(doc), _loads(prev), at, subject)
            for seq, collection, key, op, cmd, doc, prev, at, subject in rows
            if collections is None or collection in collections
        ]
        return Batch(changes, rows[-1][0] if rows else after)

    async def info(self) -> LogInfo:
        return await self.database.read(_info)

    async def last(self) -> int:
        return await self.database.read(last_position)

    async def trim(self) -> int:
        retention = self.retention
        if retention.changes is None and retention.age is None:
            return 0

        def work(c: sqlite3.Connection) -> int:
            first = c.execute("SELECT min(seq) FROM changes").fetchone()[0]
            if first is None:
                return 0
            bound = first - 1  # the changes up to it go
            if retention.changes is not None:
                bound = max(bound, last_position(c) - retention.changes)
            if retention.age is not None:
                young = c.execute(
                    "SELECT seq FROM changes WHERE at >= ? ORDER BY seq LIMIT 1",
                    (time.time() - retention.age,),
                ).fetchone()
                bound = max(bound, young[0] - 1 if young else last_position(c))
            bound = min(bound, first - 1 + TRIM_ROWS)
            return c.execute("DELETE FROM changes WHERE seq <= ?", (bound,)).rowcount

        return await self.database.write(work)

    # -- read models -----------------------------------------------------------------------------

    async def state(self, projection: str) -> ProjectionState:
        def work(c: sqlite3.Connection) -> ProjectionState:
            state = _state(c, projection)
            state.set_aside = c.execute(
                "SELECT count(*) FROM set_aside WHERE projection = ?", (projection,)
            ).fetchone()[0]
            return state

        return await self.database.read(work)

    async def apply(
        self,
        projection: str,
        generation: int,
        position: int,
        target: DocumentStore,
        writes: builtins.list[Write],
        set_aside: builtins.list[SetAside],
    ) -> bool:
        assert isinstance(target, SqliteStore) and target.database is self.database

        def work(c: sqlite3.Connection) -> bool:
            state = _state(c, projection)
            if generation < state.live:
                raise Superseded(
                    f"generation {generation} of {projection} is behind the live one ({state.live})"
                )
            if position <= state.position(generation):
                return False
            for write in writes:
                target._put(c, write.key, write.document)
            now = time.time()
            c.executemany(
                "INSERT INTO set_aside (projection, position, collection, key, op, cmd, error, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (projection, s.position, s.collection, s.key, s.op, s.command, s.error, now)
                    for s in set_aside
                ],
            )
            c.execute(
                "INSERT INTO projections (name, generation, position, live) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name, generation) DO UPDATE SET position = excluded.position",
                (projection, generation, position, int(generation == state.live)),
            )
            return True

        return await self.database.write(work)

    async def begin(self, projection: str) -> int:
        def work(c: sqlite3.Connection) -> int:
            state = _state(c, projection)
            if not state.positions:  # the first generation is live from its first write
                c.execute("INSERT INTO projections VALUES (?, 0, 0, 1)", (projection,))
            generation = state.live + 1
            c.execute(  # a replay that did not finish is started again
                "DELETE FROM projections WHERE name = ? AND generation > ?",
                (projection, state.live),
            )
            c.execute("INSERT INTO projections VALUES (?, ?, 0, 0)", (projection, generation))
            return generation

        return await self.database.write(work)

    async def switch(self, projection: str, generation: int) -> None:
        def work(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE projections SET live = (generation = ?) WHERE name = ?",
                (generation, projection),
            )
            c.execute(
                "DELETE FROM projections WHERE name = ? AND generation < ?",
                (projection, generation),
            )

        await self.database.write(work)

    async def collection(self, name: str, indexes: Indexes, timestamp: str | None) -> DocumentStore:
        await self.database.write(schema(name, indexes))
        store = SqliteStore(self.database, name, self.last_writer_wins, timestamp, indexes)
        await self.database.read(store._count_and_last_seq)
        return store

    async def drop(self, target: DocumentStore) -> None:
        assert isinstance(target, SqliteStore) and target.database is self.database

        def work(c: sqlite3.Connection) -> None:
            c.execute(f"DROP TABLE IF EXISTS {table_of(target.collection)}")  # and its indexes
            c.execute("DELETE FROM counts WHERE collection = ?", (target.collection,))

        await self.database.write(work)


def _info(c: sqlite3.Connection, size: bool = True) -> LogInfo:
    """The log's extent: positions have no holes (AUTOINCREMENT, trimmed from the oldest), so
    the count is last - first + 1; the bytes (with `size`) are the newest changes' size, scaled
    up."""
    first = c.execute("SELECT min(seq) FROM changes").fetchone()[0]
    last = last_position(c)
    if first is None:
        return LogInfo(0, last, 0, 0)
    count = last - first + 1
    if not size:
        return LogInfo(first, last, count, 0)
    sampled, size = c.execute(
        "SELECT count(*), coalesce(sum(length(collection) + length(key) + length(op)"
        " + coalesce(length(cmd), 0) + coalesce(length(doc), 0) + coalesce(length(prev), 0)"
        " + coalesce(length(subject), 0)"
        " + 24), 0) FROM (SELECT * FROM changes ORDER BY seq DESC LIMIT ?)",
        (SAMPLE,),
    ).fetchone()
    return LogInfo(first, last, count, int(size * count / sampled) if sampled else 0)


def _state(c: sqlite3.Connection, projection: str) -> ProjectionState:
    state = ProjectionState()
    for generation, position, live in c.execute(
        "SELECT generation, position, live FROM projections WHERE name = ?", (projection,)
    ):
        state.positions[generation] = position
        if live:
            state.live = generation
    return state
