"""The gateway's outbox: commands it accepted that no writer has reported on yet, published
again after `redeliver_after`, or at once (`due_now`) when a writer or the broker may have lost
them. With a data directory it is journaled there (stores/journal.py) and a mutation is answered
only once its command is on disk. The layout, compaction and why: docs/ARCHITECTURE.md."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from cqrs_flow.stores.journal import (
    Journal,
    JournalError,
    JournalFiles,
    frame,
    open_journal,
    replay,
    wait,
)

__all__ = ["Outbox"]

log = logging.getLogger("cqrs_flow.outbox")

COMPACT_MIN_RECORDS = 10_000
_GENERATION = re.compile(r"^outbox\.(\d+)$")


class Outbox:
    """Commands published and not yet reported on, in the order they were accepted.

    `Outbox(redeliver_after)` is in memory; `await Outbox.open(directory, redeliver_after)`
    journals to `directory` (and needs a running event loop).
    """

    def __init__(self, redeliver_after: float, capacity: int = 100_000) -> None:
        self.redeliver_after = redeliver_after
        self.capacity = capacity
        self._waiting: OrderedDict[str, tuple[str, bytes, float]] = (
            OrderedDict()
        )  # id -> topic, payload, due
        self.files: JournalFiles | None = None
        self.journal: Journal | None = None
        self._generation = 0
        self._records = 0

    @classmethod
    async def open(
        cls, directory: Path, redeliver_after: float, capacity: int = 100_000, now: float = 0.0
    ) -> Outbox:
        """The outbox journaled in `directory`, with what it held before: all due at `now`.
        JournalError if the directory cannot be used."""
        outbox = cls(redeliver_after, capacity)
        outbox.files = files = JournalFiles(directory, "gateway")
        try:
            generations = sorted(
                int(m.group(1)) for p in directory.iterdir() if (m := _GENERATION.match(p.name))
            )
            for generation in generations:
                outbox._records = replay(
                    directory / f"outbox.{generation}", lambda r: outbox._replay(r, now)
                )
            outbox._generation = generations[-1] if generations else 0
            outbox.journal = files.start(directory / f"outbox.{outbox._generation}")
        except OSError as exc:
            files.release()
            raise JournalError(f"cannot read the outbox in {directory}: {exc}") from None
        if outbox._waiting:
            log.info(
                "outbox in %s: %d command(s) accepted before a restart and not reported on; "
                "publishing them again",
                directory,
                len(outbox._waiting),
            )
        return outbox

    def _replay(self, record: dict[str, Any], now: float) -> None:
        if "add" in record:
            self._waiting[record["add"]] = (
                record["topic"],
                base64.b64decode(record["payload"]),
                now,
            )
        elif "settled" in record:
            for command_id in record["settled"]:
                self._waiting.pop(command_id, None)
        elif "pending" in record:
            self._waiting = OrderedDict(
                (cid, (topic, base64.b64decode(payload), now))
                for cid, topic, payload in record["pending"]
            )

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def full(self) -> bool:
        return len(self._waiting) >= self.capacity

    async def add(self, command_id: str, topic: str, payload: bytes, now: float) -> None:
        """Keep a command until it is settled; with a journal, return once it is on disk
        (JournalError, and the command is not kept, if it cannot be)."""
        self._waiting[command_id] = (topic, payload, now + self.redeliver_after)
        if self.journal is None:
            return
        try:
            done = self.journal.append(
                frame(
                    {
                        "add": command_id,
                        "topic": topic,
                        "payload": base64.b64encode(payload).decode(),
                    }
                )
            )
            self._count_record()
            await wait(done)
        except JournalError:
            self._waiting.pop(command_id, None)
            raise

    def settle(self, command_ids: list[str]) -> None:
        """Forget commands a writer reported on."""
        known = [cid for cid in command_ids if self._waiting.pop(cid, None) is not None]
        if known and self.journal is not None:
            try:
                self.journal.append(frame({"settled": known}))
                self._count_record()
            except JournalError:
                pass  # the outbox is failing: the node ends with wait_failure

    def due(self, now: float) -> list[tuple[str, str, bytes]]:
        """The commands to publish again now; each is due again `redeliver_after` later."""
        found = [
            (cid, topic, payload)
            for cid, (topic, payload, due) in self._waiting.items()
            if due <= now
        ]
        for command_id, topic, payload in found:
            self._waiting[command_id] = (topic, payload, now + self.redeliver_after)
            self._waiting.move_to_end(command_id)
        return found

    def due_now(self, now: float, topics: Collection[str] | None = None) -> int:
        """Make the commands on `topics` (all with None) due at `now`, when what they went to may
        have lost them (a writer that restarted, a broker the gateway reconnected to); how many."""
        wanted = None if topics is None else set(topics)
        found = [
            (cid, topic, payload)
            for cid, (topic, payload, due) in self._waiting.items()
            if due > now and (wanted is None or topic in wanted)
        ]
        for command_id, topic, payload in found:
            self._waiting[command_id] = (topic, payload, now)
        return len(found)

    # -- the journal ----------------------------------------------------------------------------

    def _count_record(self) -> None:
        self._records += 1
        if self.files is not None and self._records > max(
            COMPACT_MIN_RECORDS, 4 * len(self._waiting)
        ):
            self.files.compact_with(self._compact, "outbox compaction")

    async def _compact(self) -> None:
        assert self.files is not None and self.journal is not None
        directory, generation = self.files.directory, self._generation + 1
        try:  # creating the file syncs the directory, which a slow disk makes long
            fd = await asyncio.to_thread(open_journal, directory / f"outbox.{generation}")
        except OSError as exc:
            log.error(
                "outbox: cannot start outbox.%d (the current one goes on): %s", generation, exc
            )
            return
        old_complete = self.files.rotate(fd)
        self._generation = generation
        pending = [
            [cid, topic, base64.b64encode(payload).decode()]
            for cid, (topic, payload, _) in self._waiting.items()
        ]
        opened = self.journal.append(frame({"pending": pending}))
        self._records = 1
        await old_complete
        await wait(opened)
        try:
            await asyncio.to_thread(_delete_before, directory, generation)
        except OSError as exc:
            log.error(
                "outbox: cannot delete the generations before outbox.%d (replayed at "
                "start-up, they change nothing): %s",
                generation,
                exc,
            )

    async def wait_failure(self) -> None:
        """Raise JournalError if the journal fails; never returns otherwise."""
        if self.journal is None:
            await asyncio.Event().wait()
        else:
            await asyncio.shield(self.journal.task)

    async def close(self) -> None:
        if self.files is not None:
            await self.files.close()


def _delete_before(directory: Path, generation: int) -> None:
    """In a worker thread: delete the outbox generations older than `generation`."""
    for path in directory.iterdir():
        if (m := _GENERATION.match(path.name)) and int(m.group(1)) < generation:
            path.unlink()
