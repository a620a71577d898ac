"""The change log of the embedded store: in memory, appended to by each MemoryStore of a node in
the very step of the change (a synchronous call, between two awaits), bounded by retention. It
is lost with the process, as the documents are: a restarted store starts its log at 1 again.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Collection
from typing import Any

from cqrs_flow.stores.base import DocumentStore
from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.log import (
    Batch,
    Change,
    ChangeLog,
    LogInfo,
    ProjectionState,
    Retention,
    SetAside,
    Superseded,
    Write,
    check_position,
    current_subject,
    within,
)
from cqrs_flow.stores.memory import MemoryStore, copy_out

__all__ = ["MemoryLog"]

SAMPLE = 200  # newest changes whose size estimates the log's


class MemoryLog(ChangeLog):
    """Changes in a list, oldest first (`_head` is where the kept ones start: dropping from the
    front moves it, and the list is compacted once half of it is dropped)."""

    def __init__(self, retention: Retention, last_writer_wins: bool = False) -> None:
        super().__init__(retention)
        self.last_writer_wins = last_writer_wins
        self.last_position = 0
        self._changes: builtins.list[Change] = []
        self._head = 0
        self._states: dict[str, ProjectionState] = {}
        self.set_aside: builtins.list[tuple[str, SetAside]] = []

    def append(
        self,
        collection: str,
        key: str,
        op: str,
        command: str | None,
        document: dict[str, Any] | None,
        previous: dict[str, Any] | None,
    ) -> None:
        """A change a store just made (its stored documents, which are never changed in place),
        with who asked for it (log.asked_by)."""
        self.last_position += 1
        self._changes.append(
            Change(
                self.last_position,
                collection,
                key,
                op,
                command,
                document,
                previous,
                time.time(),
                current_subject(),
            )
        )
        limit = self.retention.changes
        if limit is not None and len(self._changes) - self._head > limit:
            self._drop(1)
        self.notify()

    def _drop(self, count: int) -> None:
        self._head += count
        if self._head * 2 > len(self._changes):
            del self._changes[: self._head]
            self._head = 0

    def _info(self, size: bool = False) -> LogInfo:
        """The log's extent; its size in bytes (an estimate) only with `size`."""
        kept = len(self._changes) - self._head
        if not kept:
            return LogInfo(0, self.last_position, 0, 0)
        if not size:
            return LogInfo(self._changes[self._head].position, self.last_position, kept, 0)
        sample = self._changes[-SAMPLE:]
        total = sum(
            len(c.collection)
            + len(c.key)
            + len(c.command or "")
            + len(c.subject or "")
            + 24
            + _size(c.document)
            + _size(c.previous)
            for c in sample
        )
        return LogInfo(
            self._changes[self._head].position,
            self.last_position,
            kept,
            total * kept // len(sample),
        )

    async def read(self, after: int, limit: int, collections: Collection[str] | None) -> Batch:
        info = self._info()
        check_position(after, info)
        start = self._head + max(0, after - info.first + 1) if info.changes else len(self._changes)
        rows = self._changes[start : start + limit]
        changes = [
            Change(
                c.position,
                c.collection,
                c.key,
                c.op,
                c.command,
                None if c.document is None else copy_out(c.document),
                None if c.previous is None else copy_out(c.previous),
                c.at,
                c.subject,
            )
            for c in rows
            if collections is None or c.collection in collections
        ]
        return Batch(changes, rows[-1].position if rows else after)

    async def info(self) -> LogInfo:
        return self._info(size=True)

    async def last(self) -> int:
        return self.last_position

    async def trim(self) -> int:
        retention, kept = self.retention, self._changes[self._head :]
        now = time.time()
        dropped = 0
        for change in kept:
            if within(retention, change.position, self.last_position, change.at, now):
                break
            dropped += 1
        if dropped:
            self._drop(dropped)
        return dropped

    # -- read models -----------------------------------------------------------------------------

    async def state(self, projection: str) -> ProjectionState:
        state = self._states.get(projection) or ProjectionState()
        return ProjectionState(state.live, dict(state.positions), state.set_aside)

    async def apply(
        self,
        projection: str,
        generation: int,
        position: int,
        target: DocumentStore,
        writes: builtins.list[Write],
        set_aside: builtins.list[SetAside],
    ) -> bool:
        assert isinstance(target, MemoryStore)
        # No await from here on: the writes and the position are one step.
        state = self._states.setdefault(projection, ProjectionState())
        if generation < state.live:
            raise Superseded(
                f"generation {generation} of {projection} is behind the live one ({state.live})"
            )
        if position <= state.position(generation):
            return False
        for write in writes:
            target._put(write.key, write.document)
        self.set_aside.extend((projection, s) for s in set_aside)
        state.set_aside += len(set_aside)
        state.positions[generation] = position
        return True

    async def begin(self, projection: str) -> int:
        state = self._states.setdefault(projection, ProjectionState())
        state.positions = {g: p for g, p in state.positions.items() if g <= state.live}
        state.positions.setdefault(state.live, 0)
        state.positions[state.live + 1] = 0
        return state.live + 1

    async def switch(self, projection: str, generation: int) -> None:
        state = self._states.setdefault(projection, ProjectionState())
        state.live = generation
        state.positions = {g: p for g, p in state.positions.items() if g >= generation}

    async def collection(self, name: str, indexes: Indexes, timestamp: str | None) -> DocumentStore:
        return MemoryStore(name, self.last_writer_wins, indexes, log=self)

    async def drop(self, target: DocumentStore) -> None:
        """Nothing to do: the collection goes with the last reference to its store."""


def _size(document: dict[str, Any] | None) -> int:
    if document is None:
        return 0
    return len(json.dumps(document, default=str, separators=(",", ":")))
