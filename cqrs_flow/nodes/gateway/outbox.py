"""The gateway's outbox: commands it accepted that no writer has reported on yet, published
again after `redeliver_after`, or at once (`due_now`) when a writer or the broker may have lost
them. With a data directory they are kept in an SQLite database there too (stores/database.py),
and a mutation is answered only once its command is committed. Why: docs/ARCHITECTURE.md."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

from cqrs_flow.nodes.gateway.commands import TABLE as STATUS_TABLE
from cqrs_flow.stores.base import StoreError
from cqrs_flow.stores.database import SMALL_CACHE_KIB, Database
from cqrs_flow.stores.legacy import (
    migrated,
    note_migration,
    old_outbox_files,
    read_old_outbox,
    set_aside,
)
from cqrs_flow.stores.retained import schema as retained_schema

__all__ = ["DATABASE", "Outbox"]

log = logging.getLogger("cqrs_flow.outbox")

DATABASE = "outbox.db"


def _schema(connection: sqlite3.Connection) -> None:
    connection.execute(
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    connection.execute(
        "CREATE TABLE IF NOT EXISTS outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"  # the order commands were accepted in
        " id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL)"
    )
    retained_schema(STATUS_TABLE)(connection)  # the command book's (commands.py)


class Outbox:
    """Commands published and not yet reported on, in the order they were accepted.

    `Outbox(redeliver_after)` is in memory; `await Outbox.open(directory, redeliver_after)`
    keeps them in `directory` too (and needs a running event loop). It holds at most `capacity`
    commands (the gateway's `outbox_size`): `full` says when to refuse more.
    """

    def __init__(self, redeliver_after: float, capacity: int = 100_000) -> None:
        self.redeliver_after = redeliver_after
        self.capacity = capacity
        self._waiting: OrderedDict[str, tuple[str, bytes, float]] = (
            OrderedDict()
        )  # id -> topic, payload, due
        self.database: Database | None = None

    @classmethod
    async def open(
        cls, directory: Path, redeliver_after: float, capacity: int = 100_000, now: float = 0.0
    ) -> Outbox:
        """The outbox kept in `directory`, with what it held before: all due at `now`.
        StoreError if the directory cannot be used."""
        outbox = cls(redeliver_after, capacity)
        outbox.database = database = await Database.open(
            directory, DATABASE, "gateway", _schema, cache_kib=SMALL_CACHE_KIB
        )
        try:
            await outbox._migrate(directory)
            rows = await database.read(
                lambda c: c.execute("SELECT id, topic, payload FROM outbox ORDER BY seq").fetchall()
            )
        except BaseException:
            await database.close()
            raise
        outbox._waiting = OrderedDict(
            (cid, (topic, bytes(payload), now)) for cid, topic, payload in rows
        )
        if outbox._waiting:
            log.info(
                "outbox in %s: %d command(s) accepted before a restart and not reported on; "
                "publishing them again",
                directory,
                len(outbox._waiting),
            )
        return outbox

    async def _migrate(self, directory: Path) -> None:
        """The journals of the format before SQLite (`outbox.<G>`), moved into the database once."""
        assert self.database is not None
        old = await asyncio.to_thread(old_outbox_files, directory)
        if not old:
            return
        if not await self.database.read(migrated):
            waiting = await asyncio.to_thread(read_old_outbox, directory)

            def write(c: sqlite3.Connection) -> None:
                c.executemany(
                    "INSERT OR REPLACE INTO outbox (id, topic, payload) VALUES (?, ?, ?)",
                    [(cid, topic, payload) for cid, (topic, payload) in waiting.items()],
                )
                note_migration(c)

            await self.database.write(write)
            log.warning(
                "migrated the outbox in %s to SQLite (%s): %d command(s) waiting",
                directory,
                DATABASE,
                len(waiting),
            )
        aside = await asyncio.to_thread(set_aside, directory, old)
        log.warning("the outbox's files of the old format are kept in %s: delete them", aside)

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def durable(self) -> bool:
        """Whether commands are kept on disk (then the broker may be away when one is added)."""
        return self.database is not None

    @property
    def full(self) -> bool:
        return len(self._waiting) >= self.capacity

    async def add(self, command_id: str, topic: str, payload: bytes, now: float) -> None:
        """Keep a command until it is settled; with a database, return once it is committed
        (StoreError, and the command is not kept, if it cannot be)."""
        self._waiting[command_id] = (topic, payload, now + self.redeliver_after)
        if self.database is None:
            return

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO outbox (id, topic, payload) VALUES (?, ?, ?) ON CONFLICT (id)"
                " DO UPDATE SET topic = excluded.topic, payload = excluded.payload",
                (command_id, topic, payload),
            )

        try:
            await self.database.write(write)
        except StoreError:
            self._waiting.pop(command_id, None)
            raise

    def settle(self, command_ids: list[str]) -> None:
        """Forget commands a writer reported on (in the database without waiting for the commit:
        one that a crash brings back is published again, and applied once)."""
        known = [cid for cid in command_ids if self._waiting.pop(cid, None) is not None]
        if known and self.database is not None:

            def write(c: sqlite3.Connection) -> None:
                c.executemany("DELETE FROM outbox WHERE id = ?", [(cid,) for cid in known])

            try:
                self.database.submit(write)
            except StoreError:
                pass  # the outbox is failing: the node ends with wait_failure

    def due(self, now: float) -> list[tuple[str, str, bytes]]:
        """The commands to publish again now; each is due again `redeliver_after` later."""
        found = [
            (cid, topic, payload)
            for cid, (topic, payload, due) in self._waiting.items()
            if due <= now
        ]
        for command_id, topic, payload in found:
            self._waiting[command_id] = (topic, payload, now + self.redeliver_after)
            self._waiting.move_to_end(command_id)
        return found

    def due_now(self, now: float, topics: Collection[str] | None = None) -> int:
        """Make the commands on `topics` (all with None) due at `now`, when what they went to may
        have lost them (a writer that restarted, a broker the gateway reconnected to); how many."""
        wanted = None if topics is None else set(topics)
        found = [
            (cid, topic, payload)
            for cid, (topic, payload, due) in self._waiting.items()
            if due > now and (wanted is None or topic in wanted)
        ]
        for command_id, topic, payload in found:
            self._waiting[command_id] = (topic, payload, now)
        return len(found)

    async def wait_failure(self) -> None:
        """Raise StoreError if the database fails; never returns otherwise."""
        if self.database is None:
            await asyncio.Event().wait()
        else:
            await self.database.wait_failure()

    async def close(self) -> None:
        if self.database is not None:
            await self.database.close()
