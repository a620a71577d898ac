"""Append-only record files: framed records, group-committed fdatasync, torn-tail recovery.

Used by the durable store and by a gateway's outbox. A record is a length, a CRC-32 and a JSON
object; `Journal` returns once a record is on disk, `replay` reads the whole records back after a
crash and sets a torn tail aside (never acknowledged, since its sync had not returned).

What these directories hold is the system's data (contact details, commands): the directory is
created 0700 and every file in it 0600 (journals, snapshots, the lock, torn tails), with those
modes from the start; a directory found open to others is tightened when it is opened, and the
log says so.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import stat
import struct
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cqrs_flow.stores.base import StoreError

__all__ = [
    "HEADER",
    "Journal",
    "JournalError",
    "JournalFiles",
    "Records",
    "frame",
    "lock_directory",
    "open_journal",
    "private_file",
    "replay",
    "sync_directory",
    "wait",
]

log = logging.getLogger("cqrs_flow.journal")

HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload

DIRECTORY_MODE = 0o700  # a data directory: its owner's alone
FILE_MODE = 0o600  # every file in it
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


class JournalError(StoreError):
    """Writing or syncing a journal failed: what it holds can no longer be promised."""


def frame(payload: dict[str, Any]) -> bytes:
    """One record: header + JSON. TypeError/ValueError for data that is not JSON data."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(data), zlib.crc32(data)) + data


class Records:
    """Iterates over the whole records of a file; `end` is then where the last one ends."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.size = os.fstat(file.fileno()).st_size
        self.end = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        file, offset = self.file, 0
        file.seek(0)
        while self.size - offset >= HEADER.size:
            length, crc = HEADER.unpack(file.read(HEADER.size))
            if length == 0 or length > self.size - offset - HEADER.size:
                return
            payload = file.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                return
            try:
                record = json.loads(payload)
            except ValueError:
                return
            if not isinstance(record, dict):
                return
            offset += HEADER.size + length
            self.end = offset
            yield record


class _Batch:
    __slots__ = ("data", "done", "fd", "taken")

    def __init__(self, fd: int, done: asyncio.Future[None]) -> None:
        self.fd = fd
        self.data = bytearray()
        self.done = done
        self.taken = False


class Journal:
    """Appends records to a file; one fdatasync covers every record waiting for it (group commit).

    `append` queues a record and returns a future that is done once the record is on disk. One
    task writes the queued records and syncs them in a worker thread; the records appended in
    the meantime form the next batch. `group_commit=False` syncs every record on its own (only
    to measure what grouping gains).
    """

    def __init__(self, fd: int, group_commit: bool = True) -> None:
        self._fd = fd
        self._group = group_commit
        self._batches: deque[_Batch] = deque()
        self._wake = asyncio.Event()
        self._newest: asyncio.Future[None] | None = None
        self._error: JournalError | None = None
        self.syncs = 0
        self.task = asyncio.get_running_loop().create_task(self._run(), name="journal")

    def check(self) -> None:
        """JournalError if the journal failed: nothing may be changed any more."""
        if self._error is not None:
            raise self._error

    def append(self, record: bytes) -> asyncio.Future[None]:
        self.check()
        tail = self._batches[-1] if self._batches else None
        if tail is None or tail.taken or tail.fd != self._fd or not self._group:
            tail = _Batch(self._fd, asyncio.get_running_loop().create_future())
            self._batches.append(tail)
        tail.data += record
        self._newest = tail.done
        self._wake.set()
        return tail.done

    async def settled(self) -> None:
        """Return once every record appended so far is on disk."""
        await wait(self._newest)

    def rotate(self, fd: int) -> asyncio.Future[None] | None:
        """Append to `fd` from now on; the future of the last record for the old file."""
        newest, self._fd = self._newest, fd
        return newest

    async def _run(self) -> None:
        while True:
            if not self._batches:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._batches[0]
            batch.taken = True
            try:
                await asyncio.to_thread(_write_and_sync, batch.fd, batch.data)
            except OSError as exc:
                self._error = JournalError(f"cannot write the journal: {exc}")
                for failed in self._batches:
                    failed.done.set_exception(self._error)
                    failed.done.exception()  # retrieved: callers that still wait get it anyway
                self._batches.clear()
                raise self._error from exc
            self.syncs += 1
            self._batches.popleft()
            batch.done.set_result(None)

    async def close(self) -> None:
        """Wait for what is queued, then stop; the caller closes the file."""
        if not self.task.done():
            try:
                await self.settled()
            finally:
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)


async def wait(future: asyncio.Future[None] | None) -> None:
    if future is None:
        return
    if future.done():
        future.result()  # raises the journal's error, if it failed
        return
    await asyncio.shield(future)  # a cancelled caller must not cancel everyone's batch


def _write_and_sync(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fdatasync(fd)


def sync_directory(directory: Path) -> None:
    """Make created, renamed and removed names in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_file(path: str | os.PathLike[str], flags: int) -> int:
    """An `opener` for open(): a file it creates is its owner's alone (FILE_MODE) from the start."""
    return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)


def open_journal(path: Path) -> int:
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    if not existed:
        sync_directory(path.parent)
    return fd


def replay(path: Path, apply: Callable[[dict[str, Any]], None]) -> int:
    """Call `apply` on each whole record of the journal at `path`, in order; a torn tail is moved
    to `<name>.torn-<offset>` and cut off. The number of records read."""
    count = 0
    with open(path, "r+b") as file:
        records = Records(file)
        for record in records:
            count += 1
            apply(record)
        if records.end < records.size:
            file.seek(records.end)
            torn = file.read()
            aside = path.with_name(f"{path.name}.torn-{records.end}")
            with open(aside, "wb", opener=private_file) as kept:
                kept.write(torn)
            file.truncate(records.end)
            file.flush()
            os.fsync(file.fileno())
            sync_directory(path.parent)
            log.warning(
                "%s: dropped a torn tail of %d bytes after %d whole records (a write cut "
                "short by a crash, never acknowledged); kept in %s",
                path,
                len(torn),
                count,
                aside.name,
            )
    return count


def private_directory(directory: Path) -> None:
    """Create `directory` (DIRECTORY_MODE; its parents as mkdir -p makes them) if needed. One
    that others may use, and the files in it that others may read, are made their owner's alone,
    with a warning: they were made so by an earlier version, or by hand."""
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    tightened = []
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & _OTHERS:
        os.chmod(directory, DIRECTORY_MODE)
        tightened.append(f"the directory (was {mode:04o})")
    files = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mode & _OTHERS:
                os.chmod(entry.path, FILE_MODE)
                files += 1
    if files:
        tightened.append(f"{files} file(s) in it")
    if tightened:
        log.warning(
            "%s: other users could read the data here; made %s readable by its owner only "
            "(%04o, files %04o)",
            directory,
            " and ".join(tightened),
            DIRECTORY_MODE,
            FILE_MODE,
        )


def lock_directory(directory: Path, what: str) -> BinaryIO:
    """Create `directory` if needed (its owner's alone, see private_directory) and hold its `lock`
    file (flock) for this process: two processes appending to one journal would interleave their
    records. Close the file to release. JournalError if the directory cannot be used or another
    process holds it."""
    try:
        private_directory(directory)
        # held: the caller closes it
        lock = open(directory / "lock", "a+b", opener=private_file)  # noqa: SIM115
    except OSError as exc:
        raise JournalError(f"cannot open the data directory {directory}: {exc}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise JournalError(
            f"the data directory {directory} is in use by another {what} process"
        ) from None
    return lock


class JournalFiles:
    """What an owner of a journaled directory holds: the directory's lock, the journal file being
    appended to and its Journal, and the compaction task that may be running. The durable store
    and the gateway's outbox each have one."""

    def __init__(self, directory: Path, what: str) -> None:
        self.directory = directory
        self.lock: BinaryIO | None = lock_directory(directory, what)
        self.fd: int | None = None
        self.journal: Journal | None = None
        self.compaction: asyncio.Task[None] | None = None

    def start(self, path: Path, group_commit: bool = True) -> Journal:
        """Append to `path` from now on (the directory's first journal of this run)."""
        self.fd = open_journal(path)
        self.journal = Journal(self.fd, group_commit)
        return self.journal

    def rotate(self, fd: int) -> Awaitable[None]:
        """Append to the open file `fd` from now on; await what this returns to wait until the
        old file has all its records on disk (it is closed then). Whatever the caller does
        between the two steps sees exactly the records of the old file."""
        assert self.journal is not None, "start() first"
        old_fd, self.fd = self.fd, fd
        last_old = self.journal.rotate(fd)

        async def finished() -> None:
            try:
                await wait(last_old)
            finally:
                if old_fd is not None:
                    os.close(old_fd)

        return finished()

    def compact_with(self, compaction: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run `compaction` in the background unless one is running."""
        if self.compaction is None or self.compaction.done():
            self.compaction = asyncio.get_running_loop().create_task(compaction(), name=name)

    async def close(self) -> None:
        """Let a compaction finish, write what is queued, and let go of the files."""
        if self.compaction is not None:
            await asyncio.gather(self.compaction, return_exceptions=True)
        if self.journal is not None:
            try:
                await self.journal.close()
            except JournalError:
                pass  # the owner's wait_failure reported it already
        self.release()

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.lock is not None:
            self.lock.close()  # releases the flock
            self.lock = None
