"""The change log of a store node, and what projections keep beside it.

Every change a backend applies (a document inserted, updated or removed) is appended to the log
in the same atomic step as the change itself, with a position: positions strictly increase across
all the collections of a store node, in the order the changes were made, and are never given
twice. A `ChangeLog` is what the node reads the log with (one per node, shared by the backends of
its entities): from a position, waiting for the next change, trimmed to its retention.

Projections write their read models into a store with `apply`: the writes and the position they
bring the read model to, together, in one atomic step, so that a projection killed at any point
resumes where its read model stands, with no change lost or applied twice. A read model comes in
generations (collections): queries read the live one; a replay builds the next one beside it and
`switch`es to it once it has caught up. Why and how: docs/ARCHITECTURE.md, "The change log".
"""

from __future__ import annotations

import asyncio
import builtins
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from cqrs_flow.stores.base import Document, DocumentStore, StoreError
from cqrs_flow.stores.find import Indexes

__all__ = [
    "KEEP_EVERYTHING",
    "Ahead",
    "Batch",
    "Change",
    "ChangeLog",
    "LogInfo",
    "ProjectionState",
    "Retention",
    "SetAside",
    "Superseded",
    "Trimmed",
    "Write",
    "asked_by",
    "check_position",
    "current_subject",
    "generation_collection",
    "within",
]

OPS = ("insert", "update", "delete")

# Who asked for the writes being made: the subject (`sub`) of the end user's token, which the
# gateway put in the command and the store node read from its request (None: no one known).
_SUBJECT: ContextVar[str | None] = ContextVar("cqrs_flow_write_subject", default=None)


@contextmanager
def asked_by(subject: str | None) -> Iterator[None]:
    """The writes made in the block were asked for by `subject` ("" or None: no one known): each
    backend records it with every change it logs. A context variable, so that it reaches the
    change log row in the write's own atomic step without every write method carrying it (the
    SQLite database runs each write in the context of its caller, stores/database.py)."""
    token = _SUBJECT.set(subject or None)
    try:
        yield
    finally:
        _SUBJECT.reset(token)


def current_subject() -> str | None:
    """Who asked for the write being made (see `asked_by`); None when no one is known."""
    return _SUBJECT.get()


@dataclass(frozen=True)
class Change:
    """One change, as the log keeps it. `op` says what happened to the key: insert (it had no
    document), update (it had one and has another), delete (it had one and has none).
    `document` is the document after the change (None for a delete), `previous` the one before
    (None for an insert); `at` is when it was made (seconds since the epoch); `subject` who
    asked for it (the end user's `sub`, see `asked_by`), None when no one is known."""

    position: int
    collection: str
    key: str
    op: str
    command: str | None
    document: Document | None
    previous: Document | None
    at: float
    subject: str | None = None


@dataclass(frozen=True)
class Batch:
    """What one read of the log found: the changes of the collections asked for, in order, and
    the last position it looked at (`through`), where the next read goes on from."""

    changes: builtins.list[Change]
    through: int


@dataclass(frozen=True)
class LogInfo:
    """The log's extent: the oldest position kept and the newest given (0 when none), how many
    changes are kept and about how many bytes they take."""

    first: int
    last: int
    changes: int
    bytes: int

    def __str__(self) -> str:
        if not self.changes:
            return "no changes kept" + (f" (the last was {self.last:,})" if self.last else "")
        return (
            f"{self.changes:,} changes (positions {self.first:,} to {self.last:,}), "
            f"{_size(self.bytes)}"
        )


@dataclass(frozen=True)
class Retention:
    """How much of the log a backend keeps (see cqrs_flow.topology.model.Retention)."""

    changes: int | None = None
    age: float | None = None


KEEP_EVERYTHING = Retention()


class Trimmed(StoreError):
    """A follower asked for changes after a position retention no longer keeps."""

    def __init__(self, after: int, info: LogInfo) -> None:
        where = (
            f"the oldest change kept is {info.first:,}"
            if info.changes
            else f"no change is kept; the next will be {info.last + 1:,}"
        )
        super().__init__(
            f"the changes after {after:,} are no longer kept (retention): {where}. Start "
            f"again from there (a projection: replay it)"
        )
        self.after, self.info = after, info


class Ahead(StoreError):
    """A follower asked for changes after a position the log never gave (a store that keeps its
    documents in memory starts its log again when it restarts)."""

    def __init__(self, after: int, last: int) -> None:
        super().__init__(
            f"position {after:,} is ahead of the change log, whose last position is {last:,}: "
            "the log started again (a store without `data:` loses it when it restarts)"
        )
        self.after, self.last = after, last


class Superseded(StoreError):
    """A write to a generation of a read model that is no longer live nor being built."""


@dataclass(frozen=True)
class Write:
    """One write of a read model: `document` under `key`, or the key's document removed (None)."""

    key: str
    document: Document | None


@dataclass(frozen=True)
class SetAside:
    """A change a projection's handler failed on, kept with the error instead of applied."""

    position: int
    collection: str
    key: str
    op: str
    command: str | None
    error: str


@dataclass
class ProjectionState:
    """A projection's bookkeeping in the store that holds its read model: the live generation,
    the position each generation has reached, and how many changes it set aside."""

    live: int = 0
    positions: dict[int, int] = field(default_factory=dict)
    set_aside: int = 0

    def position(self, generation: int | None = None) -> int:
        return self.positions.get(self.live if generation is None else generation, 0)


def generation_collection(collection: str, generation: int) -> str:
    """The collection of a read model's generation: the entity's own for the first one."""
    return collection if generation == 0 else f"{collection}_g{generation}"


def within(retention: Retention, position: int, last: int, at: float, now: float) -> bool:
    """Whether retention keeps the change at `position` made `at`, the newest being `last`."""
    if retention.changes is not None and position <= last - retention.changes:
        return False
    return retention.age is None or at >= now - retention.age


class ChangeLog(ABC):
    """A store node's change log and its projections' bookkeeping (see the module). The backends
    of the node's entities append to it; `notify` wakes the followers waiting in `wait`."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention
        self._changed = asyncio.Event()

    # -- the log ---------------------------------------------------------------------------------

    @abstractmethod
    async def read(self, after: int, limit: int, collections: Collection[str] | None) -> Batch:
        """Up to `limit` changes after `after`, of `collections` only (None: all). Trimmed if
        retention dropped changes after `after`; Ahead if `after` is beyond the last position."""

    @abstractmethod
    async def info(self) -> LogInfo:
        """The log's extent."""

    @abstractmethod
    async def last(self) -> int:
        """The newest position given (0: none yet); committed, so a read finds it."""

    @abstractmethod
    async def trim(self) -> int:
        """Drop what retention no longer keeps; how many changes were dropped."""

    def notify(self) -> None:
        """Wake the followers: changes were appended (a backend calls it after each write)."""
        self._changed.set()

    async def wait(self, after: int, timeout: float) -> None:
        """Return once the log holds a position after `after`, or `timeout` seconds passed."""
        if await self.last() > after:
            return
        self._changed.clear()
        if await self.last() > after:  # appended between the two looks
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    # -- read models -----------------------------------------------------------------------------

    @abstractmethod
    async def state(self, projection: str) -> ProjectionState:
        """A projection's bookkeeping (a fresh one if it has none yet)."""

    @abstractmethod
    async def apply(
        self,
        projection: str,
        generation: int,
        position: int,
        target: DocumentStore,
        writes: builtins.list[Write],
        set_aside: builtins.list[SetAside],
    ) -> bool:
        """In one atomic step: `writes` to `target` (the generation's collection), the changes
        set aside, and the generation's position set to `position`. False, changing nothing, if
        the generation is at `position` or beyond already (a batch sent again); Superseded if
        the generation is older than the live one."""

    @abstractmethod
    async def begin(self, projection: str) -> int:
        """A new generation after the live one, at position 0 (its collection is emptied by
        the caller): the one a replay builds."""

    @abstractmethod
    async def switch(self, projection: str, generation: int) -> None:
        """Make `generation` the live one, forgetting those before it."""

    @abstractmethod
    async def collection(self, name: str, indexes: Indexes, timestamp: str | None) -> DocumentStore:
        """The backend of collection `name` in this store (created if missing), logging its
        changes here: for a generation of a read model."""

    @abstractmethod
    async def drop(self, target: DocumentStore) -> None:
        """Remove a collection `collection` gave, with its documents (no change is logged)."""

    async def close(self) -> None:  # noqa: B027 (optional: the backends own what it uses)
        """Release what the log holds of its own."""


def _size(count: int) -> str:
    if count < 1024:
        return f"{count:,} bytes"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def check_position(after: int, info: LogInfo) -> None:
    """Trimmed or Ahead for a follower asking for what comes after `after`, else nothing."""
    if after > info.last:
        raise Ahead(after, info.last)
    oldest = info.first if info.changes else info.last + 1
    if after < oldest - 1:
        raise Trimmed(after, info)
