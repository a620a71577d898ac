"""Records about past commands, kept for a while and no more: a gateway's command statuses, a
store's answers to the commands it applied. A time and a count bound them (the topology's
`*_retention`), so that a node serving commands for months holds what a day of them needs, not
everything it ever saw.

In memory, at most `memory_count` records. With a database (stores/database.py), every record
is also written to a table of it (without waiting for the commit: these records help, they are
not what makes a command apply once), at most `count` of them, and the most recent
`memory_count` (there: the retention's `cache`) stay in memory as well; a record not in memory
is read from the table.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cqrs_flow.stores.base import StoreError
from cqrs_flow.stores.database import Database
from cqrs_flow.topology.model import RecordRetention

__all__ = ["Retained"]

PRUNE_EVERY = 1_000  # records written between two prunings of the table
PRUNE_SECONDS = 60.0  # and at least this often while records are written


def schema(table: str) -> Callable[[sqlite3.Connection], None]:
    """What `table` needs in a database (run in its schema transaction)."""

    def create(connection: sqlite3.Connection) -> None:
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"  # the order records were first written in
            " id TEXT NOT NULL UNIQUE, at REAL NOT NULL, value BLOB NOT NULL)"
        )
        connection.execute(f"CREATE INDEX IF NOT EXISTS {table}_at ON {table} (at)")

    return create


class Retained:
    """Records by id, each kept for `keep` seconds after it was last written."""

    def __init__(
        self,
        keep: float,
        count: int,
        memory_count: int,
        database: Database | None = None,
        table: str = "retained",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keep, self.count, self.memory_count = keep, count, memory_count
        self.database, self.table, self.clock = database, table, clock
        self._memory: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._written = 0
        self._pruned_at = clock()

    @classmethod
    def kept_as(
        cls, retention: RecordRetention | None, database: Database | None, table: str
    ) -> Retained:
        """Records kept as the topology's `retention` says (its defaults with None): in memory
        only, or in `table` of `database` with a cache of the most recent in memory."""
        retention = retention or RecordRetention()
        in_memory = retention.in_memory(database is not None)
        return cls(retention.time, retention.count, in_memory, database, table)

    def __len__(self) -> int:
        """The records in memory."""
        return len(self._memory)

    def put(self, record_id: str, value: bytes) -> None:
        now = self.clock()
        self._memory[record_id] = (now, value)
        self._memory.move_to_end(record_id)
        self._trim(now)
        if self.database is None:
            return
        table = self.table

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT INTO {table} (id, at, value) VALUES (?, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET at = excluded.at, value = excluded.value",
                (record_id, now, value),
            )

        self._submit(write)
        self._written += 1
        if self._written % PRUNE_EVERY == 0 or now - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = now
            self._submit(self._prune(now))

    def cached(self, record_id: str) -> bytes | None:
        """The record if it is in memory and not expired."""
        found = self._memory.get(record_id)
        if found is None or found[0] < self.clock() - self.keep:
            return None
        return found[1]

    async def get(self, record_id: str) -> bytes | None:
        """The record, from memory or the table; None if there is none (or it expired)."""
        found = self.cached(record_id)
        if found is not None or self.database is None:
            return found
        table, oldest = self.table, self.clock() - self.keep

        def read(c: sqlite3.Connection) -> Any:
            return c.execute(
                f"SELECT value FROM {table} WHERE id = ? AND at >= ?", (record_id, oldest)
            ).fetchone()

        try:
            row = await self.database.read(read)
        except (StoreError, sqlite3.Error):
            return None
        return bytes(row[0]) if row else None

    def _trim(self, now: float) -> None:
        memory = self._memory
        while len(memory) > self.memory_count:
            memory.popitem(last=False)
        oldest = now - self.keep
        while memory:
            first = next(iter(memory.values()))
            if first[0] >= oldest:
                break
            memory.popitem(last=False)

    def _prune(self, now: float) -> Callable[[sqlite3.Connection], None]:
        table, oldest, count = self.table, now - self.keep, self.count

        def prune(c: sqlite3.Connection) -> None:
            c.execute(f"DELETE FROM {table} WHERE at < ?", (oldest,))
            c.execute(
                f"DELETE FROM {table} WHERE seq <= (SELECT max(seq) FROM {table}) - ?", (count,)
            )

        return prune

    def _submit(self, work: Callable[[sqlite3.Connection], None]) -> None:
        assert self.database is not None
        try:
            done = self.database.submit(work)
        except StoreError:
            return  # the database failed: its owner ends the node
        done.add_done_callback(_retrieve)

    async def settled(self) -> None:
        """Return once what was written so far is committed (tests, benchmarks)."""
        if self.database is not None:
            await self.database.settled()


def _retrieve(done: asyncio.Future[Any]) -> None:
    """A record that could not be written (the disk is full) is only missing from the table."""
    if not done.cancelled():
        done.exception()
