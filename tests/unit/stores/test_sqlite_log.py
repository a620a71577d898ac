"""The durable store's change log (stores/sqlite_log.py): what is particular to SQLite."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from cqrs_flow.stores.base import InvalidDocument
from cqrs_flow.stores.log import KEEP_EVERYTHING, Retention, Write, asked_by
from cqrs_flow.stores.sqlite import SqliteStore, Table
from cqrs_flow.stores.sqlite_log import SqliteLog


def run(coroutine):
    return asyncio.run(coroutine)


async def opened(directory, *collections, retention=KEEP_EVERYTHING):
    stores = await SqliteStore.open_many(directory, {name: Table() for name in collections})
    return stores, SqliteLog(stores, retention)


def test_positions_go_on_after_a_restart_and_are_never_given_twice(tmp_path):
    async def scenario():
        (books,), log = await opened(tmp_path, "books", retention=Retention(changes=1))
        for i in range(3):
            await books.insert(f"b{i}", {"id": f"b{i}"})
        await log.trim()
        await books.close()
        (books,), log = await opened(tmp_path, "books")
        await books.insert("b3", {"id": "b3"})
        info = await log.info()
        assert (info.first, info.last, info.changes) == (3, 4, 2)  # 1 and 2 were trimmed
        assert [c.position for c in (await log.read(2, 10, None)).changes] == [3, 4]
        await books.close()

    run(scenario())


def test_a_projection_write_that_fails_changes_nothing(tmp_path):
    async def scenario():
        (model,), log = await opened(tmp_path, "model")
        await log.apply("p", 0, 1, model, [Write("m1", {"id": "m1"})], [])
        bad = [Write("m2", {"id": "m2"}), Write("m3", {"id": "m3", "x": float("nan")})]
        with pytest.raises(InvalidDocument):
            await log.apply("p", 0, 2, model, bad, [])
        assert (await log.state("p")).position() == 1
        assert [d["id"] for d in await model.list(10)] == ["m1"]
        assert (await log.info()).changes == 1  # m2's insert went with the rest
        await model.close()

    run(scenario())


def test_a_database_of_format_1_gets_its_documents_as_the_first_changes(tmp_path):
    """Format 1 wrote no log: its documents become inserts, so that a projection following the
    log from its start sees every document the store holds."""

    async def scenario():
        (books, authors), _ = await opened(tmp_path, "books", "authors")
        await books.insert("b1", {"id": "b1"}, "c1")
        await books.insert("b2", {"id": "b2"})
        await books.delete("b2")
        await authors.insert("a1", {"id": "a1"})
        await books.close()
        with sqlite3.connect(tmp_path / "store.db") as connection:  # as format 1 left it
            connection.execute("UPDATE meta SET value = '1' WHERE name = 'format'")
            connection.execute("DROP TABLE changes")
            connection.execute(
                "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT"
                " NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL, cmd TEXT, doc TEXT, at REAL"
                " NOT NULL)"
            )
        connection.close()
        (books, authors), log = await opened(tmp_path, "books", "authors")
        changes = (await log.read(0, 10, None)).changes
        assert sorted((c.collection, c.key, c.op, c.command) for c in changes) == [
            ("authors", "a1", "insert", None),
            ("books", "b1", "insert", "c1"),
        ]
        assert changes[0].document is not None
        await books.insert("b3", {"id": "b3"})
        assert (await log.info()).last == 3
        await books.close()
        with sqlite3.connect(tmp_path / "store.db") as connection:
            assert (
                connection.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()[0]
                == "2"
            )
        connection.close()

    run(scenario())


def test_a_log_made_before_it_recorded_subjects_is_read_and_gets_them_from_then_on(tmp_path):
    """A database whose log has no `subject` column (as cqrs-flow made them before) opens
    as it is: the column is added, its changes say no one, new ones say who asked."""

    async def scenario():
        (loans,), _ = await opened(tmp_path, "loans")
        with asked_by("ada"):
            await loans.insert("l1", {"id": "l1"}, "c1")
        await loans.close()
        with sqlite3.connect(tmp_path / "store.db") as connection:  # as the log was before
            connection.execute("ALTER TABLE changes DROP COLUMN subject")
        connection.close()
        (loans,), log = await opened(tmp_path, "loans")
        with asked_by("bob"):
            await loans.insert("l2", {"id": "l2"}, "c2")
        changes = (await log.read(0, 10, None)).changes
        assert [(c.key, c.command, c.subject) for c in changes] == [
            ("l1", "c1", None),
            ("l2", "c2", "bob"),
        ]
        await loans.close()
        with sqlite3.connect(tmp_path / "store.db") as connection:
            assert (
                connection.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()[0]
                == "2"
            )  # the same format: a column older versions do not read
        connection.close()

    run(scenario())
