"""An SQLite database file in a data directory of its own, for one process: the durable store and
a gateway's outbox each keep theirs in one.

The directory is private (0700, its files 0600, created so), held by one process at a time (a
`lock` file, flock'ed), and the database is in WAL mode with synchronous=FULL. One task owns the
connection that writes: the writes waiting when it is free are carried out in one transaction,
each in a savepoint of its own, and every caller gets its answer once that transaction is
committed (group commit). Reads go to other connections, in threads of their own, and see only
committed transactions. Why and how: docs/ARCHITECTURE.md, "The durable store".
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import logging
import os
import sqlite3
import stat
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from cqrs_flow.stores.base import InvalidDocument, StoreError

__all__ = [
    "Database",
    "DatabaseError",
    "DiskFull",
    "create_private_file",
    "lock_directory",
    "sync_directory",
]

log = logging.getLogger("cqrs_flow.store")

T = TypeVar("T")

CACHE_KIB = 16 * 1024  # page cache of each connection: what bounds the process's memory
SMALL_CACHE_KIB = 1024  # for a database of records that are mostly written, rarely read
_SQLITE_FULL = 13
_SQLITE_TOOBIG = 18


class DatabaseError(StoreError):
    """Writing the database failed: the writes of that transaction were not made."""


class DiskFull(DatabaseError):
    """The disk (or the file system) is full: nothing of that transaction was written, and writes
    succeed again once there is room."""


def sync_directory(directory: Path) -> None:
    """Make created, renamed and removed names in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_directory(directory: Path) -> None:
    """Create `directory` (0700) if needed; one that others may enter is made private, saying so."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        os.chmod(directory, mode & 0o700)
        log.warning(
            "data directory %s was open to others (mode %04o); made it %04o",
            directory,
            mode,
            mode & 0o700,
        )


def create_private_file(path: Path) -> bool:
    """Create `path` empty with mode 0600 unless it exists; whether it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def lock_directory(directory: Path, what: str) -> BinaryIO:
    """Create `directory` if needed (private) and hold its `lock` file (flock) for this process:
    SQLite would let two processes open one database, and each would take the other's writes for
    its own. Close the file to release. DatabaseError if the directory cannot be used or another
    process holds it."""
    try:
        private_directory(directory)
        create_private_file(directory / "lock")
        lock = open(directory / "lock", "a+b")  # noqa: SIM115 (held: the caller closes it)
    except OSError as exc:
        raise DatabaseError(f"cannot open the data directory {directory}: {exc}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise DatabaseError(
            f"the data directory {directory} is in use by another {what} process"
        ) from None
    return lock


def connect(path: Path, *, writer: bool, cache_kib: int = CACHE_KIB) -> sqlite3.Connection:
    """A connection to the database at `path` (which exists), set up as every one here is:
    autocommit (transactions are begun explicitly), WAL, synchronous=FULL, a bounded cache."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 5000")
    if writer:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            connection.close()
            raise DatabaseError(f"{path}: SQLite cannot use WAL mode here (it says {mode!r})")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
    if not writer:
        connection.execute("PRAGMA query_only = ON")
    return connection


def error_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error (Python 3.11+ says; older ones by the message)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc)
    if "database or disk is full" in text:
        return _SQLITE_FULL
    if "too big" in text:
        return _SQLITE_TOOBIG
    return None


class _Write(Generic[T]):
    """A queued write, with the context of the task that asked for it (its context variables:
    who asked for it, stores/log.asked_by), which it runs in, in the writer's thread."""

    __slots__ = ("context", "done", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], T], done: asyncio.Future[T]) -> None:
        self.work = work
        self.done = done
        self.context = contextvars.copy_context()


class Database:
    """One SQLite database file in a locked, private data directory.

    `await Database.open(directory, "store.db", "store", schema)`; it needs a running event loop.
    `write(work)` carries out `work(connection)` in the writer's thread, in a transaction shared
    with the other writes waiting, and returns its result once that is committed (an exception
    `work` raises undoes what it did and is raised to the caller only). `read(work)` runs
    `work(connection)` in a reader thread.
    """

    def __init__(
        self,
        directory: Path,
        path: Path,
        lock: BinaryIO,
        connection: sqlite3.Connection,
        group_commit: bool,
        readers: int,
        cache_kib: int = CACHE_KIB,
    ) -> None:
        self.directory, self.path = directory, path
        self._lock: BinaryIO | None = lock
        self._connection = connection
        self._group = group_commit
        self._cache_kib = cache_kib
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._queue: deque[_Write[Any]] = deque()
        self._wake = asyncio.Event()
        self._error: DatabaseError | None = None
        self.commits = 0
        self.on_commit: list[Callable[[], None]] = []  # called after each commit (in the loop)
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"{path.name} writer")

    @classmethod
    async def open(
        cls,
        directory: Path,
        name: str,
        what: str,
        schema: Callable[[sqlite3.Connection], None],
        *,
        group_commit: bool = True,
        readers: int = 2,
        cache_kib: int = CACHE_KIB,
    ) -> Database:
        """Lock the directory, create the database (0600) if needed and bring its schema up with
        `schema(connection)` (in a transaction). DatabaseError if any of it fails. `cache_kib`
        is each connection's page cache (SMALL_CACHE_KIB for records mostly written)."""
        lock = await asyncio.to_thread(lock_directory, directory, what)
        path = directory / name
        try:
            connection = await asyncio.to_thread(_open_file, path, schema, cache_kib)
        except BaseException:
            lock.close()
            raise
        return cls(directory, path, lock, connection, group_commit, readers, cache_kib)

    # -- writes ---------------------------------------------------------------------------------

    def check(self) -> None:
        """DatabaseError if the database failed: nothing may be changed any more."""
        if self._error is not None:
            raise self._error

    def submit(self, work: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue `work`; the future is done once its transaction is committed."""
        self.check()
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(work, done))
        self._wake.set()
        return done

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # shielded: a cancelled caller must not cancel the answer of a write that is made anyway
        return await asyncio.shield(self.submit(work))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._group:
                batch, self._queue = list(self._queue), deque()
            else:
                batch = [self._queue.popleft()]
            try:
                outcomes = await loop.run_in_executor(self._writer, self._commit, batch)
            except sqlite3.Error as exc:
                self._failed(batch, exc)
                continue
            self.commits += 1
            for listener in self.on_commit:
                listener()
            for write, (ok, value) in zip(batch, outcomes, strict=True):
                if write.done.cancelled():
                    continue
                if ok:
                    write.done.set_result(value)
                else:
                    write.done.set_exception(value)
                    write.done.exception()  # retrieved: a caller that went away does not care

    def _failed(self, batch: list[_Write[Any]], exc: sqlite3.Error) -> None:
        """A transaction that could not be committed: its writes fail. A full disk leaves the
        database as it was (SQLite rolled back), so later writes may succeed once there is room;
        any other error (I/O, a damaged file) fails the database for good, and the owner's
        `wait_failure` raises so that the process is restarted and SQLite recovers the file."""
        full = error_code(exc) == _SQLITE_FULL
        error = (DiskFull if full else DatabaseError)(f"cannot write {self.path}: {exc}")
        if full:
            log.error("%s; the writes of that transaction were refused", error)
        else:
            self._error = error
            batch = batch + list(self._queue)
            self._queue.clear()
        for write in batch:
            if not write.done.done():
                write.done.set_exception(error)
                write.done.exception()
        if self._error is not None:
            raise self._error from exc

    def _commit(self, batch: list[_Write[Any]]) -> list[tuple[bool, Any]]:
        """In the writer's thread: the batch in one transaction, each write in a savepoint."""
        connection = self._connection
        outcomes: list[tuple[bool, Any]] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for write in batch:
                connection.execute("SAVEPOINT w")
                try:
                    outcomes.append((True, write.context.run(write.work, connection)))
                except Exception as exc:
                    if isinstance(exc, sqlite3.Error):
                        if error_code(exc) != _SQLITE_TOOBIG:
                            raise  # the disk or the file: the whole transaction fails
                        exc = InvalidDocument(f"too large for the database: {exc}")
                    connection.execute("ROLLBACK TO w")
                    outcomes.append((False, exc))
                connection.execute("RELEASE w")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back already
            raise
        return outcomes

    async def settled(self) -> None:
        """Return once every write queued so far is committed (or failed)."""
        if self._queue:
            await asyncio.gather(*(w.done for w in list(self._queue)), return_exceptions=True)

    # -- reads ----------------------------------------------------------------------------------

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self.check()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, work)

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = connect(
                self.path, writer=False, cache_kib=self._cache_kib
            )
            with self._guard:
                self._reader_connections.append(connection)
        return work(connection)

    # -- life -----------------------------------------------------------------------------------

    async def wait_failure(self) -> None:
        """Raise DatabaseError if the database fails; never returns otherwise."""
        await asyncio.shield(self.task)

    async def close(self) -> None:
        """Commit what is queued, then let go of the connections and the directory (once)."""
        if self._lock is None:
            return
        if not self.task.done():
            try:
                await self.settled()
            finally:
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._close_connections)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _close_connections(self) -> None:
        with self._guard:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
        self._connection.close()  # the last one: SQLite checkpoints and removes the WAL


def _open_file(
    path: Path, schema: Callable[[sqlite3.Connection], None], cache_kib: int = CACHE_KIB
) -> sqlite3.Connection:
    try:
        if create_private_file(path):
            sync_directory(path.parent)
        connection = connect(path, writer=True, cache_kib=cache_kib)
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from None
    try:
        connection.execute("BEGIN IMMEDIATE")
        schema(connection)
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        connection.close()
        raise DatabaseError(f"cannot open {path}: {exc}") from None
    except BaseException:
        connection.close()
        raise
    return connection
