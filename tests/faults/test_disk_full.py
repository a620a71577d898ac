"""A full disk under the durable store and under the gateway's outbox: new work is refused with a
clear error, nothing acknowledged is lost, and work resumes by itself once there is room.

Each test mounts a small tmpfs (root only; skipped elsewhere with the reason) and fills it."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import uuid
from pathlib import Path

import pytest
from cluster import disks_unavailable

from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.stores import SqliteStore, StoreError
from cqrs_flow.stores.database import DiskFull

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(disks_unavailable() is not None, reason=f"{disks_unavailable()}"),
]


@pytest.fixture
def disk(tmp_path):
    """A 4 MiB file system of its own."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)], check=True
    )
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path) -> Path:
    """Fill the file system to its last byte; the file that holds it."""
    filler = mount / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while chunk:
            try:
                out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                chunk = chunk[: len(chunk) // 2]
    return filler


def test_a_full_disk_refuses_store_writes_keeps_what_was_acknowledged_and_then_resumes(disk):
    async def run():
        (store,) = await SqliteStore.open_many(disk / "data", {"contacts": _table()})
        acknowledged = []
        for i in range(50):
            await store.insert(f"k{i}", {"id": f"k{i}", "name": "x" * 200}, command=None)
            acknowledged.append(f"k{i}")
        filler = fill(disk)
        refused: list[str] = []
        for i in range(50, 3000):  # until the WAL has no room left either
            try:
                await store.insert(f"k{i}", {"id": f"k{i}", "name": "y" * 2000})
                acknowledged.append(f"k{i}")
            except StoreError as exc:
                refused.append(str(exc))
                break
        assert refused, "the disk never filled"
        filler.unlink()
        await store.insert("after", {"id": "after", "name": "room again"})  # by itself
        await store.close()
        (store,) = await SqliteStore.open_many(disk / "data", {"contacts": _table()})
        kept = [doc["id"] for doc in await store.list(10_000)]
        await store.close()
        return refused, acknowledged, kept

    refused, acknowledged, kept = asyncio.run(run())
    assert "database or disk is full" in refused[0]
    assert set(acknowledged) | {"after"} == set(kept)


def test_a_full_disk_refuses_outbox_commands_clearly_and_then_takes_them_again(disk):
    async def run():
        outbox = await Outbox.open(disk / "outbox", 60.0)
        for i in range(20):
            await outbox.add(f"c{i}", "T", b"p" * 100, 0.0)
        filler = fill(disk)
        error = None
        for i in range(20, 5000):
            try:
                await outbox.add(f"c{i}", "T", b"q" * 4000, 0.0)
            except DiskFull as exc:
                error = exc
                break
        assert error is not None, "the disk never filled"
        assert f"c{i}" not in {cid for cid, _, _ in outbox.due(1e9)}  # refused: not kept
        filler.unlink()
        await outbox.add("after", "T", b"room again", 0.0)
        waiting = len(outbox)
        await outbox.close()
        outbox = await Outbox.open(disk / "outbox", 60.0)
        again = {cid for cid, _, _ in outbox.due(1e9)}
        await outbox.close()
        return str(error), waiting, again

    error, waiting, again = asyncio.run(run())
    assert "database or disk is full" in error
    assert len(again) == waiting and {"c0", "c19", "after"} <= again


def _table():
    from cqrs_flow.stores.find import Indexes
    from cqrs_flow.stores.sqlite import Table

    return Table(None, Indexes("id", ()))
