"""The gateway's outbox: in memory, and journaled in a data directory across restarts."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from cqrs_flow.nodes.gateway import outbox as outbox_module
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.stores import journal
from cqrs_flow.stores.journal import JournalError


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


def test_compaction_keeps_what_waits_and_drops_old_generations(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox_module, "COMPACT_MIN_RECORDS", 20)

    async def scenario():
        directory = tmp_path / "gw"
        outbox = await Outbox.open(directory, redeliver_after=30.0)
        for i in range(1000):
            await outbox.add(f"c{i}", "T", b"x", now=0.0)
            if i % 10:
                outbox.settle([f"c{i}"])
        if outbox.files.compaction:
            await outbox.files.compaction
        generation = outbox._generation
        assert generation > 3
        assert sorted(p.name for p in directory.iterdir()) == ["lock", f"outbox.{generation}"]
        await outbox.close()
        outbox = await Outbox.open(directory, redeliver_after=30.0)
        assert [cid for cid, _, _ in outbox.due(0.0)] == [f"c{i}" for i in range(0, 1000, 10)]
        await outbox.close()

    run(scenario())


def test_a_torn_tail_loses_only_the_record_being_written(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        await outbox.add("whole", "T", b"1", now=0.0)
        await outbox.close()
        with open(tmp_path / "gw" / "outbox.0", "ab") as file:
            file.write(journal.frame({"add": "torn", "topic": "T", "payload": "MQ=="})[:-3])
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        assert [cid for cid, _, _ in outbox.due(0.0)] == ["whole"]
        await outbox.close()

    run(scenario())


def test_one_gateway_process_at_a_time_per_directory(tmp_path):
    async def scenario():
        first = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        with pytest.raises(JournalError, match="in use by another gateway process"):
            await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        await first.close()
        await (await Outbox.open(tmp_path / "gw", redeliver_after=30.0)).close()

    run(scenario())


def test_a_command_the_disk_refuses_is_not_kept(tmp_path, monkeypatch):
    def broken(fd, data):
        raise OSError(28, "No space left on device")

    async def scenario():
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        monkeypatch.setattr(journal, "_write_and_sync", broken)
        with pytest.raises(JournalError, match="No space left"):
            await outbox.add("lost", "T", b"1", now=0.0)
        assert len(outbox) == 0
        with pytest.raises(JournalError):
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


def test_a_compaction_does_not_stall_the_gateway(tmp_path, monkeypatch):
    """A slow disk (fsync taking 0.5 s) must not stop the event loop while the outbox moves on
    to its next generation: a ticker keeps ticking every 10 ms and commands keep being added."""
    monkeypatch.setattr(outbox_module, "COMPACT_MIN_RECORDS", 20)
    real_fsync = os.fsync

    def slow_fsync(fd):
        time.sleep(0.5)
        real_fsync(fd)

    async def scenario():
        loop = asyncio.get_running_loop()
        outbox = await Outbox.open(tmp_path / "gw", redeliver_after=30.0)
        monkeypatch.setattr(os, "fsync", slow_fsync)  # from here on: the compaction's syncs
        gaps: list[float] = []

        async def tick():
            last = loop.time()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - last)
                last = loop.time()

        count = added_during = 0

        async def command():  # accepted, then reported on by a writer
            nonlocal count
            count += 1
            await outbox.add(f"c{count}", "T", b"x", now=0.0)
            outbox.settle([f"c{count}"])

        ticker = loop.create_task(tick())
        while outbox.files.compaction is None:
            await command()
        while not outbox.files.compaction.done():
            await command()
            added_during += 1
        await outbox.files.compaction
        ticker.cancel()
        await outbox.close()
        return gaps, added_during

    gaps, added_during = run(scenario())
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.2f} s"
    assert added_during > 0


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
    assert {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()} == {
        "lock": 0o600,
        "outbox.0": 0o600,
    }
