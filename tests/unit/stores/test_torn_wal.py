"""A kill -9 in the middle of a commit leaves the last record of the write-ahead log cut short:
the database opens with every commit before it and nothing of the cut one, wherever it was cut.

The durable store and the gateway's outbox keep their journal as SQLite's WAL (stores/
database.py); each commit appends its pages and a commit frame. The WAL is copied while the
database is open (as a crash leaves it) and cut at every byte of its last commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from cqrs_flow.stores.database import Database


def _schema(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, v TEXT)")


def wal_after_commits(directory: Path, commits: int) -> tuple[bytes, bytes, list[int]]:
    """The database file, its WAL after `commits` commits, and the WAL's size after each."""

    async def run():
        database = await Database.open(directory, "t.db", "test", _schema)
        sizes = []
        for n in range(commits):
            await database.write(
                lambda c, n=n: c.execute("INSERT INTO t VALUES (?, ?)", (n, "v" * 100))
            )
            sizes.append((directory / "t.db-wal").stat().st_size)
        files = (directory / "t.db").read_bytes(), (directory / "t.db-wal").read_bytes()
        await database.close()
        return (*files, sizes)

    return asyncio.run(run())


def rows_after_crash(directory: Path, main: bytes, wal: bytes) -> list[int]:
    for name in ("t.db", "t.db-wal", "t.db-shm"):
        (directory / name).unlink(missing_ok=True)
    (directory / "t.db").write_bytes(main)
    (directory / "t.db-wal").write_bytes(wal)
    connection = sqlite3.connect(directory / "t.db")
    connection.execute("PRAGMA synchronous = OFF")  # no fsync when it closes: faster, same rows
    try:
        return [n for (n,) in connection.execute("SELECT n FROM t ORDER BY n")]
    finally:
        connection.close()


def test_the_last_commit_cut_at_every_byte_is_left_out_and_the_others_kept(tmp_path):
    main, wal, sizes = wal_after_commits(tmp_path / "made", 3)
    before, complete = sizes[-2], sizes[-1]
    assert complete > before  # the last commit appended frames
    crash = tmp_path / "crash"
    crash.mkdir()
    for cut in range(before, complete):
        assert rows_after_crash(crash, main, wal[:cut]) == [0, 1], cut
    assert rows_after_crash(crash, main, wal[:complete]) == [0, 1, 2]


def test_a_database_opened_after_a_cut_commit_takes_writes_again(tmp_path):
    main, wal, sizes = wal_after_commits(tmp_path / "made", 2)
    crash = tmp_path / "crash"
    crash.mkdir(mode=0o700)
    cut = (sizes[0] + sizes[1]) // 2
    (crash / "t.db").write_bytes(main)
    (crash / "t.db-wal").write_bytes(wal[:cut])

    async def run():
        database = await Database.open(crash, "t.db", "test", _schema)
        await database.write(lambda c: c.execute("INSERT INTO t VALUES (9, 'after')"))
        rows = await database.read(lambda c: [n for (n,) in c.execute("SELECT n FROM t")])
        await database.close()
        return rows

    assert asyncio.run(run()) == [0, 9]
