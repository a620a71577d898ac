"""Records of past commands kept for a time and up to a count, in memory or on disk."""

from __future__ import annotations

import asyncio

from cqrs_flow.stores import retained
from cqrs_flow.stores.applied import AppliedCommands
from cqrs_flow.stores.database import Database
from cqrs_flow.stores.retained import Retained, schema
from cqrs_flow.topology.model import RecordRetention


def test_in_memory_the_count_and_the_time_bound_the_records():
    now = [0.0]
    records = Retained(keep=10.0, count=100, memory_count=3, clock=lambda: now[0])
    for i in range(5):
        records.put(f"r{i}", b"%d" % i)
    assert len(records) == 3 and records.cached("r1") is None and records.cached("r4") == b"4"
    now[0] = 11.0
    assert records.cached("r4") is None  # expired, even before anything else is written
    records.put("r5", b"5")
    assert len(records) == 1


def test_on_disk_the_table_keeps_at_most_count_and_drops_expired_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(retained, "PRUNE_EVERY", 4)
    now = [0.0]

    async def run():
        database = await Database.open(tmp_path, "r.db", "test", schema("records"))
        records = Retained(10.0, 3, 1, database, "records", clock=lambda: now[0])
        for i in range(8):  # pruned after the 4th and the 8th
            records.put(f"r{i}", b"%d" % i)
        await records.settled()
        kept = await database.read(
            lambda c: [r[0] for r in c.execute("SELECT id FROM records ORDER BY seq")]
        )
        from_disk = await records.get("r5")  # not in memory (memory_count 1): read from the table
        now[0] = 20.0
        expired = await records.get("r7")
        await database.close()
        return kept, from_disk, expired

    kept, from_disk, expired = asyncio.run(run())
    assert kept == ["r5", "r6", "r7"] and from_disk == b"5" and expired is None


def test_a_durable_stores_applied_commands_outlive_a_restart(tmp_path):
    async def run():
        applied = await AppliedCommands.open(tmp_path, RecordRetention(memory_count=1))
        applied.add("c1", b"answer 1")
        applied.add("c2", b"answer 2")
        await applied.close()
        applied = await AppliedCommands.open(tmp_path, RecordRetention(memory_count=1))
        found = await applied.get("c1"), await applied.get("c2"), await applied.get("c3")
        await applied.close()
        return found

    assert asyncio.run(run()) == (b"answer 1", b"answer 2", None)


def test_in_memory_applied_commands_are_bounded():
    applied = AppliedCommands(RecordRetention(memory_count=2))
    for i in range(3):
        applied.add(f"c{i}", b"x")
    assert len(applied) == 2 and asyncio.run(applied.get("c0")) is None
