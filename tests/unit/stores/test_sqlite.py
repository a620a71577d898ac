"""The durable backend's own properties (SQLite in the store's data directory): what a reopen
finds, kill -9, one process per directory, private files, commit before the answer, group commit,
a full disk and a failing one, the change log, and the migration of the format before SQLite."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from cqrs_flow.stores import InvalidDocument, NotFound, SqliteStore, StoreError
from cqrs_flow.stores.database import Database
from cqrs_flow.stores.legacy import HEADER


def run(coroutine):
    return asyncio.run(coroutine)


async def fill(store: SqliteStore) -> None:
    for i in range(30):
        await store.insert(
            f"k{i}", {"id": f"k{i}", "n": i, "nested": {"list": [i, {"deep": True}]}}, f"c-{i}"
        )
    await store.update("k3", {"n": 333, "name": "änne ✓"})
    await store.delete("k4")
    assert await store.delete_many(["k5", "k6", "nobody"], "c-many") == 2
    await store.insert_many({"m1": {"id": "m1", "f": 1.5}, "m2": {"id": "m2", "b": False}})
    await store.delete("k0")
    await store.insert("k0", {"id": "k0", "again": True})


def test_a_reopened_store_has_every_write_and_every_last_command(tmp_path):
    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        await fill(store)
        before = await store.list(1000)
        await store.close()
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        assert await store.list(1000) == before
        assert len(before) == 30 - 3 + 2  # k4, k5, k6 deleted; m1, m2 added
        assert [d["id"] for d in before][-1] == "k0"  # re-inserted: last
        assert await store.get("k3") == {
            "id": "k3",
            "n": 333,
            "name": "änne ✓",
            "nested": {"list": [3, {"deep": True}]},
        }
        assert await store.last_command("k3") == "c-3"  # an update without a command keeps it
        assert await store.last_command("k5") == "c-many"  # a tombstone
        assert await store.last_command("nobody") == "c-many"
        assert await store.last_command("m1") is None
        await store.insert("new", {"id": "new"})  # after everything, also after a reopen
        assert (await store.list(1000))[-1] == {"id": "new"}
        await store.close()

    run(scenario())


def test_the_data_directory_is_held_by_one_store_at_a_time(tmp_path):
    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        with pytest.raises(StoreError, match="in use by another store process"):
            await SqliteStore.open(tmp_path / "data", "contacts")
        await store.close()
        await (await SqliteStore.open(tmp_path / "data", "contacts")).close()

    run(scenario())


def test_the_files_are_the_owners_alone(tmp_path, caplog):
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    async def scenario():
        old_umask = os.umask(0o022)  # what a usual shell would give: files 0644 by default
        try:
            store = await SqliteStore.open(tmp_path / "data", "contacts")
            await store.insert("k", {"id": "k"})
            directory = tmp_path / "data"
            assert mode(directory) == 0o700
            for name in ("store.db", "store.db-wal", "store.db-shm", "lock"):
                assert mode(directory / name) == 0o600, name
            await store.close()
            os.chmod(directory, 0o755)
            with caplog.at_level(logging.WARNING, "cqrs_flow.store"):
                await (await SqliteStore.open(directory, "contacts")).close()
            assert mode(directory) == 0o700
            assert "was open to others (mode 0755); made it 0700" in caplog.text
        finally:
            os.umask(old_umask)

    run(scenario())


CRASHING_WRITER = """
import asyncio, sys
from cqrs_flow.stores import SqliteStore

async def main():
    store = await SqliteStore.open(sys.argv[1], "contacts")
    async def one(i):
        await store.insert(f"k{i}", {"id": f"k{i}", "payload": "x" * (i % 500)}, f"c{i}")
        print(f"acknowledged k{i}", flush=True)
    i = 0
    while True:
        await asyncio.gather(*(one(i + j) for j in range(16)))
        i += 16

asyncio.run(main())
"""


def test_every_acknowledged_write_survives_a_kill_9(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged = []
    try:
        for line in child.stdout:
            acknowledged.append(line.split()[1])
            if len(acknowledged) >= 3000:
                break
        child.send_signal(signal.SIGKILL)
        acknowledged += [
            line.split()[1] for line in child.stdout if line.startswith("acknowledged")
        ]
    finally:
        child.kill()
        child.wait()

    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        stored = {d["id"] for d in await store.list(1_000_000)}
        assert set(acknowledged) <= stored
        assert await store.last_command(acknowledged[-1]) == "c" + acknowledged[-1][1:]
        await store.close()

    run(scenario())


class SlowCommits:
    """Stands in for Database._commit: counts the commits, and holds them while `hold` is clear."""

    def __init__(self, monkeypatch, pause: float = 0.01) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.commits = 0
        self.pause = pause
        self.commit = Database._commit
        monkeypatch.setattr(Database, "_commit", self.wrapped())

    def wrapped(self):
        def commit(database, batch):
            self.hold.wait(10)
            time.sleep(self.pause)
            outcomes = self.commit(database, batch)
            self.commits += 1
            return outcomes

        return commit


def test_a_write_answers_once_committed_and_reads_never_see_it_before(tmp_path, monkeypatch):
    commits = SlowCommits(monkeypatch)

    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        commits.hold.clear()
        write = asyncio.ensure_future(store.insert("k1", {"id": "k1"}))
        await asyncio.sleep(0.2)
        assert not write.done()
        with pytest.raises(NotFound):  # not committed: not there for anyone
            await store.get("k1")
        assert await store.list(10) == []
        commits.hold.set()
        await write
        assert await store.get("k1") == {"id": "k1"}
        assert commits.commits == 1
        await store.close()

    run(scenario())


def test_concurrent_writes_share_their_commits(tmp_path, monkeypatch):
    commits = SlowCommits(monkeypatch)

    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        await asyncio.gather(*(store.insert(f"k{i}", {"id": f"k{i}"}) for i in range(100)))
        assert commits.commits <= 3  # the first write alone, then everything that queued behind
        await store.close()
        alone = await SqliteStore.open(tmp_path / "other", "contacts", group_commit=False)
        await asyncio.gather(*(alone.insert(f"k{i}", {"id": f"k{i}"}) for i in range(20)))
        assert alone.database.commits == 20
        await alone.close()

    run(scenario())


def test_writes_refused_in_a_shared_commit_change_nothing_of_the_others(tmp_path):
    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        await store.insert("taken", {"id": "taken"})
        answers = await asyncio.gather(
            store.insert("a", {"id": "a"}),
            store.insert_many({"b": {"id": "b"}, "taken": {"id": "taken", "x": 1}}),
            store.update("nobody", {"name": "x"}),
            store.insert("c", {"id": "c"}),
            return_exceptions=True,
        )
        assert [type(a).__name__ for a in answers] == [
            "NoneType",
            "DuplicateKey",
            "NotFound",
            "NoneType",
        ]
        assert [d["id"] for d in await store.list(10)] == ["taken", "a", "c"]
        assert store.database.commits == 2
        await store.close()

    run(scenario())


def test_the_event_loop_goes_on_while_the_disk_is_slow(tmp_path, monkeypatch):
    SlowCommits(monkeypatch, pause=0.3)

    async def scenario():
        loop = asyncio.get_running_loop()
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        gaps: list[float] = []

        async def tick():
            last = loop.time()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - last)
                last = loop.time()

        ticker = loop.create_task(tick())
        for i in range(4):
            await store.insert(f"k{i}", {"id": f"k{i}"})
        ticker.cancel()
        await store.close()
        return gaps

    gaps = run(scenario())
    assert len(gaps) > 50 and max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.2f} s"


def test_a_full_disk_refuses_the_writes_and_the_store_recovers_when_there_is_room(tmp_path):
    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        await store.insert("k1", {"id": "k1"})
        connection = store.database._connection
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")  # what SQLite does on a full disk
        watcher = asyncio.ensure_future(store.wait_failure())
        with pytest.raises(StoreError, match=r"cannot write .*store.db: database or disk is full"):
            await store.insert("k2", {"id": "k2", "big": "x" * 100_000})
        assert await store.list(10) == [{"id": "k1"}]  # reads go on
        assert not watcher.done()
        connection.execute("PRAGMA max_page_count = 1073741823")  # room again
        await store.insert("k2", {"id": "k2", "big": "x" * 100_000})
        assert [d["id"] for d in await store.list(10)] == ["k1", "k2"]
        watcher.cancel()
        await store.close()

    run(scenario())


def test_a_failing_disk_fails_the_writes_and_the_store(tmp_path, monkeypatch):
    def broken(database, batch):
        raise sqlite3.OperationalError("disk I/O error")

    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        await store.insert("k1", {"id": "k1"})
        monkeypatch.setattr(Database, "_commit", broken)
        watcher = asyncio.ensure_future(store.wait_failure())
        with pytest.raises(StoreError, match=r"cannot write .*: disk I/O error"):
            await store.insert("k2", {"id": "k2"})
        with pytest.raises(StoreError, match="disk I/O error"):
            await watcher
        with pytest.raises(StoreError):
            await store.delete("k1")
        with pytest.raises(StoreError):
            await store.list(10)  # nor a read: the store is going down
        await store.close()
        monkeypatch.undo()
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        assert [d["id"] for d in await store.list(10)] == ["k1"]  # k2 was never acknowledged
        await store.close()

    run(scenario())


def test_a_document_that_is_no_json_data_is_refused_unchanged(tmp_path):
    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts")
        with pytest.raises(InvalidDocument, match="cannot store the document"):
            await store.insert("k1", {"id": "k1", "when": object()})
        with pytest.raises(NotFound):
            await store.get("k1")
        await store.close()

    run(scenario())


def test_the_change_log_has_a_row_for_each_change_made_and_none_for_a_refused_one(tmp_path):
    async def scenario():
        store = await SqliteStore.open(tmp_path / "data", "contacts", timestamp="at")
        await store.insert("a", {"id": "a", "at": "2024-01-01T00:00:00Z"}, "c1")
        with pytest.raises(StoreError):
            await store.insert("a", {"id": "a"})  # DuplicateKey: no change
        await store.update("a", {"name": "x"}, "c2")
        await store.delete_many(["a", "b"], "c3")
        await store.close()
        with sqlite3.connect(tmp_path / "data" / "store.db") as connection:
            rows = connection.execute(
                "SELECT collection, key, op, cmd, doc IS NOT NULL, prev IS NOT NULL FROM changes"
                " ORDER BY seq"
            ).fetchall()
            stamp = connection.execute("SELECT ts FROM docs_contacts WHERE key = 'a'").fetchone()
        connection.close()
        assert rows == [  # b had no document: its tombstone is no change
            ("contacts", "a", "insert", "c1", 1, 0),
            ("contacts", "a", "update", "c2", 1, 1),
            ("contacts", "a", "delete", "c3", 0, 1),
        ]
        assert stamp == (None,)  # deleted: the tombstone keeps only its command

    run(scenario())


def test_a_database_of_another_format_is_refused(tmp_path):
    async def scenario():
        await (await SqliteStore.open(tmp_path / "data", "contacts")).close()
        with sqlite3.connect(tmp_path / "data" / "store.db") as connection:
            connection.execute("UPDATE meta SET value = '99' WHERE name = 'format'")
        connection.close()
        with pytest.raises(StoreError, match="its format is '99'"):
            await SqliteStore.open(tmp_path / "data", "contacts")

    run(scenario())


# -- the format before SQLite ----------------------------------------------------------------------


def frame(payload: dict) -> bytes:
    data = json.dumps(payload).encode()
    return HEADER.pack(len(data), zlib.crc32(data)) + data


def old_format(directory: Path) -> list[dict]:
    """A data directory as the journaled store left it: a snapshot of generation 1 (a, b, and
    c's tombstone), journal.1 with later writes and a torn tail, and a stale journal.0. The
    documents it holds, in order."""
    directory.mkdir()
    (directory / "snapshot").write_bytes(
        frame({"snapshot": 1, "format": 1})
        + frame({"docs": [{"_id": "a", "id": "a", "n": 1}, {"_id": "b", "id": "b", "n": 2}]})
        + frame({"commands": {"a": "cmd-a", "c": "cmd-c"}})
        + frame({"end": 2})
    )
    (directory / "journal.0").write_bytes(frame({"op": "insert", "key": "stale", "doc": {}}))
    (directory / "journal.1").write_bytes(
        frame({"op": "update", "key": "a", "fields": {"n": 10}, "cmd": "cmd-a2"})
        + frame({"op": "insert", "key": "d", "doc": {"id": "d"}})
        + frame({"op": "delete", "key": "b"})
        + frame({"op": "insert_many", "docs": {"b": {"id": "b", "n": 3}}, "cmd": "cmd-b"})
        + frame({"op": "insert", "key": "torn", "doc": {"id": "torn"}})[:-4]
    )
    (directory / "lock").write_bytes(b"")
    return [{"id": "a", "n": 10}, {"id": "d"}, {"id": "b", "n": 3}]


def test_an_old_format_directory_is_migrated_once(tmp_path, caplog):
    directory = tmp_path / "data"
    expected = old_format(directory)

    async def scenario():
        with caplog.at_level(logging.WARNING, "cqrs_flow.store"):
            store = await SqliteStore.open(directory, "contacts")
        assert await store.list(10) == expected
        assert await store.last_command("a") == "cmd-a2"
        assert await store.last_command("c") == "cmd-c"  # a tombstone stays one
        assert await store.last_command("b") == "cmd-b"
        await store.insert("e", {"id": "e"})
        await store.close()
        assert "migrated" in caplog.text and "3 documents" in caplog.text
        assert "torn tail" in caplog.text
        assert sorted(p.name for p in (directory / "old-format").iterdir()) == [
            "journal.0",
            "journal.1",
            "snapshot",
        ]
        assert not list(directory.glob("journal.*")) and not (directory / "snapshot").exists()
        caplog.clear()
        with caplog.at_level(logging.WARNING, "cqrs_flow.store"):
            store = await SqliteStore.open(directory, "contacts")
        assert "migrated" not in caplog.text
        assert await store.list(10) == [*expected, {"id": "e"}]
        await store.close()

    run(scenario())


def test_a_migration_cut_short_after_its_commit_only_sets_the_files_aside(tmp_path, monkeypatch):
    directory = tmp_path / "data"
    expected = old_format(directory)
    from cqrs_flow.stores import legacy

    def crash(*args):
        raise KeyboardInterrupt  # a crash between the commit and moving the old files

    async def scenario():
        monkeypatch.setattr(legacy, "set_aside", crash)
        with pytest.raises(KeyboardInterrupt):
            await SqliteStore.open(directory, "contacts")
        assert (directory / "snapshot").exists()
        monkeypatch.undo()
        store = await SqliteStore.open(directory, "contacts")
        assert await store.list(10) == expected  # each once
        assert not (directory / "snapshot").exists()
        await store.close()

    run(scenario())


def test_a_damaged_old_snapshot_or_a_missing_journal_stops_the_store(tmp_path):
    directory = tmp_path / "data"
    old_format(directory)
    snapshot = (directory / "snapshot").read_bytes()

    async def scenario():
        (directory / "snapshot").write_bytes(snapshot[:-3])
        with pytest.raises(StoreError, match="snapshot is damaged"):
            await SqliteStore.open(directory, "contacts")
        (directory / "snapshot").unlink()
        (directory / "journal.0").unlink()
        with pytest.raises(StoreError, match=r"journal.0 is missing"):
            await SqliteStore.open(directory, "contacts")
        assert (directory / "journal.1").exists()  # nothing was set aside

    run(scenario())
