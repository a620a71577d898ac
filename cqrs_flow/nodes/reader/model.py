"""A reader's own read model: the documents of the entities it keeps, in memory, followed from
its store's change log, so that reads need no second hop to the store.

**Bootstrap.** Each entity is read page by page through the store's document service (Find, in
insertion order), and the model follows the log from the position the *first* page was read at
(P0). Each change carries the whole document after it (or none, a delete), and the model sets the
key's state to it: a change replayed over a page that already showed it leaves the same state, so
the pages read later than P0 need no care, and a change after P0 is never missed (the store's
Find gives a position at or before what its pages show). The model answers nothing before it is
caught up with the log (below), so the moments where it shows a key older than its page are
never seen.

**Follow.** One `FollowBatches(after, entities, wait=true)` of the store's read side; each change
at or before the position applied is skipped (no duplicate), and a break is taken up again from
the position applied (no gap). A log that no longer holds that position (retention dropped it:
OUT_OF_RANGE), or a store whose log restarted behind it (a store without `data:` restarted: its
log is shorter than the position applied), makes the model bootstrap again; the old model answers
meanwhile as long as the staleness bound allows.

**Staleness.** The model asks the store for its log's head (`Info`) every `probe` seconds. When
the position applied has reached the head an Info call answered, every change committed before
that call was sent is in the model: `fresh_at` is when it was sent. The model answers while
`now - fresh_at <= staleness`; the reader asks the store otherwise. A head not reached by the
live follow within one probe (its changes were of other entities, or the follow is slow) is
caught up with a follow that ends when caught up (`wait=false`).

Documents are kept in a MemoryStore per entity, with the entity's indexes: one implementation of
filters, order and keyset paging for the store and the model. The model writes nothing anywhere
but its own memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.protobuf.messages import descriptor_of
from cqrs_flow.stores.find import Indexes
from cqrs_flow.topology.model import Entity
from cqrs_flow.transport.rpc import ServiceClient

if TYPE_CHECKING:
    from cqrs_flow.stores.memory import MemoryStore

__all__ = ["ReadModel", "Rebootstrap"]

log = logging.getLogger("cqrs_flow.reader")

SEEN_COMMANDS = 100_000  # the command ids of the newest changes applied, for read-your-writes
RETRY_MOST = 2.0  # seconds between two tries of a lost follow, at most


class Rebootstrap(Exception):
    """The log cannot be followed from the position applied: the model is built again."""


@dataclass
class _Head:
    sent_at: float  # when the Info call was sent
    last: int  # the log's head it answered
    applied: int = 0  # the model's position when it was sent
    generation: int = 0  # the model's generation when it was sent


class ReadModel:
    """The documents of `entities`, followed from the store's log through `changes` (the store
    read side's cqrs_flow.Changes) after a bootstrap through `documents` (its Documents).

    `page`: documents per bootstrap Find (the store's list_limit). `probe`: seconds between two
    looks at the log's head. `clock`: monotonic seconds."""

    def __init__(
        self,
        name: str,
        entities: list[Entity],
        document_class: Callable[[str], type[Message]],
        changes: ServiceClient,
        documents: ServiceClient,
        page: int,
        probe: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.entities = {e.name: e for e in entities}
        self.document_class = document_class
        self.changes = changes
        self.documents = documents
        self.page = page
        self.probe = probe
        self.clock = clock
        self.backends: dict[str, MemoryStore] = {}
        self.applied = 0  # the last log position the model reflects
        self.head = 0  # the log's head as the last Info answered it
        self.fresh_at: float | None = None  # see the module's docstring
        self.ready = False  # bootstrapped once: the model may answer
        self.following = False  # the live follow is open
        self.generation = 0  # bootstraps so far: positions of each are the model's own
        self.bootstraps = 0
        self.reachable = True  # the store answered the last look at its head
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._heads: list[_Head] = []  # heads asked for and not reached yet, oldest first
        self._advanced = asyncio.Event()
        self._decoders: dict[str, Any] = {}
        self.on_bootstrap: Callable[[], None] = lambda: None  # told after each bootstrap
        self._rebuild = asyncio.Event()  # set by the head watch: bootstrap again
        self._why = ""

    # -- what the reader asks ----------------------------------------------------------------

    def staleness(self) -> float | None:
        """Seconds since the model was last known caught up with the store; None: never."""
        return None if self.fresh_at is None else max(0.0, self.clock() - self.fresh_at)

    def lag(self) -> int:
        """Changes the store's log holds beyond the model, as the last look at its head saw."""
        return max(0, self.head - self.applied)

    def fresh(self, bound: float) -> bool:
        staleness = self.staleness()
        return self.ready and staleness is not None and staleness <= bound

    def has_seen(self, command_id: str) -> bool:
        """Whether a change made by this command is in the model (among the newest applied)."""
        return command_id in self._seen

    async def reach(self, position: int, timeout: float) -> bool:
        """Wait until the model reflects the log up to `position`, at most `timeout` seconds."""
        deadline = self.clock() + timeout
        while self.applied < position:
            left = deadline - self.clock()
            if left <= 0:
                return False
            event = self._advanced
            try:
                await asyncio.wait_for(event.wait(), left)
            except asyncio.TimeoutError:
                return self.applied >= position
        return True

    async def head_now(self) -> int:
        """The log's head, asked of the store now (a read-your-writes read that needs it)."""
        asked = self._asking()
        info: Any = await self.changes.call("Info", self.changes.request_class("Info")())
        asked.last = int(info.last)
        try:
            self._saw_head(asked)
        except Rebootstrap as exc:
            self._restart(str(exc))
        return int(info.last)

    # -- keeping it ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Bootstrap, then follow and watch the head, until cancelled; bootstrap again when the
        log cannot be followed. Errors of the store are waited out, never raised."""
        watch = asyncio.get_running_loop().create_task(self._watch_head(), name="model head")
        try:
            backoff = 0.1
            while True:
                try:
                    after = await self.bootstrap()
                    backoff = 0.1
                    while True:
                        try:
                            await self._follow_live(after)
                        except grpc.aio.AioRpcError as exc:
                            if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                                raise Rebootstrap(exc.details() or "") from None
                            log.warning("following the store's log: %s", exc.details())
                        after = self.applied
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, RETRY_MOST)
                except Rebootstrap as exc:
                    log.warning("read model: %s; reading the documents again", exc)
                except grpc.aio.AioRpcError as exc:
                    log.warning("read model bootstrap: %s", exc.details())
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_MOST)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def bootstrap(self) -> int:
        """Read every document of the entities into a new generation of the model, and make it
        the model's; the position to follow from (see the module's docstring)."""
        # imported here: a reader without a read model does not pay for mongomock at start-up
        from cqrs_flow.stores.memory import MemoryStore

        generation = self.generation + 1
        backends = {
            name: MemoryStore(
                f"{entity.collection}@{self.name}.{generation}",
                indexes=Indexes(entity.key, entity.indexes),
            )
            for name, entity in self.entities.items()
        }
        start: int | None = None
        find: Any = self.documents.request_class("Find")
        for name, backend in backends.items():
            after: bytes | None = None
            while True:
                query: dict[str, Any] = {"entity": name, "first": self.page}
                if after is not None:
                    query["after"] = after
                answer: Any = await self.documents.call("Find", find(queries=[query]))
                if start is None:
                    start = int(answer.log_position)
                page = answer.pages[0]
                for data in page.documents:
                    document = self._decode(name, data)
                    backend._put(str(document[self.entities[name].key]), document)
                if not page.has_next or not page.positions:
                    break
                after = page.positions[-1]
        # the new generation answers from now on; until it is caught up the bound decides
        self.backends = backends
        self.generation = generation
        self.bootstraps += 1
        self.on_bootstrap()
        self.applied = self.head = start or 0
        self._heads.clear()
        self.fresh_at = None
        self.ready = True
        self._advance()
        log.info(
            "read model of %s: %s documents, following the log from %d",
            ", ".join(self.entities),
            ", ".join(f"{n} {len(b):,}" for n, b in backends.items()),
            self.applied,
        )
        return self.applied

    async def _follow_live(self, after: int) -> None:
        """The live follow, until it breaks (AioRpcError) or the head watch finds the log
        restarted behind the model (Rebootstrap)."""
        self._rebuild.clear()
        loop = asyncio.get_running_loop()
        follow = loop.create_task(self._follow(after, wait=True), name="model follow")
        rebuild = loop.create_task(self._rebuild.wait(), name="model rebuild")
        try:
            done, _ = await asyncio.wait([follow, rebuild], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (follow, rebuild):
                task.cancel()
            await asyncio.gather(follow, rebuild, return_exceptions=True)
        if rebuild in done:
            raise Rebootstrap(self._why)
        follow.result()

    async def _follow(self, after: int, wait: bool) -> None:
        """Apply the changes after `after` as they come (`wait`: for as long as the stream
        stays; else until caught up)."""
        follow: Any = self.changes.request_class("FollowBatches")
        request = follow(after=after, entities=list(self.entities), wait=wait)
        call = self.changes.stream("FollowBatches", request)
        self.following = self.following or wait
        try:
            async for batch in call:
                self.apply(batch.changes, batch.through)
        finally:
            if wait:
                self.following = False
            call.cancel()

    def apply(self, changes: Any, through: int) -> int:
        """Apply the changes of a batch in order, those after the position applied only; the
        number applied. Synchronous: a read sees a batch whole or not at all."""
        applied = 0
        for change in changes:
            if change.position <= self.applied:
                continue  # applied already (a batch given again after a break)
            backend = self.backends.get(change.entity)
            if backend is not None:
                document = self._decode(change.entity, change.document) if change.document else None
                backend._put(change.key, None if change.op == "delete" else document)
                applied += 1
            if change.command_id:
                self._seen[change.command_id] = None
                if len(self._seen) > SEEN_COMMANDS:
                    self._seen.popitem(last=False)
            self.applied = change.position
        self.applied = max(self.applied, through)
        self._advance()
        return applied

    def _advance(self) -> None:
        while self._heads and self._heads[0].last <= self.applied:
            self.fresh_at = self._heads.pop(0).sent_at
        event, self._advanced = self._advanced, asyncio.Event()
        event.set()

    def _asking(self) -> _Head:
        """A look at the head about to be sent (its `last` is filled in with the answer)."""
        return _Head(self.clock(), 0, self.applied, self.generation)

    def _saw_head(self, head: _Head) -> None:
        """The store's answer to a look at its head. The model may have applied changes newer
        than the answer meanwhile (the follow is faster than Info): only a head below what the
        model had when the question was sent says the log went back."""
        if head.generation != self.generation:
            return  # asked about a model read again since
        if head.last < head.applied and self.ready:
            # the log restarted behind the model (a store without data restarted)
            raise Rebootstrap(
                f"the store's log ends at {head.last:,}, before the model's {head.applied:,}"
            )
        self.head = max(self.head, head.last)
        self._heads.append(head)
        self._advance()

    async def _watch_head(self) -> None:
        """Look at the log's head every `probe` seconds (see the module's docstring)."""
        info_class = self.changes.request_class("Info")
        while True:
            await asyncio.sleep(self.probe)
            if not self.ready:
                continue
            asked = self._asking()
            try:
                info: Any = await self.changes.call("Info", info_class(), timeout=self.probe * 4)
            except grpc.aio.AioRpcError:
                self.reachable = False
                continue
            self.reachable = True
            behind = bool(self._heads)  # a head asked for before is not reached yet
            asked.last = int(info.last)
            try:
                self._saw_head(asked)
            except Rebootstrap as exc:
                self._restart(str(exc))
                continue
            if behind and self._heads and self.following:
                # not reached within a probe: the changes in between may be no entity's of
                # ours, which the live follow does not tell; a follow that ends says so
                last = self._heads[-1].last
                try:
                    await self._follow(self.applied, wait=False)
                except grpc.aio.AioRpcError:
                    continue
                self.apply((), last)

    def _restart(self, why: str) -> None:
        """Make the follower bootstrap again; the old generation answers meanwhile, while the
        staleness bound allows."""
        self._why = why
        self._rebuild.set()

    def _decode(self, entity: str, data: bytes) -> dict[str, Any]:
        decoder = self._decoders.get(entity)
        if decoder is None:
            cls = self.document_class(entity)
            decoder = self._decoders[entity] = (cls, data_converter(descriptor_of(cls)))
        cls, convert = decoder
        document: dict[str, Any] = convert(cls.FromString(data))
        return document
