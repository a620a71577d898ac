"""The store node's memory of the commands it applied and what it answered each."""

from __future__ import annotations

from pathlib import Path

from cqrs_flow.stores.database import SMALL_CACHE_KIB, Database
from cqrs_flow.stores.retained import Retained, schema
from cqrs_flow.topology.model import RecordRetention

__all__ = ["DIRECTORY", "AppliedCommands"]

DIRECTORY = "applied"  # in a durable store's data directory: a database of its own
_TABLE = "applied"


class AppliedCommands:
    """The command ids the store applied, with the response each got: a command delivered again
    (after a writer restarted, say) is answered the same and not applied twice.

    Kept as the store's `applied_retention` says: for a time and up to a count, in memory, or
    with a data directory in a database of its own there (`<data>/applied/`), so that a restarted
    store still answers a command delivered again as it did the first time. Past that, the keys'
    last command ids (kept by the backend) still keep a command from being applied twice; it is
    then answered with its key only."""

    def __init__(self, retention: RecordRetention | None = None, database: Database | None = None):
        self.database = database
        self._records = Retained.kept_as(retention, database, _TABLE)

    @classmethod
    async def open(
        cls, directory: Path, retention: RecordRetention | None = None
    ) -> AppliedCommands:
        """Kept in `directory` (created, private, locked); StoreError if it cannot be used."""
        database = await Database.open(
            directory, "applied.db", "store", schema(_TABLE), readers=1, cache_kib=SMALL_CACHE_KIB
        )
        return cls(retention, database)

    def cached(self, command_id: str) -> bytes | None:
        """The answer if it is in memory: a store asks this before applying a command, and the
        disk (`get`) only once its backend says the command is not new (Stale), so that a new
        command costs no read."""
        return self._records.cached(command_id)

    async def get(self, command_id: str) -> bytes | None:
        return await self._records.get(command_id)

    def add(self, command_id: str, response: bytes) -> None:
        self._records.put(command_id, response)

    def __len__(self) -> int:
        """The records in memory."""
        return len(self._records)

    async def close(self) -> None:
        if self.database is not None:
            await self.database.close()
