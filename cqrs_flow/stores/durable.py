"""The durable backend: the in-memory store, plus a write-ahead journal and snapshots on disk.

A store node with `data: <directory>` uses it. Every write a call acknowledges is on disk
(fdatasync'ed, one sync shared by the writes waiting) and survives a kill -9 of the process; a read
never shows a write a crash could take back. Layout, compaction and failures:
docs/ARCHITECTURE.md, "Store backends".
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from cqrs_flow.stores.base import (
    Document,
    DuplicateKey,
    InvalidDocument,
    NotFound,
    StaleCommand,
    StoreError,
)
from cqrs_flow.stores.journal import (
    Journal,
    JournalFiles,
    Records,
    frame,
    open_journal,
    private_file,
    replay,
    sync_directory,
    wait,
)
from cqrs_flow.stores.memory import MemoryStore

__all__ = ["DurableStore"]

log = logging.getLogger("cqrs_flow.store")

SNAPSHOT_FORMAT = 1
SNAPSHOT_CHUNK = 1000  # documents per snapshot record
COMPACT_MIN_RECORDS = 10_000
_JOURNAL = re.compile(r"^journal\.(\d+)$")


class DurableStore(MemoryStore):
    """MemoryStore whose writes are journaled in `directory` before they are acknowledged.

    Open it with `await DurableStore.open(directory, collection)`; it needs a running event loop.
    """

    def __init__(
        self,
        directory: Path,
        collection: str,
        compact_min_records: int,
        group_commit: bool,
        last_writer_wins: bool = False,
    ) -> None:
        super().__init__(collection, last_writer_wins)
        self.directory = directory
        self.compact_min_records = compact_min_records
        self._group_commit = group_commit
        self._generation = 0  # of the journal being appended to
        self._records = 0  # journal records since the snapshot
        self.files: JournalFiles | None = None
        self.journal: Journal

    @classmethod
    async def open(
        cls,
        directory: str | Path,
        collection: str,
        *,
        compact_min_records: int = COMPACT_MIN_RECORDS,
        group_commit: bool = True,
        last_writer_wins: bool = False,
    ) -> DurableStore:
        store = cls(
            Path(directory), collection, compact_min_records, group_commit, last_writer_wins
        )
        try:
            store._open()
        except BaseException:
            if store.files is not None:
                store.files.release()
            raise
        store._maybe_compact()
        return store

    # -- start-up -------------------------------------------------------------------------------

    def _open(self) -> None:
        started = time.monotonic()
        self.files = JournalFiles(self.directory, "store")
        (self.directory / "snapshot.tmp").unlink(missing_ok=True)  # a compaction cut short

        snapshot_generation = self._load_snapshot()
        journals = sorted(
            int(m.group(1)) for p in self.directory.iterdir() if (m := _JOURNAL.match(p.name))
        )
        for generation in [g for g in journals if g < snapshot_generation]:
            (self.directory / f"journal.{generation}").unlink()  # in the snapshot already
        journals = [g for g in journals if g >= snapshot_generation]
        if journals and journals[0] != snapshot_generation:
            raise StoreError(
                f"{self.directory}: journal.{snapshot_generation} is missing "
                f"(journals from {journals[0]} on; snapshot generation "
                f"{snapshot_generation}); refusing to start with part of the data"
            )
        for generation in journals:
            self._records += self._replay(self.directory / f"journal.{generation}")
        self._generation = journals[-1] if journals else snapshot_generation
        self.journal = self.files.start(
            self.directory / f"journal.{self._generation}", self._group_commit
        )
        log.info(
            "data in %s: %d documents (snapshot generation %d, %d journal records replayed) "
            "in %.2fs",
            self.directory,
            len(self),
            snapshot_generation,
            self._records,
            time.monotonic() - started,
        )

    def _load_snapshot(self) -> int:
        path = self.directory / "snapshot"
        if not path.exists():
            return 0
        with open(path, "rb") as file:
            records = Records(file)
            items = iter(records)
            head = next(items, None)
            if (
                not head
                or head.get("format") != SNAPSHOT_FORMAT
                or not isinstance(head.get("snapshot"), int)
            ):
                raise StoreError(f"{path} is not a snapshot this version can read: {head!r:.100}")
            count = None
            for record in items:
                if "docs" in record:
                    for stored in record["docs"]:
                        self._restore(stored["_id"], stored)
                elif "commands" in record:
                    self._commands.update(record["commands"])
                else:
                    count = record.get("end")
                    break
            if count != len(self) or records.end != records.size:
                raise StoreError(
                    f"{path} is damaged (ends after {records.end} of {records.size} "
                    f"bytes, {len(self)} documents); refusing to start with part of the data"
                )
        generation: int = head["snapshot"]  # an int, checked above
        return generation

    def _restore(self, key: str, stored: dict[str, Any]) -> None:
        """A document read back from disk, as stored (with `_id`): no checks, no copy."""
        if self._mirror is not None:
            self._mirror[key] = stored
            self._documents[key] = stored
        else:
            stored.pop("_id", None)
            self._put_new(key, stored)

    def _replay(self, path: Path) -> int:
        anomalies = 0

        def apply(record: dict[str, Any]) -> None:
            nonlocal anomalies
            try:
                self._apply(record)
            except (
                NotFound,
                DuplicateKey,
                StaleCommand,
                KeyError,
                TypeError,
                AttributeError,
            ) as exc:
                anomalies += 1
                log.error("%s: a record (%s) does not apply: %r", path, record.get("op"), exc)

        replayed = replay(path, apply)
        if anomalies:
            log.error("%s: %d of %d records did not apply", path, anomalies, replayed)
        return replayed

    def _apply(self, record: dict[str, Any]) -> None:
        # A record replays under the rules it was written with, whatever the store's are now.
        op, command, lww = record.get("op"), record.get("cmd"), bool(record.get("lww"))
        if op == "insert":
            self._insert(record["key"], record["doc"], command, lww)
        elif op == "update":
            self._update(record["key"], record["fields"], command, lww)
        elif op == "delete":
            self._delete(record["key"], command, lww)
        elif op == "insert_many":
            self._insert_many(record["docs"], command, lww)
        elif op == "delete_many":
            self._delete_many(record["keys"], command)
        else:
            raise KeyError(f"unknown operation {op!r}")

    # -- writes: applied, journaled, synced -----------------------------------------------------

    async def insert(self, key: str, document: Document, command: str | None = None) -> None:
        self.journal.check()
        lww = self._lww(command)
        record = _record({"op": "insert", "key": key, "doc": document}, command, lww)
        self._insert(key, document, command, lww)
        await self._log(record)

    async def update(self, key: str, fields: Document, command: str | None = None) -> Document:
        self.journal.check()
        lww = self._lww(command)
        record = _record({"op": "update", "key": key, "fields": fields}, command, lww)
        updated = self._update(key, fields, command, lww)
        await self._log(record)
        return updated

    async def delete(self, key: str, command: str | None = None) -> None:
        self.journal.check()
        lww = self._lww(command)
        record = _record({"op": "delete", "key": key}, command, lww)
        self._delete(key, command, lww)
        await self._log(record)

    async def insert_many(self, documents: dict[str, Document], command: str | None = None) -> int:
        self.journal.check()
        lww = self._lww(command)
        record = _record({"op": "insert_many", "docs": documents}, command, lww)
        count = self._insert_many(documents, command, lww)
        if count:
            await self._log(record)
        return count

    async def delete_many(self, keys: list[str], command: str | None = None) -> int:
        self.journal.check()
        # Replays the same: absent keys are absent then too, and get the command again.
        record = _record({"op": "delete_many", "keys": list(keys)}, command, False)
        removed = self._delete_many(keys, command)
        if removed or command:
            await self._log(record)
        return len(removed)

    async def _log(self, record: bytes) -> None:
        done = self.journal.append(record)  # right after the change in memory: the same order
        self._records += 1
        self._maybe_compact()
        await wait(done)

    # -- reads: never show what a crash could take back -----------------------------------------

    async def get(self, key: str) -> Document:
        try:
            return self._get(key)
        finally:
            await self.journal.settled()

    async def list(self, count: int) -> list[Document]:
        found = self._list(count)
        await self.journal.settled()
        return found

    # -- compaction -----------------------------------------------------------------------------

    def _maybe_compact(self) -> None:
        if self.files is not None and self._records > max(self.compact_min_records, len(self)):
            self.files.compact_with(self._compact, "compaction")

    async def _compact(self) -> None:
        generation = self._generation + 1
        try:
            fd = await asyncio.to_thread(open_journal, self.directory / f"journal.{generation}")
        except OSError as exc:
            log.error("compaction: cannot start journal.%d: %s", generation, exc)
            return
        assert self.files is not None, "compaction runs only while the journal is open"
        started = time.monotonic()
        old_complete = self.files.rotate(fd)
        # Between the rotation and the next await: exactly what the old journals hold.
        self._generation, counted = generation, self._records
        documents = list(self._documents.values())  # point in time: stored documents never change
        commands = list(self._commands.items())  # str -> str: the pairs never change either
        paused = time.monotonic() - started
        await old_complete  # the old journal is complete on disk
        try:
            size = await asyncio.to_thread(self._write_snapshot, generation, documents, commands)
        except OSError as exc:
            log.error(
                "compaction: cannot write the snapshot (journals are kept, so nothing is lost): %s",
                exc,
            )
            return
        self._records -= counted
        log.info(
            "compacted %d journal records into a snapshot of %d documents (%.1f MB) in %.2fs "
            "(%.0f ms in the event loop)",
            counted,
            len(documents),
            size / 1e6,
            time.monotonic() - started,
            paused * 1000,
        )

    def _write_snapshot(
        self,
        generation: int,
        documents: builtins.list[dict[str, Any]],
        commands: builtins.list[tuple[str, str]],
    ) -> int:
        """In a worker thread: write, sync and rename the snapshot, then drop older journals."""
        temporary, path = self.directory / "snapshot.tmp", self.directory / "snapshot"
        with open(temporary, "wb", opener=private_file) as file:
            file.write(frame({"snapshot": generation, "format": SNAPSHOT_FORMAT}))
            for start in range(0, len(documents), SNAPSHOT_CHUNK):
                file.write(frame({"docs": documents[start : start + SNAPSHOT_CHUNK]}))
            for start in range(0, len(commands), SNAPSHOT_CHUNK):
                file.write(frame({"commands": dict(commands[start : start + SNAPSHOT_CHUNK])}))
            file.write(frame({"end": len(documents)}))
            file.flush()
            os.fsync(file.fileno())
            size = file.tell()
        os.replace(temporary, path)
        sync_directory(self.directory)
        for name in os.listdir(self.directory):
            match = _JOURNAL.match(name)
            if match and int(match.group(1)) < generation:
                os.unlink(self.directory / name)
        return size

    # -- life -----------------------------------------------------------------------------------

    async def wait_failure(self) -> None:
        await asyncio.shield(self.journal.task)

    async def close(self) -> None:
        if self.files is not None:
            await self.files.close()


def _record(payload: dict[str, Any], command: str | None, lww: bool) -> bytes:
    """The framed record of a write, made before the write changes anything."""
    if command:
        payload["cmd"] = command
    if lww:
        payload["lww"] = True
    try:
        return frame(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidDocument(f"cannot journal the document: {exc}") from None
