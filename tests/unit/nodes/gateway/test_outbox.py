"""The gateway's outbox: in memory, and kept in a data directory (SQLite) across restarts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import zlib

import pytest

from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.stores.base import StoreError
from cqrs_flow.stores.database import Database
from cqrs_flow.stores.legacy import HEADER


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_outbox_publishes_again_what_no_writer_reported_on():
    async def scenario():
        outbox = Outbox(redeliver_after=5.0, capacity=3)
        await outbox.add("a", "T/A", b"1", now=0.0)
        await outbox.add("b", "T/B", b"2", now=1.0)
        assert outbox.due(4.9) == []
        assert outbox.due(5.0) == [("a", "T/A", b"1")]
        outbox.settle(["b", "never-added"])
        assert outbox.due(7.0) == [] and len(outbox) == 1
        assert outbox.due(10.0) == [("a", "T/A", b"1")]  # due again redeliver_after later
        await outbox.add("c", "T/C", b"3", now=10.0)
        await outbox.add("d", "T/D", b"4", now=10.0)
        assert outbox.full

    run(scenario())


def test_a_reopened_outbox_has_every_unsettled_command_due_at_once(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        for i in range(10):
            await outbox.add(f"c{i}", "T/ADD", bytes([i, 0, 255]), now=100.0)
        outbox.settle(["c1", "c4", "c7"])
        await outbox.close()  # a kill -9 after the adds is covered by the kill test below
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0, now=5.0)
        due = outbox.due(5.0)
        assert [cid for cid, _, _ in due] == ["c0", "c2", "c3", "c5", "c6", "c8", "c9"]
        assert due[2] == ("c3", "T/ADD", bytes([3, 0, 255]))
        await outbox.close()

    run(scenario())


def frame(payload: dict) -> bytes:
    data = json.dumps(payload).encode()
    return HEADER.pack(len(data), zlib.crc32(data)) + data


def test_an_outbox_journal_of_the_format_before_sqlite_is_migrated_once(tmp_path, caplog):
    directory = tmp_path / "gw"
    directory.mkdir()
    (directory / "outbox.3").write_bytes(
        frame({"pending": [["a", "T", "MQ=="], ["b", "T", "Mg=="]]})
        + frame({"add": "c", "topic": "U", "payload": "Mw=="})
        + frame({"settled": ["a"]})
        + frame({"add": "torn", "topic": "T", "payload": "MQ=="})[:-3]
    )

    async def scenario():
        with caplog.at_level(logging.WARNING):
            outbox = await Outbox.open(directory, redeliver_after=30.0)
        assert outbox.due(0.0) == [("b", "T", b"2"), ("c", "U", b"3")]
        assert "migrated the outbox" in caplog.text
        await outbox.close()
        assert (directory / "old-format" / "outbox.3").exists()
        assert not (directory / "outbox.3").exists()
        outbox = await Outbox.open(directory, redeliver_after=30.0)
        assert [cid for cid, _, _ in outbox.due(0.0)] == ["b", "c"]
        await outbox.close()

    run(scenario())


def test_the_outbox_files_are_the_gateways_alone(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        await outbox.add("a", "T", b"1", now=0.0)
        assert stat.S_IMODE((tmp_path / "gw").stat().st_mode) == 0o700
        for name in ("outbox.db", "outbox.db-wal", "lock"):
            assert stat.S_IMODE((tmp_path / "gw" / name).stat().st_mode) == 0o600, name
        await outbox.close()

    run(scenario())


def test_one_gateway_process_at_a_time_per_directory(tmp_path):
    async def scenario():
        first = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        with pytest.raises(StoreError, match="in use by another gateway process"):
            await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        await first.close()
        await (await Outbox.open(tmp_path / "gw", redeliver_after=30.0)).close()

    run(scenario())


def test_a_command_a_full_disk_refuses_is_not_kept_and_the_outbox_goes_on(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        connection = outbox.database._connection
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match="database or disk is full"):
            await outbox.add("lost", "T", b"x" * 100_000, now=0.0)
        assert len(outbox) == 0
        connection.execute("PRAGMA max_page_count = 1073741823")
        await outbox.add("kept", "T", b"x" * 100_000, now=0.0)
        assert len(outbox) == 1
        await outbox.close()

    run(scenario())


def test_a_failing_disk_fails_the_outbox(tmp_path, monkeypatch):
    def broken(database, batch):
        raise sqlite3.OperationalError("disk I/O error")

    async def scenario():
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        monkeypatch.setattr(Database, "_commit", broken)
        with pytest.raises(StoreError, match="disk I/O error"):
            await outbox.add("lost", "T", b"1", now=0.0)
        assert len(outbox) == 0
        with pytest.raises(StoreError):
            await outbox.wait_failure()
        await outbox.close()

    run(scenario())


def test_commands_made_due_now_are_published_at_once_then_wait_redeliver_after_again():
    async def scenario():
        outbox = Outbox(redeliver_after=10.0)
        await outbox.add("a", "T/A", b"1", now=0.0)
        await outbox.add("b", "T/B", b"2", now=0.0)
        await outbox.add("c", "T/A", b"3", now=0.0)
        assert outbox.due_now(1.0, ["T/A", "T/OTHER"]) == 2
        assert outbox.due(1.0) == [("a", "T/A", b"1"), ("c", "T/A", b"3")]  # in accepted order
        assert outbox.due(10.5) == [("b", "T/B", b"2")]
        assert outbox.due_now(2.0) == 3 and outbox.due_now(2.0) == 0  # all; each once
        assert [cid for cid, _, _ in outbox.due(2.0)] == ["a", "c", "b"]
        assert outbox.due(11.9) == [] and len(outbox.due(12.0)) == 3

    run(scenario())


def test_the_outbox_files_are_the_owners_alone(tmp_path):
    umask = os.umask(0o022)
    try:

        async def scenario():
            outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
            await outbox.add("c1", "T/ADD", b"contact details", now=0.0)
            await outbox.close()

        run(scenario())
    finally:
        os.umask(umask)
    directory = tmp_path / "gw"
    assert directory.stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
    assert {"lock", "outbox.db"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes
