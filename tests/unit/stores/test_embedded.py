"""The embedded backend's own properties: the flat in-memory store (no scans) and the durable
store (journal replayed after a crash, torn tails, compaction, fsync before the answer, group
commit)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import mongomock
import pytest

from cqrs_flow.stores import (
    DuplicateKey,
    DurableStore,
    InvalidDocument,
    MemoryStore,
    NotFound,
    StoreError,
    journal,
)
from cqrs_flow.stores.journal import HEADER, frame
from cqrs_flow.topology.loader import parse_topology


def run(coroutine):
    return asyncio.run(coroutine)


def test_keyed_operations_and_list_never_scan_the_collection(monkeypatch):
    store = MemoryStore("contacts")
    assert store._mirror is not None, "this mongomock's internals changed: writes would scan"

    def scan(*args, **kwargs):
        raise AssertionError("a scan of the whole collection")

    monkeypatch.setattr(mongomock.collection.Collection, "_iter_documents", scan)

    async def scenario():
        await store.insert("a", {"id": "a", "name": "Ann"})
        await store.insert_many({"b": {"id": "b"}, "c": {"id": "c"}})
        assert (await store.update("a", {"name": "Bea"}))["name"] == "Bea"
        assert (await store.get("a"))["name"] == "Bea"
        await store.delete("b")
        assert await store.delete_many(["c", "zz"]) == 1
        assert [d["id"] for d in await store.list(10)] == ["a"]
        with pytest.raises(DuplicateKey):
            await store.insert("a", {"id": "a"})

    run(scenario())


# -- the durable store: replay ------------------------------------------------------------------


async def fill(store: DurableStore) -> None:
    for i in range(30):
        await store.insert(
            f"k{i}", {"id": f"k{i}", "n": i, "nested": {"list": [i, {"deep": True}]}}
        )
    await store.update("k3", {"n": 333, "name": "änne ✓"})
    await store.delete("k4")
    assert await store.delete_many(["k5", "k6", "nobody"]) == 2
    await store.insert_many({"m1": {"id": "m1", "f": 1.5}, "m2": {"id": "m2", "b": False}})
    await store.delete("k0")
    await store.insert("k0", {"id": "k0", "again": True})


def test_a_reopened_store_has_every_write(tmp_path):
    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        await fill(store)
        before = await store.list(1000)
        await store.close()
        store = await DurableStore.open(tmp_path / "data", "contacts")
        assert await store.list(1000) == before
        assert len(before) == 30 - 3 + 2  # k4, k5, k6 deleted; m1, m2 added
        assert [d["id"] for d in before][-1] == "k0"  # re-inserted: last
        assert list(store.collection.find({"n": {"$gt": 100}}, {"_id": 0, "id": 1})) == [
            {"id": "k3"}
        ]
        await store.close()

    run(scenario())


def test_the_data_directory_is_held_by_one_store_at_a_time(tmp_path):
    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        with pytest.raises(StoreError, match="in use by another store process"):
            await DurableStore.open(tmp_path / "data", "contacts")
        await store.close()
        await (await DurableStore.open(tmp_path / "data", "contacts")).close()

    run(scenario())


CRASHING_WRITER = """
import asyncio, sys
from cqrs_flow.stores import DurableStore

async def main():
    store = await DurableStore.open(sys.argv[1], "contacts")
    async def one(i):
        await store.insert(f"k{i}", {"id": f"k{i}", "payload": "x" * (i % 500)})
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
        store = await DurableStore.open(tmp_path / "data", "contacts")
        stored = {d["id"] for d in await store.list(1_000_000)}
        assert set(acknowledged) <= stored
        await store.close()

    run(scenario())


def journal_of(directory: Path) -> Path:
    (path,) = sorted(directory.glob("journal.*[0-9]"))
    return path


@pytest.mark.parametrize(
    "tail",
    [
        "half of a record",
        "a header only",
        "a bad checksum",
        "zeros",
        "a payload that is not an object",
    ],
)
def test_a_torn_tail_is_dropped_and_kept_aside(tmp_path, caplog, tail):
    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        await fill(store)
        before = await store.list(1000)
        await store.close()
        journal = journal_of(tmp_path / "data")
        whole = journal.stat().st_size
        record = frame({"op": "insert", "key": "torn", "doc": {"id": "torn"}})
        garbage = {
            "half of a record": record[: len(record) // 2],
            "a header only": record[: HEADER.size],
            "a bad checksum": record[:-1] + b"X",
            "zeros": b"\0" * 4096,
            "a payload that is not an object": HEADER.pack(2, zlib.crc32(b"[]")) + b"[]",
        }[tail]
        with open(journal, "ab") as file:
            file.write(garbage)
        with caplog.at_level(logging.WARNING, "cqrs_flow.store"):
            store = await DurableStore.open(tmp_path / "data", "contacts")
        assert await store.list(1000) == before
        assert f"dropped a torn tail of {len(garbage)} bytes" in caplog.text
        assert journal.stat().st_size == whole
        assert (journal.parent / f"{journal.name}.torn-{whole}").read_bytes() == garbage
        await store.insert("after", {"id": "after"})  # appends after the last whole record
        await store.close()
        store = await DurableStore.open(tmp_path / "data", "contacts")
        assert [d["id"] for d in await store.list(1000)] == [d["id"] for d in before] + ["after"]
        await store.close()

    run(scenario())


# -- the durable store: compaction ---------------------------------------------------------------


def test_compaction_keeps_every_document_and_drops_old_journals(tmp_path):
    async def scenario():
        directory = tmp_path / "data"
        store = await DurableStore.open(directory, "contacts", compact_min_records=25)
        rng = random.Random(7)
        for step in range(400):
            key = f"k{rng.randrange(40)}"
            try:
                if rng.random() < 0.6:
                    await store.insert(key, {"id": key, "step": step})
                elif rng.random() < 0.5:
                    await store.update(key, {"step": step})
                else:
                    await store.delete(key)
            except (NotFound, DuplicateKey):
                pass
        if store.files.compaction:
            await store.files.compaction
        before = await store.list(1000)
        generation = store._generation
        assert generation > 3  # compacted several times
        assert sorted(p.name for p in directory.iterdir()) == [
            "journal." + str(generation),
            "lock",
            "snapshot",
        ]
        await store.close()
        store = await DurableStore.open(directory, "contacts")
        assert await store.list(1000) == before
        await store.close()

    run(scenario())


def test_a_compaction_does_not_stall_the_store(tmp_path, monkeypatch):
    """A slow disk (fsync taking 0.5 s) must not stop the event loop while the store compacts:
    a ticker keeps ticking every 10 ms and writes and reads keep being answered."""
    real_fsync = os.fsync

    def slow_fsync(fd):
        time.sleep(0.5)
        real_fsync(fd)

    async def scenario():
        loop = asyncio.get_running_loop()
        store = await DurableStore.open(tmp_path / "data", "contacts", compact_min_records=20)
        monkeypatch.setattr(os, "fsync", slow_fsync)  # from here on: the compaction's syncs
        gaps: list[float] = []

        async def tick():
            last = loop.time()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - last)
                last = loop.time()

        ticker = loop.create_task(tick())
        await store.insert("k", {"id": "k", "step": 0})
        step = answered_during = 0
        while store.files.compaction is None or not store.files.compaction.done():
            compacting = store.files.compaction is not None
            step += 1
            await store.update("k", {"step": step})
            assert (await store.get("k"))["step"] == step
            answered_during += compacting
        ticker.cancel()
        await store.close()
        return gaps, answered_during

    gaps, answered_during = run(scenario())
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.2f} s"
    assert answered_during > 0


def test_each_keys_last_command_survives_a_reopen_and_a_compaction(tmp_path):
    async def scenario():
        directory = tmp_path / "data"
        store = await DurableStore.open(directory, "contacts", compact_min_records=25)
        expected = {}
        for step in range(120):
            key, command = f"k{step % 30}", f"cmd-{step}"
            if step % 30 == 29:
                await store.delete_many([key, "never-stored"], command)  # tombstones for both
                expected["never-stored"] = command
            elif key in store._documents:
                await store.update(key, {"step": step}, command)
            else:
                await store.insert(key, {"id": key}, command)
            expected[key] = command
        await store.insert("plain", {"id": "plain"})  # written without a command: none kept
        if store.files.compaction:
            await store.files.compaction
        assert store._generation > 1 and (directory / "snapshot").exists()
        await store.update("k3", {"last": True}, "cmd-final")  # in the journal after the snapshot
        expected["k3"] = "cmd-final"
        await store.close()
        store = await DurableStore.open(directory, "contacts")
        assert {k: store.last_command(k) for k in expected} == expected
        assert store.last_command("plain") is None
        await store.close()

    run(scenario())


def test_last_writer_wins_records_replay_under_their_own_rules(tmp_path):
    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts", last_writer_wins=True)
        await store.update("made-by-update", {"id": "made-by-update", "n": 2}, "cmd-2")
        await store.delete("never-there", "cmd-3")
        await store.insert("made-by-update", {"id": "made-by-update", "n": 4}, "cmd-4")  # replaces
        await store.close()
        store = await DurableStore.open(tmp_path / "data", "contacts")  # the flag is off now
        assert await store.list(10) == [{"id": "made-by-update", "n": 4}]
        assert store.last_command("never-there") == "cmd-3"
        with pytest.raises(NotFound):  # new writes follow the store's rules of today
            await store.update("other", {"id": "other"}, "cmd-5")
        await store.close()

    run(scenario())


def test_a_long_journal_is_compacted_at_start_up(tmp_path):
    async def scenario():
        directory = tmp_path / "data"
        store = await DurableStore.open(directory, "contacts")
        await fill(store)
        before = await store.list(1000)
        await store.close()
        assert not (directory / "snapshot").exists()
        store = await DurableStore.open(directory, "contacts", compact_min_records=10)
        await store.files.compaction
        assert (directory / "snapshot").exists() and not (directory / "journal.0").exists()
        assert journal_of(directory).stat().st_size == 0
        await store.close()
        store = await DurableStore.open(directory, "contacts")
        assert await store.list(1000) == before
        await store.close()

    run(scenario())


def test_a_compaction_cut_short_loses_nothing(tmp_path):
    """A crash at each step of a compaction: after the switch to the next journal (no snapshot),
    during the snapshot (snapshot.tmp), and after the snapshot (the old journal still there)."""

    async def scenario():
        directory = tmp_path / "data"
        store = await DurableStore.open(directory, "contacts")
        await fill(store)
        before = await store.list(1000)
        await store.close()
        # switched to journal.1 and wrote to it, but no snapshot yet
        store = await DurableStore.open(directory, "contacts")
        old_complete = store.files.rotate(
            os.open(directory / "journal.1", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        )
        await store.insert("later", {"id": "later"})
        await old_complete
        before.append({"id": "later"})
        (directory / "snapshot.tmp").write_bytes(b"half a snapshot")
        await store.close()
        store = await DurableStore.open(directory, "contacts")
        assert await store.list(1000) == before
        assert not (directory / "snapshot.tmp").exists()
        # a snapshot of generation 1 written, journal.0 not yet deleted
        store._write_snapshot(1, [{**d, "_id": d["id"]} for d in before if d["id"] != "later"], [])
        (directory / "journal.0").write_bytes(frame({"op": "insert", "key": "stale", "doc": {}}))
        await store.close()
        store = await DurableStore.open(directory, "contacts")
        assert await store.list(1000) == before
        assert not (directory / "journal.0").exists()
        await store.close()

    run(scenario())


def test_a_damaged_snapshot_or_a_missing_journal_stops_the_store(tmp_path):
    async def scenario():
        directory = tmp_path / "data"
        store = await DurableStore.open(directory, "contacts", compact_min_records=5)
        await fill(store)
        await store.files.compaction
        await store.close()
        snapshot = (directory / "snapshot").read_bytes()
        (directory / "snapshot").write_bytes(snapshot[:-3])
        with pytest.raises(StoreError, match="snapshot is damaged"):
            await DurableStore.open(directory, "contacts")
        (directory / "snapshot").unlink()
        with pytest.raises(StoreError, match=r"journal.0 is missing"):
            await DurableStore.open(directory, "contacts")

    run(scenario())


# -- the durable store: fsync before the answer ----------------------------------------------------


def test_an_awaited_write_is_in_the_journal_file(tmp_path):
    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        journal = journal_of(tmp_path / "data")
        await store.insert("k1", {"id": "k1", "name": "Ann"})
        assert journal.read_bytes() == frame(
            {"op": "insert", "key": "k1", "doc": {"id": "k1", "name": "Ann"}}
        )
        await store.update("k1", {"name": "Bea"})
        assert journal.read_bytes().endswith(
            frame({"op": "update", "key": "k1", "fields": {"name": "Bea"}})
        )
        assert store.journal.syncs == 2
        await store.close()

    run(scenario())


class SlowDisk:
    """Stands in for write + fdatasync: counts the syncs, and holds them while `hold` is clear."""

    def __init__(self, monkeypatch) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.syncs = 0
        self.write = journal._write_and_sync
        monkeypatch.setattr(journal, "_write_and_sync", self)

    def __call__(self, fd, data) -> None:
        self.hold.wait(10)
        time.sleep(0.01)
        self.write(fd, data)
        self.syncs += 1


def test_a_write_answers_only_after_its_sync_and_reads_wait_for_it(tmp_path, monkeypatch):
    disk = SlowDisk(monkeypatch)

    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        disk.hold.clear()
        write = asyncio.ensure_future(store.insert("k1", {"id": "k1"}))
        read = asyncio.ensure_future(store.get("k1"))
        await asyncio.sleep(0.2)
        assert not write.done() and not read.done()
        assert journal_of(tmp_path / "data").read_bytes() == b""
        disk.hold.set()
        await write
        assert await read == {"id": "k1"}
        assert disk.syncs == 1
        await store.close()

    run(scenario())


def test_concurrent_writes_share_their_syncs(tmp_path, monkeypatch):
    disk = SlowDisk(monkeypatch)

    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        await asyncio.gather(*(store.insert(f"k{i}", {"id": f"k{i}"}) for i in range(100)))
        assert disk.syncs <= 3  # the first write alone, then everything that queued behind it
        await store.close()
        alone = await DurableStore.open(tmp_path / "other", "contacts", group_commit=False)
        await asyncio.gather(*(alone.insert(f"k{i}", {"id": f"k{i}"}) for i in range(20)))
        assert alone.journal.syncs == 20
        await alone.close()

    run(scenario())


def test_a_failing_disk_fails_the_writes_and_the_store(tmp_path, monkeypatch):
    def broken(fd, data):
        raise OSError(28, "No space left on device")

    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        await store.insert("k1", {"id": "k1"})
        monkeypatch.setattr(journal, "_write_and_sync", broken)
        watcher = asyncio.ensure_future(store.wait_failure())
        with pytest.raises(StoreError, match=r"cannot write the journal: .*No space left"):
            await store.insert("k2", {"id": "k2"})
        with pytest.raises(StoreError, match="No space left"):
            await watcher
        with pytest.raises(StoreError):
            await store.delete("k1")
        with pytest.raises(StoreError):
            await store.list(10)  # nor a read: the store is going down
        await store.close()
        monkeypatch.undo()
        store = await DurableStore.open(tmp_path / "data", "contacts")
        assert [d["id"] for d in await store.list(10)] == ["k1"]  # k2 was never acknowledged
        await store.close()

    run(scenario())


def test_a_document_that_is_no_json_data_is_refused_unchanged(tmp_path):
    async def scenario():
        store = await DurableStore.open(tmp_path / "data", "contacts")
        with pytest.raises(InvalidDocument, match="cannot journal the document"):
            await store.insert("k1", {"id": "k1", "when": object()})
        with pytest.raises(NotFound):
            await store.get("k1")
        await store.close()

    run(scenario())


# -- the topology key ------------------------------------------------------------------------------


def test_the_store_data_key(shipped):
    text = shipped.source.read_text()
    assert shipped.nodes["store"].data is None
    durable_text = text.replace(
        "    document: contacts.Contact", "    document: contacts.Contact\n    data: state/store", 1
    )
    assert durable_text != text
    topology = parse_topology(durable_text, shipped.source)
    assert topology.nodes["store"].data == Path("state/store")


# -- the durable store: who may read the data ---------------------------------------------------


def modes(directory: Path) -> dict[str, str]:
    """The permission bits of `directory` (as ".") and of each file in it, in octal."""
    found = {".": f"{directory.stat().st_mode & 0o777:o}"}
    found.update({p.name: f"{p.stat().st_mode & 0o777:o}" for p in directory.iterdir()})
    return found


@pytest.fixture
def open_umask():
    """The usual umask (022), under which files are created readable by everyone."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_the_data_directory_and_its_files_are_the_owners_alone(tmp_path, open_umask):
    async def scenario():
        directory = tmp_path / "var" / "data"
        store = await DurableStore.open(directory, "contacts", compact_min_records=5)
        await fill(store)
        if store.files.compaction:
            await store.files.compaction
        await store.close()
        with open(journal_of(directory), "ab") as file:
            file.write(b"torn")
        await (await DurableStore.open(directory, "contacts")).close()
        found = modes(directory)
        assert {"snapshot", "lock"} <= set(found) and any(".torn-" in n for n in found)
        assert found == {name: "700" if name == "." else "600" for name in found}

    run(scenario())


def test_a_data_directory_others_could_read_is_tightened_when_opened(tmp_path, open_umask, caplog):
    async def scenario():
        directory = tmp_path / "data"
        store = await DurableStore.open(directory, "contacts")
        await fill(store)
        before = await store.list(1000)
        await store.close()
        os.chmod(directory, 0o755)  # as an earlier version left it
        for path in directory.iterdir():
            os.chmod(path, 0o644)
        with caplog.at_level(logging.WARNING, "cqrs_flow.journal"):
            store = await DurableStore.open(directory, "contacts")
        assert await store.list(1000) == before
        await store.close()
        assert set(modes(directory).values()) == {"700", "600"}
        assert (
            f"{directory}: other users could read the data here; made the directory (was 0755) "
            "and 2 file(s) in it readable by its owner only (0700, files 0600)" in caplog.text
        )

    run(scenario())
