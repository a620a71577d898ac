"""Data directories of the format before SQLite, read once to migrate them.

Until SQLite, a store's `data:` directory held a snapshot and journals (`snapshot`,
`journal.<G>`) and a gateway's held outbox journals (`outbox.<G>`): records of a length, a CRC-32
and a JSON object each. Opening such a directory migrates it: its records are replayed in
memory, written to the SQLite database in one transaction that also notes the migration, and the
old files are then moved to `old-format/` in the directory (a crash in between leaves them to be
moved at the next start). docs/ARCHITECTURE.md, "The durable store", says more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import sqlite3
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cqrs_flow.stores.base import DuplicateKey, NotFound, StaleCommand, StoreError
from cqrs_flow.stores.database import sync_directory

if TYPE_CHECKING:
    from cqrs_flow.stores.memory import MemoryStore
    from cqrs_flow.stores.sqlite import SqliteStore

__all__ = [
    "ASIDE",
    "migrate_if_needed",
    "migrated",
    "note_migration",
    "old_outbox_files",
    "read_old_outbox",
    "set_aside",
]

log = logging.getLogger("cqrs_flow.store")

ASIDE = "old-format"  # where the files of a migrated directory are kept
HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
SNAPSHOT_FORMAT = 1
_STORE_FILE = re.compile(r"^(snapshot|snapshot\.tmp|journal\.\d+)(\.torn-\d+)?$")
_JOURNAL = re.compile(r"^journal\.(\d+)$")
_OUTBOX_FILE = re.compile(r"^outbox\.\d+(\.torn-\d+)?$")
_OUTBOX = re.compile(r"^outbox\.(\d+)$")


def records(path: Path, whole_only: bool = False) -> Iterator[dict[str, Any]]:
    """The whole records of a file, in order. A torn tail (a write a crash cut short, never
    acknowledged) ends them with a warning; StoreError instead with `whole_only`."""
    data = path.read_bytes()
    offset = count = 0
    while len(data) - offset >= HEADER.size:
        length, crc = HEADER.unpack_from(data, offset)
        payload = data[offset + HEADER.size : offset + HEADER.size + length]
        if length == 0 or len(payload) != length or zlib.crc32(payload) != crc:
            break
        try:
            record = json.loads(payload)
        except ValueError:
            break
        if not isinstance(record, dict):
            break
        offset += HEADER.size + length
        count += 1
        yield record
    if offset < len(data):
        if whole_only:
            raise StoreError(
                f"{path} is damaged (ends after {offset} of {len(data)} bytes); "
                "refusing to start with part of the data"
            )
        log.warning(
            "%s: a torn tail of %d bytes after %d whole records (a write cut short by a crash, "
            "never acknowledged) is left out",
            path,
            len(data) - offset,
            count,
        )


def set_aside(directory: Path, files: list[Path]) -> Path:
    """Move `files` into `<directory>/old-format/`; that directory."""
    aside = directory / ASIDE
    aside.mkdir(mode=0o700, exist_ok=True)
    for path in files:
        os.replace(path, aside / path.name)
    sync_directory(aside)
    sync_directory(directory)
    return aside


# -- the store ------------------------------------------------------------------------------------


def old_store_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if _STORE_FILE.match(p.name))


def read_old_store(directory: Path, collection: str) -> MemoryStore:
    """The documents and last commands of a snapshot-and-journals directory, replayed in memory.
    StoreError if part of the data is missing or damaged."""
    from cqrs_flow.stores.memory import MemoryStore  # only to migrate: not at every start

    store = MemoryStore(collection)
    generation = _load_snapshot(directory / "snapshot", store)
    journals = sorted(int(m.group(1)) for p in directory.iterdir() if (m := _JOURNAL.match(p.name)))
    journals = [g for g in journals if g >= generation]  # older ones are in the snapshot
    if journals and journals[0] != generation:
        raise StoreError(
            f"{directory}: journal.{generation} is missing (journals from {journals[0]} on; "
            f"snapshot generation {generation}); refusing to start with part of the data"
        )
    for g in journals:
        path = directory / f"journal.{g}"
        for record in records(path):
            try:
                _apply(store, record)
            except (NotFound, DuplicateKey, StaleCommand, KeyError, TypeError) as exc:
                log.error("%s: a record (%s) does not apply: %r", path, record.get("op"), exc)
    return store


def _load_snapshot(path: Path, store: MemoryStore) -> int:
    if not path.exists():
        return 0
    items = records(path, whole_only=True)
    head = next(items, None)
    if (
        not head
        or head.get("format") != SNAPSHOT_FORMAT
        or not isinstance(head.get("snapshot"), int)
    ):
        raise StoreError(f"{path} is not a snapshot this version can read: {head!r:.100}")
    end = None
    for record in items:
        if "docs" in record:
            for stored in record["docs"]:
                key = stored.pop("_id")
                store._put_new(key, stored)
        elif "commands" in record:
            store._commands.update(record["commands"])
        else:
            end = record.get("end")
    if end != len(store):
        raise StoreError(
            f"{path} is damaged ({len(store)} documents, {end} expected); "
            "refusing to start with part of the data"
        )
    generation: int = head["snapshot"]
    return generation


def _apply(store: MemoryStore, record: dict[str, Any]) -> None:
    # A record replays under the rules it was written with.
    op, command, lww = record.get("op"), record.get("cmd"), bool(record.get("lww"))
    if op == "insert":
        store._insert(record["key"], record["doc"], command, lww)
    elif op == "update":
        store._update(record["key"], record["fields"], command, lww)
    elif op == "delete":
        store._delete(record["key"], command, lww)
    elif op == "insert_many":
        store._insert_many(record["docs"], command, lww)
    elif op == "delete_many":
        store._delete_many(record["keys"], command)
    else:
        raise KeyError(f"unknown operation {op!r}")


async def migrate_if_needed(store: SqliteStore) -> None:
    """Migrate the old-format files of the store's directory into its database, once."""
    database = store.database
    directory = database.directory
    old = await asyncio.to_thread(old_store_files, directory)
    if not old:
        return
    if not await database.read(migrated):
        started = time.monotonic()
        memory = await asyncio.to_thread(read_old_store, directory, store.collection)
        documents = [(key, _without_id(stored)) for key, stored in memory._documents.items()]
        commands = dict(memory._commands)

        def write(c: sqlite3.Connection) -> None:
            for key, document in documents:  # in their order: the insertion order goes on
                text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
                # each an insert in the change log too, as if made now
                store._write(c, key, document, text, commands.get(key), keep_place=False)
            for key, command in commands.items():
                if key not in memory._documents:
                    store._remove(c, key, command, None)  # a tombstone (no change to log)
            note_migration(c)

        await database.write(write)
        log.warning(
            "migrated %s from the journal-and-snapshot format to SQLite (%s): %d documents, "
            "%d last commands, in %.1fs",
            directory,
            database.path.name,
            len(documents),
            len(commands),
            time.monotonic() - started,
        )
    aside = await asyncio.to_thread(set_aside, directory, old)
    log.warning(
        "the files of the old format are kept in %s: delete them once the store serves what "
        "you expect",
        aside,
    )


def _without_id(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k != "_id"}


def migrated(connection: sqlite3.Connection) -> bool:
    found = connection.execute("SELECT 1 FROM meta WHERE name = 'migrated'").fetchone()
    return found is not None


def note_migration(connection: sqlite3.Connection) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO meta VALUES ('migrated', ?)",
        (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),),
    )


# -- the outbox -----------------------------------------------------------------------------------


def old_outbox_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if _OUTBOX_FILE.match(p.name))


def read_old_outbox(directory: Path) -> OrderedDict[str, tuple[str, bytes]]:
    """The commands an outbox journal left waiting (id -> topic, payload), in accepted order."""
    waiting: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
    generations = sorted(
        int(m.group(1)) for p in directory.iterdir() if (m := _OUTBOX.match(p.name))
    )
    for generation in generations:
        for record in records(directory / f"outbox.{generation}"):
            if "add" in record:
                waiting[record["add"]] = (record["topic"], base64.b64decode(record["payload"]))
            elif "settled" in record:
                for command_id in record["settled"]:
                    waiting.pop(command_id, None)
            elif "pending" in record:
                waiting = OrderedDict(
                    (cid, (topic, base64.b64decode(payload)))
                    for cid, topic, payload in record["pending"]
                )
    return waiting
