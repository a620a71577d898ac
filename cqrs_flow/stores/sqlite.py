"""The durable backend: documents in an SQLite database in the store's data directory.

A store node with `data: <directory>` uses it. Every write a call acknowledges is committed
(WAL, synchronous=FULL; one commit shared by the writes waiting) and survives a kill -9 of the
process; a read never shows an uncommitted write. Every change is appended to the change log
(the `changes` table) in the change's own transaction (stores/sqlite_log.py reads it). Memory
stays small at any size: the data is on disk, and SQLite's page cache is bounded. Layout and
reasoning: docs/ARCHITECTURE.md, "The durable store".
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cqrs_flow.contracts.ordering import supersedes
from cqrs_flow.stores import sqlite_find
from cqrs_flow.stores.base import (
    Document,
    DocumentStore,
    DuplicateKey,
    Find,
    InvalidDocument,
    NotFound,
    Page,
    StaleCommand,
)
from cqrs_flow.stores.database import Database
from cqrs_flow.stores.find import (
    MERGED,
    SORTED,
    Count,
    Fetch,
    Indexes,
    Plan,
    Request,
    Row,
    Scan,
    pages,
    plan,
    run,
)
from cqrs_flow.stores.log import current_subject

__all__ = ["DATABASE", "FORMAT", "SqliteStore", "Table", "last_position"]

log = logging.getLogger("cqrs_flow.store")

DATABASE = "store.db"
KeyRow = tuple[Any, Any, Any]  # seq, doc, cmd of a key (None for what a tombstone lacks)
FORMAT = "2"  # of the schema below; `meta` says which one a file has
# Format 1 had no `prev` column and wrote no change log; it is brought to 2 when opened, the
# documents it holds becoming the log's first changes (so that a projection sees them).
UPGRADABLE = {"1"}


def table_of(collection: str) -> str:
    """The quoted name of a collection's table."""
    return '"docs_' + collection.replace('"', '""') + '"'


@dataclass(frozen=True)
class Table:
    """What the store needs to know of a collection: the document field copied to the `ts`
    column (the node's `timestamp`), and what its finds may use (each an index)."""

    timestamp: str | None = None
    indexes: Indexes = field(default_factory=Indexes)


def schema(
    collection: str, indexes: Indexes | None = None, built: list[str] | None = None
) -> Callable[[sqlite3.Connection], None]:
    """Create what is missing: `meta`, the change log and projections' bookkeeping, the
    collection's table, the count of its documents, and its indexes (those built now are appended
    to `built`). A database of format 1 is brought to 2 (see `upgrade`)."""
    table = table_of(collection)
    index = '"seq_of_' + collection.replace('"', '""') + '"'

    def create(connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        found = connection.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        if found is None:
            connection.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
        elif found[0] in UPGRADABLE:
            upgrade(connection)
        elif found[0] != FORMAT:
            raise sqlite3.DatabaseError(
                f"its format is {found[0]!r}; this version of cqrs-flow reads format {FORMAT!r}"
            )
        log_schema(connection)
        # One row per key, whether it holds a document or only its last command (a tombstone).
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " key TEXT PRIMARY KEY NOT NULL,"  # the document's key
            " seq INTEGER,"  # insertion order of a live document; NULL: a tombstone
            " doc TEXT,"  # the document, JSON; NULL: a tombstone
            " cmd TEXT,"  # the last command written to the key, a delete included
            " ts TEXT"  # the document's timestamp field (the node's `timestamp`), if any
            ") WITHOUT ROWID"
        )
        connection.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} (seq) WHERE seq IS NOT NULL"
        )
        sqlite_find.counts_schema(connection, collection)
        made = sqlite_find.index_schema(connection, collection, indexes or Indexes())
        if built is not None:
            built.extend(made)

    return create


def log_schema(connection: sqlite3.Connection) -> None:
    """The change log (a row per change, in the transaction of the change; `seq` is its
    position, AUTOINCREMENT: never given twice, even once trimmed) and the bookkeeping of the
    projections whose read models the database holds."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS changes ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " collection TEXT NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL,"
        " cmd TEXT, doc TEXT, at REAL NOT NULL, prev TEXT, subject TEXT)"
    )
    # Who asked for each change (stores/log.asked_by): a nullable column, added to the log of a
    # database made before it had one (its changes say no one); cqrs-flow versions that do not
    # know it read the file as before.
    columns = [row[1] for row in connection.execute("PRAGMA table_info(changes)")]
    if "subject" not in columns:
        connection.execute("ALTER TABLE changes ADD COLUMN subject TEXT")
    # A projection's position in each generation of its read model (`live`: the one queries
    # read), written in the transaction of the read model's writes.
    connection.execute(
        "CREATE TABLE IF NOT EXISTS projections ("
        " name TEXT NOT NULL, generation INTEGER NOT NULL, position INTEGER NOT NULL,"
        " live INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, generation)) WITHOUT ROWID"
    )
    connection.execute(
        "CREATE TABLE IF NOT EXISTS set_aside ("
        " projection TEXT NOT NULL, position INTEGER NOT NULL, collection TEXT NOT NULL,"
        " key TEXT NOT NULL, op TEXT NOT NULL, cmd TEXT, error TEXT NOT NULL, at REAL NOT NULL)"
    )


def upgrade(connection: sqlite3.Connection) -> None:
    """Format 1 -> 2: the log gets its `prev` column, and every live document of every collection
    becomes an insert in it (format 1 logged nothing: without them a projection following the
    log from its start would miss the documents stored before). Once, in the transaction that
    brings the schema up."""
    columns = [row[1] for row in connection.execute("PRAGMA table_info(changes)")]
    if columns and "prev" not in columns:
        connection.execute("ALTER TABLE changes ADD COLUMN prev TEXT")
    log_schema(connection)
    now = time.time()
    tables = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'docs\\_%' ESCAPE '\\'"
        " ORDER BY name"
    ).fetchall()
    for (name,) in tables:
        connection.execute(
            "INSERT INTO changes (collection, key, op, cmd, doc, at)"
            f" SELECT ?, key, 'insert', cmd, doc, ? FROM {table_of(name[len('docs_') :])}"
            " WHERE seq IS NOT NULL ORDER BY seq",
            (name[len("docs_") :], now),
        )
    connection.execute("UPDATE meta SET value = ? WHERE name = 'format'", (FORMAT,))
    log.info("brought the database to format %s: its documents are the log's first changes", FORMAT)


def last_position(connection: sqlite3.Connection) -> int:
    """The newest position the log gave (0: none), trimmed or not."""
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return int(row[0]) if row else 0


def _encode(document: Document) -> str:
    """The document as JSON text; InvalidDocument for what JSON cannot hold (NaN and infinities
    among them: SQLite's JSON functions, which the indexes run on every write, refuse them)."""
    try:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDocument(f"cannot store the document: {exc}") from None


class SqliteStore(DocumentStore):
    """Keyed documents in one table of an SQLite database (see the module).

    Open it with `await SqliteStore.open(directory, collection)`; it needs a running event loop.
    Every change writes a row to the `changes` table, in its transaction. `timestamp`: the
    document field copied to the `ts` column. `indexes`: what finds may use.
    """

    def __init__(
        self,
        database: Database,
        collection: str,
        last_writer_wins: bool,
        timestamp: str | None,
        indexes: Indexes | None = None,
    ) -> None:
        self.database = database
        self.collection = collection
        self.last_writer_wins = last_writer_wins
        self.timestamp = timestamp
        self.indexes = indexes or Indexes()
        self._table = table_of(collection)
        self._seq = 0  # the last insertion order given; owned by the writer's thread

    @classmethod
    async def open(
        cls,
        directory: str | Path,
        collection: str,
        *,
        last_writer_wins: bool = False,
        timestamp: str | None = None,
        indexes: Indexes | None = None,
        group_commit: bool = True,
    ) -> SqliteStore:
        """The store of one collection in `directory` (see open_many)."""
        (store,) = await cls.open_many(
            directory,
            {collection: Table(timestamp, indexes or Indexes())},
            last_writer_wins=last_writer_wins,
            group_commit=group_commit,
        )
        return store

    @classmethod
    async def open_many(
        cls,
        directory: str | Path,
        collections: dict[str, Table],
        *,
        last_writer_wins: bool = False,
        group_commit: bool = True,
    ) -> builtins.list[SqliteStore]:
        """A store per collection (name -> its Table: timestamp field and indexes), all in the
        one database of `directory`: they share its writer, so one transaction may hold writes to
        several, and closing one closes the database. Indexes missing are built now (a minute or
        so per index at 10,000,000 documents), in the transaction that brings the schema up."""
        from cqrs_flow.stores.legacy import migrate_if_needed

        started = time.monotonic()
        directory = Path(directory)
        built: dict[str, list[str]] = {name: [] for name in collections}

        def create(connection: sqlite3.Connection) -> None:
            for name, table in collections.items():
                schema(name, table.indexes, built[name])(connection)

        database = await Database.open(
            directory, DATABASE, "store", create, group_commit=group_commit
        )
        stores = [
            cls(database, name, last_writer_wins, table.timestamp, table.indexes)
            for name, table in collections.items()
        ]
        try:
            if len(stores) == 1:  # data directories before SQLite held one collection
                await migrate_if_needed(stores[0])
            counts = [await database.read(store._count_and_last_seq) for store in stores]
        except BaseException:
            await database.close()
            raise
        log.info(
            "data in %s: %s (SQLite, %s) in %.2fs",
            directory,
            ", ".join(
                f"{n} documents in {s.collection}" for n, s in zip(counts, stores, strict=True)
            ),
            DATABASE,
            time.monotonic() - started,
        )
        for name, fields in built.items():
            if fields:
                log.info("built the index of %s in %s", ", ".join(fields), name)
        return stores

    def _count_and_last_seq(self, connection: sqlite3.Connection) -> int:
        (last,) = connection.execute(f"SELECT max(seq) FROM {self._table}").fetchone()
        (count,) = connection.execute(
            "SELECT live FROM counts WHERE collection = ?", (self.collection,)
        ).fetchone()
        self._seq = max(self._seq, last or 0)
        return int(count)

    # -- reads ----------------------------------------------------------------------------------

    async def get(self, key: str) -> Document:
        return await self.database.read(lambda c: self._get(c, key))

    def _get(self, connection: sqlite3.Connection, key: str) -> Document:
        found = connection.execute(f"SELECT doc FROM {self._table} WHERE key = ?", (key,))
        row = found.fetchone()
        if row is None or row[0] is None:
            raise NotFound(key)
        document: Document = json.loads(row[0])
        return document

    async def list(self, count: int) -> builtins.list[Document]:
        if count <= 0:
            return []
        return await self.database.read(lambda c: self._list(c, count))

    def _list(self, connection: sqlite3.Connection, count: int) -> builtins.list[Document]:
        rows = connection.execute(
            f"SELECT doc FROM {self._table} WHERE seq IS NOT NULL ORDER BY seq LIMIT ?", (count,)
        )
        return [json.loads(doc) for (doc,) in rows]

    async def find(self, query: Find) -> Page:
        (page,) = await self.find_many([query])
        return page

    async def find_many(self, queries: builtins.list[Find]) -> builtins.list[Page]:
        """Every page from one snapshot of the database (one read transaction), in one thread
        hop; the queries are checked against the indexes before anything is read."""
        plans = [plan(query, self.indexes, self.collection) for query in queries]
        work = builtins.list(zip(queries, plans, strict=True))
        return await self.database.read(lambda c: self._find_all(c, work))

    async def find_at(self, queries: builtins.list[Find]) -> tuple[builtins.list[Page], int]:
        """find_many, and the log's last position in the same snapshot: the pages show every
        change up to it and none after."""
        plans = [plan(query, self.indexes, self.collection) for query in queries]
        work = builtins.list(zip(queries, plans, strict=True))
        return await self.database.read(lambda c: self._find_all(c, work, position=True))

    def _find_all(
        self,
        connection: sqlite3.Connection,
        work: builtins.list[tuple[Find, Plan]],
        position: bool = False,
    ) -> Any:
        connection.execute("BEGIN")  # one snapshot for every statement of every page
        try:
            found = [
                run(pages(query, found, int), partial(self._answer, connection, found))
                for query, found in work
            ]
            return (found, last_position(connection)) if position else found
        finally:
            connection.execute("COMMIT")

    def _answer(self, c: sqlite3.Connection, found: Plan, request: Request) -> Any:
        if isinstance(request, Fetch):
            return self._fetch(c, request.keys)
        if isinstance(request, Count):
            text, params = sqlite_find.count_sql(found, self.indexes)
            return int(c.execute(text, params).fetchone()[0])
        return self._scan(c, found, request)

    def _fetch(
        self, c: sqlite3.Connection, keys: tuple[str, ...]
    ) -> builtins.list[tuple[str, Document]]:
        documents: dict[str, str] = {}
        for start in range(0, len(keys), sqlite_find.FETCH_CHUNK):
            text, params = sqlite_find.fetch_sql(
                self.collection, keys[start : start + sqlite_find.FETCH_CHUNK]
            )
            documents.update(c.execute(text, params).fetchall())
        return [(key, json.loads(documents[key])) for key in keys if key in documents]

    def _scan(self, c: sqlite3.Connection, found: Plan, scan: Scan) -> builtins.list[Row]:
        window = found.window(scan.lower, scan.upper, scan.reverse)
        if found.mode == SORTED:
            text, params = sqlite_find.sorted_sql(
                found, self.indexes, window, scan.limit, scan.documents
            )
            return self._rows(found, c.execute(text, params))
        pieces = found.pieces(window)
        if not pieces:
            return []
        if window.backwards:
            pieces.reverse()
        merged = found.mode == MERGED
        text, params = sqlite_find.pieces_sql(
            found, self.indexes, pieces, window.backwards, scan.limit, scan.documents, merged
        )
        rows = self._rows(found, c.execute(text, params))
        if merged:  # each value's run, in insertion order: merged
            rows.sort(key=lambda row: row.place.seq, reverse=window.backwards)
            return rows if scan.limit is None else rows[: scan.limit]
        return rows

    def _rows(self, found: Plan, cursor: sqlite3.Cursor) -> builtins.list[Row]:
        rows = []
        for key, seq, text in cursor:
            document = None if text is None else json.loads(text)
            rows.append(Row(key, found.place_of(key, seq, document), document))
        return rows

    async def last_command(self, key: str) -> str | None:
        """The id of the last command written to the key (a delete included), or None."""

        def read(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                f"SELECT cmd FROM {self._table} WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else row[0]

        return await self.database.read(read)

    # -- writes: each a function run in the writer's thread, inside a savepoint ----------------

    def _lww(self, command: str | None) -> bool:
        return self.last_writer_wins and bool(command)

    async def insert(self, key: str, document: Document, command: str | None = None) -> None:
        text, lww = _encode(document), self._lww(command)

        def work(c: sqlite3.Connection) -> None:
            row = self._admit(c, key, command)
            live = row is not None and row[1] is not None
            if live and not lww:
                raise DuplicateKey(key)
            self._write(c, key, document, text, command, keep_place=live, previous=row and row[1])

        await self.database.write(work)

    async def update(self, key: str, fields: Document, command: str | None = None) -> Document:
        _encode(fields)  # refused before anything is queued
        lww = self._lww(command)

        def work(c: sqlite3.Connection) -> Document:
            row = self._admit(c, key, command)
            live = row is not None and row[1] is not None
            if row is not None and row[1] is not None:
                updated = {**json.loads(row[1]), **fields}
            elif lww:  # the update is the document's whole state
                updated = dict(fields)
            else:
                raise NotFound(key)
            text = _encode(updated)
            self._write(c, key, updated, text, command, keep_place=live, previous=row and row[1])
            document: Document = json.loads(text)  # the caller's own copy
            return document

        return await self.database.write(work)

    async def delete(self, key: str, command: str | None = None) -> None:
        lww = self._lww(command)

        def work(c: sqlite3.Connection) -> None:
            row = self._admit(c, key, command)
            if row is not None and row[1] is not None:
                self._remove(c, key, command, row[1])
            elif lww:
                self._remove(c, key, command, None)  # nothing there: its tombstone remembers C
            else:
                raise NotFound(key)

        await self.database.write(work)

    async def insert_many(self, documents: dict[str, Document], command: str | None = None) -> int:
        texts = {key: _encode(document) for key, document in documents.items()}
        lww = self._lww(command)

        def work(c: sqlite3.Connection) -> int:
            rows = {key: self._row(c, key) for key in documents}
            last = {key: None if row is None else row[2] for key, row in rows.items()}
            live = {key: row is not None and row[1] is not None for key, row in rows.items()}
            wanted = [key for key in documents if not command or supersedes(command, last[key])]
            taken = [key for key in wanted if live[key]]
            if taken and not lww:
                raise DuplicateKey(", ".join(taken))
            for key in wanted:
                row = rows[key]
                previous = row[1] if row is not None else None
                self._write(
                    c,
                    key,
                    documents[key],
                    texts[key],
                    command,
                    keep_place=live[key],
                    previous=previous,
                )
            return len(wanted)

        return await self.database.write(work)

    async def delete_many(self, keys: builtins.list[str], command: str | None = None) -> int:
        def work(c: sqlite3.Connection) -> int:
            removed = 0
            for key in keys:
                row = self._row(c, key)
                if command and not supersedes(command, None if row is None else row[2]):
                    continue
                if row is not None and row[1] is not None:
                    self._remove(c, key, command, row[1])
                    removed += 1
                elif command:
                    self._remove(c, key, command, None)  # a tombstone, for a key never stored too
            return removed

        return await self.database.write(work)

    # -- the steps of a write ------------------------------------------------------------------

    def _row(self, c: sqlite3.Connection, key: str) -> KeyRow | None:
        """(seq, doc, cmd) of the key, or None when the table has no row for it."""
        row = c.execute(f"SELECT seq, doc, cmd FROM {self._table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def _admit(self, c: sqlite3.Connection, key: str, command: str | None) -> KeyRow | None:
        """The key's row; StaleCommand if `command` must not apply to it."""
        row = self._row(c, key)
        last = None if row is None else row[2]
        if command and last is not None and not supersedes(command, last):
            raise StaleCommand(key, last)
        return row

    def _write(
        self,
        c: sqlite3.Connection,
        key: str,
        document: Document,
        text: str,
        command: str | None,
        *,
        keep_place: bool,
        previous: str | None = None,
    ) -> None:
        """The key's row holds `document` now: in its place (it held one, `previous`: an update),
        or last (a new insertion order: an insert). A write without a command keeps the key's
        last command. The change goes to the log."""
        stamp = document.get(self.timestamp) if self.timestamp else None
        stamp = stamp if isinstance(stamp, str) else None
        if keep_place:
            c.execute(
                f"UPDATE {self._table} SET doc = ?, ts = ?, cmd = coalesce(?, cmd) WHERE key = ?",
                (text, stamp, command, key),
            )
        else:
            self._seq += 1
            c.execute(
                f"INSERT INTO {self._table} (key, seq, doc, cmd, ts) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, doc = excluded.doc,"
                " ts = excluded.ts, cmd = coalesce(excluded.cmd, cmd)",
                (key, self._seq, text, command, stamp),
            )
        self._log(
            c,
            key,
            "update" if keep_place else "insert",
            command,
            text,
            previous if keep_place else None,
        )

    def _remove(
        self, c: sqlite3.Connection, key: str, command: str | None, previous: str | None
    ) -> None:
        """The key holds no document now; its row stays as a tombstone if it has a command. The
        change goes to the log if there was a document (`previous`, its text) to remove."""
        if command:
            c.execute(
                f"INSERT INTO {self._table} (key, cmd) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET seq = NULL, doc = NULL, ts = NULL,"
                " cmd = excluded.cmd",
                (key, command),
            )
        else:
            c.execute(
                f"UPDATE {self._table} SET seq = NULL, doc = NULL, ts = NULL"
                " WHERE key = ? AND cmd IS NOT NULL",
                (key,),
            )
            c.execute(f"DELETE FROM {self._table} WHERE key = ? AND cmd IS NULL", (key,))
        if previous is not None:
            self._log(c, key, "delete", command, None, previous)

    def _log(
        self,
        c: sqlite3.Connection,
        key: str,
        op: str,
        command: str | None,
        text: str | None,
        previous: str | None,
    ) -> None:
        """The change's row in the change log, in the change's own transaction, with who asked
        for it (this runs in the context of the write's caller: stores/database.py)."""
        c.execute(
            "INSERT INTO changes (collection, key, op, cmd, doc, prev, at, subject)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.collection, key, op, command, text, previous, time.time(), current_subject()),
        )

    def _put(self, c: sqlite3.Connection, key: str, document: Document | None) -> None:
        """A read model's write (no command): the key's document is `document`, or none."""
        row = self._row(c, key)
        live = row is not None and row[1] is not None
        if document is None:
            if live:
                assert row is not None
                self._remove(c, key, None, row[1])
            return
        self._write(
            c, key, document, _encode(document), None, keep_place=live, previous=row and row[1]
        )

    # -- life -----------------------------------------------------------------------------------

    async def wait_failure(self) -> None:
        await self.database.wait_failure()

    async def close(self) -> None:
        await self.database.close()
