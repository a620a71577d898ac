"""The backends whose change logs the log contract runs over, opened as a store node opens them:
a store per collection and the log they share."""

from __future__ import annotations

from pathlib import Path

from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.log import KEEP_EVERYTHING, ChangeLog, Retention
from cqrs_flow.stores.memory import MemoryStore
from cqrs_flow.stores.memory_log import MemoryLog
from cqrs_flow.stores.sqlite import SqliteStore, Table
from cqrs_flow.stores.sqlite_log import SqliteLog

LOGGED = ["memory", "sqlite", "mongodb-emulated"]


async def open_logged(
    kind: str,
    directory: Path,
    collections: tuple[str, ...],
    retention: Retention = KEEP_EVERYTHING,
    last_writer_wins: bool = False,
) -> tuple[list, ChangeLog]:
    indexes = Indexes("id")
    if kind == "memory":
        log = MemoryLog(retention, last_writer_wins)
        stores = [MemoryStore(name, last_writer_wins, indexes, log=log) for name in collections]
        return stores, log
    if kind == "sqlite":
        stores = await SqliteStore.open_many(
            directory / "data",
            {name: Table(None, indexes) for name in collections},
            last_writer_wins=last_writer_wins,
        )
        return stores, SqliteLog(stores, retention)
    if kind == "mongodb-emulated":
        from cqrs_flow.stores.mongodb import MongoStore
        from cqrs_flow.stores.mongodb_log import MongoLog

        from .mongo_emulation import EmulatedClient, EmulatedCollection

        first = EmulatedCollection(collections[0])
        mongo = [
            MongoStore(
                first if i == 0 else first.database[name],
                last_writer_wins=last_writer_wins,
                indexes=indexes,
            )
            for i, name in enumerate(collections)
        ]
        return mongo, MongoLog(
            mongo, retention, database=first.database, client=EmulatedClient(first.database)
        )
    raise ValueError(kind)


async def open_mongodb(
    url: str, database: str, collections: tuple[str, ...]
) -> tuple[list, ChangeLog]:
    """Stores on a real MongoDB server (at `url`, in `database`) and their log, as a store node
    opens them."""
    from cqrs_flow.stores.mongodb import MongoStore
    from cqrs_flow.stores.mongodb_log import MongoLog

    stores = await MongoStore.open_many(
        url, database, {name: Indexes("id") for name in collections}
    )
    return stores, MongoLog(stores, KEEP_EVERYTHING)
