"""The gateway's one follow of the store's change log (cqrs_flow.Changes/Follow, passed on by its
reader), fanned out to its live subscribers.

However many subscribers there are, the gateway holds one Follow stream (`ChangeFeed`): each
change it brings is decoded once and offered to the subscribers it concerns (by entity and key,
or by entity for a filtered list). Each subscriber has a bounded queue (limits.live_queue): one
that falls further behind is closed with an error (SLOW_CONSUMER) that names the position to
resume after, so a slow client never makes the gateway hold more. The feed starts with its first
subscriber and stops a while (LINGER) after its last one has gone.

No change is missed between a subscriber's first message and the feed. A subscriber comes with
the position its current state was read at (FindResponse.log_position, or the position a client
resumes after) and gets every change after exactly that position: the feed keeps its last
RECENT changes, and a subscriber whose position is older than those reads the changes in
between from the log first, with a Follow of its own that ends when caught up (`wait: false`),
then joins the feed. Changes the feed brings that are at or before a subscriber's position are
not its own and are dropped, so the two never overlap.

A lost stream (the reader or store restarting) is followed again from the last position the
feed has, with a backoff, and its subscribers see nothing of it; one that cannot be followed
again within RECONNECT_WITHIN, a log that restarted behind the feed (a store that lost it), or a
store that keeps no log (UNIMPLEMENTED) ends every subscription with an error saying so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError

from cqrs_flow.contracts.documents import EntityView
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.security.tokens import Credentials
from cqrs_flow.topology.model import Limits
from cqrs_flow.transport.rpc import channel, method_path
from cqrs_flow.transport.tls import ChannelSecurity

__all__ = [
    "CHANGES_SERVICE",
    "NO_CHANGE_LOG",
    "ChangeFeed",
    "ChangesClient",
    "LiveChange",
    "Subscriber",
    "failure_of",
]

# The change log's service (cqrs_flow/protobuf/proto/cqrs_flow/changes.proto).
CHANGES_SERVICE = "cqrs_flow.Changes"
# The code of a subscription refused because the store behind the reader keeps no change log.
NO_CHANGE_LOG = "NO_CHANGE_LOG"
RECENT = 4096  # changes the feed keeps, for subscribers that join a little behind it
LINGER = 30.0  # seconds the feed goes on following after its last subscriber left
RECONNECT_WITHIN = 10.0  # seconds a lost follow may take to be found again
_BACKOFF = (0.1, 2.0)  # first and longest wait between attempts to follow again
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_OPS = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}

log = logging.getLogger("cqrs_flow.gateway")


@dataclass(frozen=True, slots=True)
class LiveChange:
    """One change of the log as the gateway passes it on: `op` INSERT, UPDATE or DELETE, and the
    document after it as data (proto field names, as queries answer), None after a delete; the
    document before it (`previous`) where `before_known`: an insert's is None, and a log that
    records them gives an update's and a delete's. `subject`: who asked for it ("" when no one
    is known)."""

    position: int
    entity: str
    key: str
    op: str
    document: dict[str, Any] | None
    command_id: str
    at: str
    previous: dict[str, Any] | None = None
    before_known: bool = False
    subject: str = ""


# What a subscriber makes of a change: True (it shows the document), False (it drops the key:
# deleted, or out of its filter), None (not its concern: it is not told).
Select = Callable[[LiveChange], "bool | None"]


class Subscriber:
    """One live subscription's place in the feed: what it selects of an entity's changes (all of
    one key's, with `key`), the position it has been brought to (`seen`: changes up to it are
    not its own) and the changes waiting for it, at most `room`."""

    def __init__(self, entity: str, key: str | None, select: Select, after: int, room: int) -> None:
        self.entity = entity
        self.key = key
        self.seen = after
        self.delivered = after  # the position of the last message it was given
        self._select = select
        self._room = room
        self._queue: deque[tuple[LiveChange, bool]] = deque()
        self._wake = asyncio.Event()
        self._failure: tuple[str, str, bool] | None = None  # (message, code, resume)

    def take(self, change: LiveChange) -> bool | None:
        """What it makes of `change` (see Select); None as well for a change at or before its
        position. Changes must come in the order of their positions."""
        if change.position <= self.seen:
            return None
        self.seen = change.position
        return self._select(change)

    def offer(self, change: LiveChange) -> None:
        """Queue `change` if it selects it; fail (SLOW_CONSUMER) when that would pass `room`."""
        if self._failure is not None:
            return
        matches = self.take(change)
        if matches is None:
            return
        if len(self._queue) >= self._room:
            self.fail(
                f"this subscription fell more than {self._room} changes behind "
                "(limits.live_queue): its client does not read its messages fast enough",
                "SLOW_CONSUMER",
            )
            return
        self._queue.append((change, matches))
        self._wake.set()

    def fail(self, message: str, code: str, resume: bool = True) -> None:
        """End it: its next `next` raises Refused with `message` and `code`, and with `resume`
        the position to go on from."""
        if self._failure is None:
            self._failure = (message, code, resume)
            self._queue.clear()
            self._wake.set()

    def refusal(self, message: str, code: str, resume: bool = True) -> Refused:
        """Refused with `message`, and with `resume` how to go on without missing a change."""
        if resume:
            message += f'; subscribe again with after: "{self.delivered}" to go on from there'
        return Refused(message, code)

    async def next(self) -> tuple[LiveChange, bool]:
        """The next change it selects (and whether it shows the document), in order."""
        while True:
            if self._failure is not None:
                raise self.refusal(*self._failure)
            if self._queue:
                change, matches = self._queue.popleft()
                self.delivered = change.position
                return change, matches
            self._wake.clear()
            await self._wake.wait()


class Changes(Protocol):
    """What the feed needs of cqrs_flow.Changes (ChangesClient; a stand-in in tests)."""

    def follow(self, after: int, entities: Sequence[str], wait: bool) -> AsyncIterator[Any]: ...

    async def info(self) -> Any: ...


class ChangesClient:
    """cqrs_flow.Changes on the gateway's reader, on a channel of its own: a follow is a stream
    that lasts, and queries keep their channel to themselves."""

    def __init__(
        self,
        protos: ProtoSet,
        target: str,
        credentials: Credentials,
        timeout: float = 5.0,
        security: ChannelSecurity | None = None,
    ) -> None:
        service = protos.service(CHANGES_SERVICE)
        follow, info = service.methods_by_name["Follow"], service.methods_by_name["Info"]
        self._channel = channel(target, security=security)
        self._credentials = credentials
        self._timeout = timeout
        self._follow_request: Any = protos.class_of(follow.input_type)
        self._info_request: Any = protos.class_of(info.input_type)
        self._follow = self._channel.unary_stream(
            method_path(follow),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=protos.class_of(follow.output_type).FromString,
        )
        self._info = self._channel.unary_unary(
            method_path(info),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=protos.class_of(info.output_type).FromString,
        )

    async def follow(self, after: int, entities: Sequence[str], wait: bool) -> AsyncIterator[Any]:
        """The changes after `after` of `entities`, in order (cqrs_flow.Change messages); with
        `wait`, without end. The call is cancelled when the caller stops reading."""
        request = self._follow_request(after=after, entities=list(entities), wait=wait)
        call = self._follow(request, metadata=self._credentials.metadata, wait_for_ready=False)
        try:
            async for change in call:
                yield change
        finally:
            call.cancel()

    async def info(self) -> Any:
        """The log's cqrs_flow.LogInfo (first and last positions kept)."""
        return await self._info(
            self._info_request(), metadata=self._credentials.metadata, timeout=self._timeout
        )

    async def close(self) -> None:
        await self._channel.close(grace=None)


class ChangeFeed:
    """The gateway's one follow of the change log, for the entities `followed` (see the
    module)."""

    def __init__(
        self,
        changes: Changes,
        entities: Mapping[str, EntityView],
        followed: Sequence[str],
        limits: Limits,
        *,
        recent: int = RECENT,
        linger: float = LINGER,
        reconnect_within: float = RECONNECT_WITHIN,
    ) -> None:
        self.changes = changes
        self.limits = limits
        self.head = 0  # the position the feed has brought everything to
        self.floor = 0  # the recent changes are every change after this position
        self._entities = entities
        self._followed = tuple(followed)
        self._recent: deque[LiveChange] = deque()
        self._recent_size = recent
        self._linger = linger
        self._reconnect_within = reconnect_within
        self._by_key: dict[tuple[str, str], set[Subscriber]] = {}
        self._by_entity: dict[str, set[Subscriber]] = {}
        self._served = 0  # subscriptions following (joined, or catching up)
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.TimerHandle | None = None
        self._converters: dict[str, Callable[[Any], dict[str, Any]]] = {}

    @property
    def subscribers(self) -> int:
        return self._served

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def follow(self, subscriber: Subscriber) -> AsyncIterator[tuple[LiveChange, bool]]:
        """Every change `subscriber` selects after its position, in order, with whether it
        shows the document; without end, unless it fails (Refused, with where to resume)."""
        self.admit()
        self._served += 1
        joined = False
        try:
            while True:
                self._start(subscriber.seen)
                if subscriber.seen >= self.floor:
                    break
                async for change, matches in self._catch_up(subscriber):
                    subscriber.delivered = change.position
                    yield change, matches
            self._join(subscriber)
            joined = True
            while True:
                yield await subscriber.next()
        finally:
            if joined:
                self._leave(subscriber)
            self._served -= 1
            if self._served == 0 and self.running:
                self._stop_later()

    def admit(self) -> None:
        """Refused (BUSY) when the gateway serves as many live subscriptions as it may."""
        if self._served >= self.limits.live_subscriptions:
            raise Refused(
                f"the gateway serves {self._served} live subscriptions, its most "
                "(limits.live_subscriptions); try again later",
                "BUSY",
                status=503,
                retry_after=1.0,
            )

    async def close(self) -> None:
        """Stop following; subscriptions still there end with an error."""
        self._fail_all("the gateway is stopping", "UNAVAILABLE")
        await self._stop()

    # -- the one follow

    def _start(self, after: int) -> None:
        """Follow from `after` unless the feed is following already."""
        if self._stopping is not None:
            self._stopping.cancel()
            self._stopping = None
        if self.running:
            return
        self.head = self.floor = after
        self._recent.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="change feed")

    def _stop_later(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().call_later(
                self._linger, lambda: asyncio.ensure_future(self._stop_if_unused())
            )

    async def _stop_if_unused(self) -> None:
        self._stopping = None
        if self._served == 0:
            await self._stop()

    async def _stop(self) -> None:
        if self._stopping is not None:
            self._stopping.cancel()
            self._stopping = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._recent.clear()

    async def _run(self) -> None:
        """Follow the log for as long as the feed runs; a failure of its own (a bug) ends the
        subscriptions with an internal error instead of leaving them waiting."""
        try:
            await self._follow()
        except Exception:
            log.exception("the change feed failed")
            self._fail_all("the gateway's change feed failed (details are in its log)", "INTERNAL")

    async def _follow(self) -> None:
        """Follow the log from `head`, live; again after a lost stream (see the module)."""
        loop = asyncio.get_running_loop()
        delay, lost_since, again = _BACKOFF[0], None, False
        while True:
            try:
                if again and (info := await self.changes.info()).last < self.head:
                    self._fail_all(
                        f"the change log restarted: its last position is {info.last}, and this "
                        f"gateway had followed it to {self.head} (a store that lost its data?); "
                        "subscribe again without after for the current state",
                        "UNAVAILABLE",
                        resume=False,
                    )
                    return
                again = True
                async for message in self.changes.follow(self.head, self._followed, wait=True):
                    delay, lost_since = _BACKOFF[0], None
                    change = self._decode(message)
                    if change is not None:
                        self._publish(change)
                        # Let the subscribers take it before the next: a burst of changes read
                        # from the stream's buffer would otherwise fill their queues at once.
                        await asyncio.sleep(0)
                # A follow that ends: the reader or the store is stopping; follow again.
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _TRANSIENT:
                    self._fail_all(*failure_of(exc))
                    return
                log.warning("following the change log: %s %s", exc.code().name, exc.details())
            now = loop.time()
            lost_since = now if lost_since is None else lost_since
            if now - lost_since >= self._reconnect_within:
                self._fail_all(
                    "the change log cannot be followed: the reader is unavailable", "UNAVAILABLE"
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF[1])

    def _publish(self, change: LiveChange) -> None:
        """Keep `change` among the recent ones and offer it to the subscribers it concerns."""
        if change.position <= self.head:
            return  # already had (a follow resumed after a position it had passed)
        self.head = change.position
        self._recent.append(change)
        if len(self._recent) > self._recent_size:
            self.floor = self._recent.popleft().position
        for subscriber in tuple(self._by_key.get((change.entity, change.key), ())):
            subscriber.offer(change)
        for subscriber in tuple(self._by_entity.get(change.entity, ())):
            subscriber.offer(change)

    def _fail_all(self, message: str, code: str, resume: bool = True) -> None:
        """End every subscription that has joined (those catching up fail on their own)."""
        every = {s for group in (*self._by_key.values(), *self._by_entity.values()) for s in group}
        for subscriber in every:
            subscriber.fail(message, code, resume)

    # -- subscribers

    def _join(self, subscriber: Subscriber) -> None:
        """Add `subscriber` with the recent changes after its position queued (in one step: no
        change can come in between)."""
        for change in self._recent:
            if change.position > subscriber.seen and change.entity == subscriber.entity:
                subscriber.offer(change)
        if subscriber.key is not None:
            self._by_key.setdefault((subscriber.entity, subscriber.key), set()).add(subscriber)
        else:
            self._by_entity.setdefault(subscriber.entity, set()).add(subscriber)

    def _leave(self, subscriber: Subscriber) -> None:
        if subscriber.key is not None:
            by_key = self._by_key.get((subscriber.entity, subscriber.key), set())
            by_key.discard(subscriber)
            if not by_key:
                self._by_key.pop((subscriber.entity, subscriber.key), None)
        else:
            by_entity = self._by_entity.get(subscriber.entity, set())
            by_entity.discard(subscriber)
            if not by_entity:
                self._by_entity.pop(subscriber.entity, None)

    async def _catch_up(self, subscriber: Subscriber) -> AsyncIterator[tuple[LiveChange, bool]]:
        """The changes `subscriber` selects from its position to where the log ended when
        asked, read with a Follow of its own that ends there."""
        try:
            info = await self.changes.info()
            async for message in self.changes.follow(subscriber.seen, (subscriber.entity,), False):
                change = self._decode(message)
                if change is None:
                    continue
                matches = subscriber.take(change)
                if matches is not None:
                    yield change, matches
        except grpc.aio.AioRpcError as exc:
            raise subscriber.refusal(*failure_of(exc)) from None
        # Every change of its entity up to the log's end then has been read: it is there too.
        subscriber.seen = max(subscriber.seen, info.last)

    def _decode(self, message: Any) -> LiveChange | None:
        """A cqrs_flow.Change as the gateway passes it on; None for an entity it does not show,
        or a document that does not decode as its entity's message (logged)."""
        view = self._entities.get(message.entity)
        if view is None:
            return None
        op = _OPS.get(message.op, "UPDATE" if message.document else "DELETE")
        # What the document was before: a log that records it (Change.previous, field 9) says so
        # for updates and deletes; an insert had none.
        previous_bytes = getattr(message, "previous", b"")
        try:
            document = self._data(view, message.document) if op != "DELETE" else None
            previous = self._data(view, previous_bytes) if previous_bytes else None
        except DecodeError:
            log.error(
                "change %d of %s %s: a document that is not a %s; left out",
                message.position,
                view.name,
                message.key,
                view.document.DESCRIPTOR.full_name,
            )
            return None
        return LiveChange(
            message.position,
            view.name,
            message.key,
            op,
            document,
            message.command_id,
            message.at,
            previous,
            op == "INSERT" or bool(previous_bytes),
            message.subject,
        )

    def _data(self, view: EntityView, document: bytes) -> dict[str, Any]:
        convert = self._converters.get(view.name)
        if convert is None:
            descriptor = cast(Descriptor, view.document.DESCRIPTOR)
            convert = self._converters[view.name] = data_converter(descriptor)
        return convert(view.document.FromString(document))


def failure_of(exc: grpc.aio.AioRpcError) -> tuple[str, str, bool]:
    """What a failed call of the change log tells a subscriber: (message, code, whether it may
    resume after the last position it had)."""
    code = exc.code()
    # A reader that does not serve the service at all refuses it as one the topology does not
    # wire (PERMISSION_DENIED), like any service it does not serve to this caller.
    if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED):
        log.error("the reader does not serve cqrs_flow.Changes: %s %s", code.name, exc.details())
        return (
            "the store behind this gateway keeps no change log it may follow (its reader does "
            "not serve cqrs_flow.Changes to it), so live subscriptions cannot be served",
            NO_CHANGE_LOG,
            False,
        )
    if code == grpc.StatusCode.OUT_OF_RANGE:  # retention dropped the position: the store says
        return (
            f"{exc.details() or 'that position is no longer kept'}; subscribe again without "
            "after for the current state",
            "OUT_OF_RANGE",
            False,
        )
    if code in _TRANSIENT:
        return ("the change log cannot be followed: the reader is unavailable", "UNAVAILABLE", True)
    log.error("following the change log: %s %s", code.name, exc.details())
    return (f"the change log cannot be followed ({code.name.lower()})", "UNAVAILABLE", True)
