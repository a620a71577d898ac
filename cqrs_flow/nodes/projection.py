"""The projection: follows a change log (a reader's, or a store's read side) and builds a read
model, an entity of a store, with its plugin's handlers.

Each batch of changes becomes one call of the store's Projections service: the batch's writes
and the position of its last change, applied by the store in one atomic step. The position the
read model has reached is therefore the store's to say, not the projection's: at start, after a
restart or a kill at any point, the projection asks the store where the read model stands and
follows the log from there, so that no change is lost or applied twice. A handler that raises
stops the projection at that change, naming it (or, with `on_error: set_aside`, the change is
set aside in the store, with the error, in the same atomic step as the batch it was in).

`Runner` is what follows and writes; the node runs one for ever on the live generation of the
read model, and `cqrs-flow replay` (`replay` below) one from position 0 into a new generation,
switching to it once caught up. Why and how: docs/ARCHITECTURE.md, "Projections".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.contracts.projection import ProjectionPlan, projection_plan
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.plugins import (
    Event,
    PluginContext,
    ProjectionPlugin,
    ReadModel,
    start_plugins,
    stop_plugins,
)
from cqrs_flow.protobuf.compiler import CHANGES_SERVICE, PROJECTIONS_SERVICE, ProtoSet
from cqrs_flow.protobuf.conversions import data_converter, from_document
from cqrs_flow.protobuf.messages import descriptor_of
from cqrs_flow.security.tokens import Credentials
from cqrs_flow.topology.model import ProjectionNode, ReaderNode, StoreNode, Topology
from cqrs_flow.transport.rpc import MAX_MESSAGE_BYTES, ServiceClient
from cqrs_flow.transport.tls import channel_security

__all__ = [
    "HandlerFailed",
    "ProjectionService",
    "Runner",
    "Switched",
    "changes_client",
    "clients",
    "replay",
    "target_client",
]

CACHE_MOST = 200_000  # read model documents kept in memory between batches
READ_MOST = 100  # documents asked for in one Read call
APPLY_BYTES = MAX_MESSAGE_BYTES * 9 // 10  # a larger Apply is split (gRPC refuses > 4 MiB)
PASSES = 10  # most passes over a batch whose handlers ask for documents not read yet
RETRY_MOST = 1.0  # longest wait between two tries of a store or a source that is away: one
# back is used within a second (docs/RELIABILITY.md: recovery within 5 s of any fault)
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class HandlerFailed(Exception):
    """A handler raised on a change: the projection stops there (on_error: stop)."""

    def __init__(self, projection: str, handler: str, event: Event, error: BaseException) -> None:
        super().__init__(
            f"projection {projection} stopped at {event}: {handler} raised "
            f"{type(error).__name__}: {error}. The read model stands at the change before; fix "
            f"the handler and restart the node, or set on_error: set_aside to set such changes "
            f"aside"
        )
        self.event, self.error = event, error


class Switched(Exception):
    """The store refused a batch for a generation that is no longer live (a replay switched)."""


class OutOfRange(Exception):
    """The log no longer holds (or never held) the position the read model stands at."""


class _TooLarge(Exception):
    """The writes of a batch take more than one call carries."""


@dataclass
class Clients:
    """The projection's two links: the change log it follows and the store it writes to."""

    changes: ServiceClient
    target: ServiceClient


def changes_client(
    topology: Topology, node: ProjectionNode, protos: ProtoSet, credentials: Credentials
) -> ServiceClient:
    """A client of the followed node's change log (a reader's, or a store's read side)."""
    followed = topology.nodes[node.follows]
    if isinstance(followed, ReaderNode):
        address, tls = followed.listen, followed.tls
    else:
        assert isinstance(followed, StoreNode), "checked when the topology loaded"
        address, tls = followed.read.listen, followed.read.tls
    return ServiceClient(
        protos,
        protos.service(CHANGES_SERVICE),
        address.target,
        credentials,
        security=channel_security(topology, tls, node.client_tls),
    )


def target_client(
    topology: Topology, node: ProjectionNode, protos: ProtoSet, credentials: Credentials
) -> ServiceClient:
    """A client of the Projections service of the store that holds the read model."""
    store = topology.store_of(node.store)
    return ServiceClient(
        protos,
        protos.service(PROJECTIONS_SERVICE),
        store.write.listen.target,
        credentials,
        timeout=30.0,
        security=channel_security(topology, store.write.tls, node.client_tls),
    )


async def clients(
    topology: Topology,
    node: ProjectionNode,
    protos: ProtoSet,
    credentials: Credentials,
    resources: AsyncExitStack,
) -> Clients:
    """Both clients, each closed by `resources` (registered as soon as it is made)."""
    changes = changes_client(topology, node, protos, credentials)
    resources.push_async_callback(changes.close)
    target = target_client(topology, node, protos, credentials)
    resources.push_async_callback(target.close)
    return Clients(changes, target)


class _Batch(ReadModel):
    """The read model as the handlers see it: the store's documents (read once, then kept),
    with the writes of the batch on top, and those of the change being handled on top of
    those (dropped if its handler raises).

    A document not known yet is not read at once: `get` notes its key in `missing` and answers
    None, and the batch is handled again once every key missing is read, in one call (see
    Runner._write): a call per batch instead of a call per change."""

    def __init__(self) -> None:
        self.known: dict[str, dict[str, Any] | None] = {}  # as the store holds them
        self.complete = False  # `known` is the whole read model (a replay's new generation)
        self.pending: dict[str, dict[str, Any] | None] = {}  # the batch's writes
        self.missing: set[str] = set()  # keys asked for that `known` lacks
        self._event: dict[str, dict[str, Any] | None] = {}  # the change's writes

    async def get(self, key: str) -> dict[str, Any] | None:
        for layer in (self._event, self.pending, self.known):
            if key in layer:
                found = layer[key]
                return None if found is None else _copy(found)
        if not self.complete:
            self.missing.add(key)
        return None

    def put(self, key: str, document: dict[str, Any]) -> None:
        if not isinstance(document, dict):
            raise TypeError(f"a read model's document is a dict, not {type(document).__name__}")
        self._event[key] = _copy(document)

    def delete(self, key: str) -> None:
        self._event[key] = None

    def keep_event(self) -> None:
        self.pending.update(self._event)
        self._event.clear()

    def drop_event(self) -> None:
        self._event.clear()

    def again(self, found: dict[str, dict[str, Any] | None]) -> None:
        """The batch is handled again, with the documents that were missing."""
        self.known.update(found)
        self.pending.clear()
        self.missing.clear()
        self._event.clear()

    def written(self) -> None:
        """The batch is in the store."""
        if len(self.known) + len(self.pending) > CACHE_MOST:
            self.known.clear()
            self.complete = False
        self.known.update(self.pending)
        self.pending.clear()


def _request(client: ServiceClient, rpc: str, **fields: Any) -> Any:
    """A request of `rpc` (its class is made from the descriptors at run time)."""
    return client.request_class(rpc)(**fields)


def _copy(document: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _copy(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
        for k, v in document.items()
    }


class Runner:
    """Follows the log from a position and writes the read model's generation, batch by batch."""

    def __init__(
        self,
        topology: Topology,
        node: ProjectionNode,
        plan: ProjectionPlan,
        plugin: ProjectionPlugin,
        links: Clients,
        protos: ProtoSet,
        log: logging.Logger,
    ) -> None:
        self.topology, self.node, self.plan = topology, node, plan
        self.plugin, self.links, self.protos, self.log = plugin, links, protos, log
        self.follows = list(plan.follows or ())
        self._decoders: dict[str, tuple[type[Message], Callable[[Message], dict[str, Any]]]] = {}
        self._target = protos.message_class(plan.entity.document)
        self.model = _Batch()
        self.generation = 0
        self.handled = 0  # changes handled since the runner was made

    def reset(self, generation: int, fresh: bool = False) -> None:
        """Forget what is known of the read model: it is `generation` now (`fresh`: new and
        empty, so nothing needs reading from the store)."""
        self.generation = generation
        self.model = _Batch()
        self.model.complete = fresh

    async def _fetch(self, keys: set[str]) -> dict[str, dict[str, Any] | None]:
        """The read model's documents under `keys` (None for those it lacks), READ_MOST a call."""
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(keys)
        ordered = sorted(keys)
        for start in range(0, len(ordered), READ_MOST):
            chunk = ordered[start : start + READ_MOST]
            request = _request(self.links.target, "Read", generation=self.generation, keys=chunk)
            answer: Any = await self._call("Read", request)
            for document in answer.documents:
                found[document.key] = self._decode(self.plan.entity.name, document.document)
        return found

    def _decode(self, entity: str, data: bytes) -> dict[str, Any]:
        decoder = self._decoders.get(entity)
        if decoder is None:
            cls = self.protos.message_class(self.topology.entities[entity].document)
            decoder = self._decoders[entity] = (cls, data_converter(descriptor_of(cls)))
        cls, convert = decoder
        return convert(cls.FromString(data))

    def event(self, change: Any) -> Event:
        return Event(
            position=change.position,
            entity=change.entity,
            key=change.key,
            op=change.op,
            document=self._decode(change.entity, change.document)
            if change.op != "delete"
            else None,
            previous=self._decode(change.entity, change.previous)
            if change.op != "insert"
            else None,
            command_id=change.command_id,
            at=change.at,
            subject=change.subject,
        )

    async def _call(self, rpc: str, request: Message) -> Message:
        """A call of the store's Projections service; one that cannot be made now is tried again
        (an Apply sent twice is recognised by its position), ABORTED is Switched."""
        delay = 0.1
        while True:
            try:
                return await self.links.target.call(rpc, request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.ABORTED:
                    raise Switched(exc.details() or "") from None
                if exc.code() not in _TRANSIENT:
                    raise
                self.log.warning(
                    "the store %s: %s; trying again", self.links.target.target, exc.details()
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)

    async def run(self, after: int, wait: bool) -> int:
        """Follow the log from `after`, writing each batch with its last position, until the
        log ends (without `wait`: the end as it is now) or the follow is broken off; return
        the position written last. Raises HandlerFailed, Switched, OutOfRange, and the source's
        errors."""
        request = _request(
            self.links.changes, "Follow", after=after, entities=self.follows, wait=wait
        )
        call = self.links.changes.stream("FollowBatches", request)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.node.batch * 4)
        done = object()

        async def receive() -> None:
            try:
                async for batch in call:
                    for change in batch.changes:
                        await queue.put(change)
            except grpc.aio.AioRpcError as exc:
                await queue.put(exc)
                return
            await queue.put(done)

        receiving = asyncio.get_running_loop().create_task(receive())
        position = after
        try:
            while True:
                item = await queue.get()
                batch = []
                while True:
                    if item is done or isinstance(item, grpc.aio.AioRpcError):
                        break
                    batch.append(item)
                    # Following live, what has come is written at once (each batch is a
                    # commit the next change waits for); catching up to the end of the log
                    # (a replay), batches are filled: fewer, larger commits.
                    if len(batch) >= self.node.batch or (wait and queue.empty()):
                        item = None
                        break
                    item = await queue.get() if queue.empty() else queue.get_nowait()
                if batch:
                    position = await self._write(batch, position)
                if item is done:
                    return position
                if isinstance(item, grpc.aio.AioRpcError):
                    if item.code() == grpc.StatusCode.OUT_OF_RANGE:
                        raise OutOfRange(item.details() or "")
                    raise item
        finally:
            receiving.cancel()
            call.cancel()
            await asyncio.gather(receiving, return_exceptions=True)

    async def _write(self, batch: list[Any], position: int) -> int:
        """Handle a batch of changes and write it; the position it brings the read model to.

        The batch is handled again for as long as its handlers ask for documents not read yet
        (each time, all of those in one call): handlers act on `model` only, so running them
        again over the same changes is safe, and what counts is the pass that read nothing
        new."""
        events = [self.event(change) for change in batch]
        try:
            for _ in range(PASSES):
                handled = await self._handle(events, position)
                if handled is not None:
                    return handled
                self.model.again(await self._fetch(self.model.missing))
        except _TooLarge as exc:
            if len(batch) == 1:
                raise RuntimeError(
                    f"projection {self.node.name}: the writes of {events[0]} take {exc} bytes, "
                    f"more than one call to the store carries ({MAX_MESSAGE_BYTES:,})"
                ) from None
            self.model.again({})  # in two halves, each with its own position
            middle = len(batch) // 2
            return await self._write(batch[middle:], await self._write(batch[:middle], position))
        raise RuntimeError(f"the handlers of {self.node.name} kept asking for new documents")

    async def _handle(self, events: list[Event], position: int) -> int | None:
        """One pass over the batch: its position, written; None if a document was missing."""
        aside, failures = [], []
        handled = position
        for event in events:
            try:
                await self.plugin.handle(event, self.model)
            except Exception as exc:  # the handler's: whatever it raises
                self.model.drop_event()
                if self.model.missing:  # perhaps for want of a document: not a verdict yet
                    return None
                failure = HandlerFailed(self.node.name, self._handler_of(event), event, exc)
                if self.node.on_error != "set_aside":
                    if handled > position:  # what the changes before it did is kept
                        await self._apply(handled, [])
                    raise failure from exc
                failures.append(failure)
                aside.append(
                    _request(self.links.target, "Apply").set_aside.add(
                        position=event.position,
                        entity=event.entity,
                        key=event.key,
                        op=event.op,
                        command_id=event.command_id,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
            else:
                self.model.keep_event()
            handled = event.position
        if self.model.missing:
            return None
        await self._apply(handled, aside)
        for failure in failures:
            self.log.warning("%s (set aside)", failure)
        self.handled += len(events)
        return handled

    def _handler_of(self, event: Event) -> str:
        handlers = self.plugin.handlers()
        name = handlers.get((event.entity, event.op)) or handlers.get((event.entity, None))
        return f"{type(self.plugin).__name__}.{name}"

    async def _apply(self, position: int, aside: list[Message]) -> None:
        request: Any = _request(
            self.links.target, "Apply", generation=self.generation, position=position
        )
        for key, document in self.model.pending.items():
            write = request.writes.add(key=key)
            if document is None:
                write.deleted = True
            else:
                write.document = from_document(document, self._target).SerializeToString()
        for item in aside:
            request.set_aside.add().CopyFrom(item)
        if request.ByteSize() > APPLY_BYTES:
            raise _TooLarge(request.ByteSize())
        await self._call("Apply", request)
        self.model.written()


class ProjectionService(NodeService):
    node: ProjectionNode

    async def setup(self) -> None:
        plan = self.contract(projection_plan)
        self.links = await clients(
            self.topology, self.node, self.protos, self.credentials, self.resources
        )
        context = PluginContext(self.topology, self.node, self.protos, self.log)
        started = await start_plugins(self.node, context)
        self.resources.push_async_callback(stop_plugins, started, self.log)
        plugin = started[0]
        assert isinstance(plugin, ProjectionPlugin), "the loader checks the kind"
        self.runner = Runner(
            self.topology, self.node, plan, plugin, self.links, self.protos, self.log
        )
        state = await self._state()
        self.log.info(
            "projection %s: %s into %s (generation %d) from position %d, following %s of %s",
            self.node.name,
            plugin.name,
            plan.entity.name,
            state.live,
            state.position,
            ", ".join(self.runner.follows),
            self.node.follows,
        )
        self.spawn(self._run(), f"projection {self.node.name}")

    async def _state(self) -> Any:
        request = _request(self.links.target, "State")
        return await self.runner._call("State", request)

    async def _run(self) -> None:
        """Follow the live generation for ever; after a replay's switch, the new one."""
        delay = 0.1
        while True:
            state = await self._state()
            self.runner.reset(state.live)
            try:
                await self.runner.run(state.position, wait=True)
                delay = 0.1  # the follow ended (the source is stopping): start again
            except Switched:
                self.log.info(
                    "projection %s: its read model was switched to another generation (a "
                    "replay); going on from where that one stands",
                    self.node.name,
                )
                continue
            except (HandlerFailed, OutOfRange) as exc:
                self.log.error("%s", exc)
                await asyncio.Event().wait()  # stopped: a restart of the node tries again
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _TRANSIENT:
                    raise
                self.log.warning(
                    "the change log of %s: %s; following again", self.node.follows, exc.details()
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)


@dataclass
class Replayed:
    """What a replay did."""

    generation: int
    position: int
    changes: int
    seconds: float


async def replay(
    topology: Topology,
    node: ProjectionNode,
    protos: ProtoSet,
    credentials: Credentials,
    say: Callable[[str], None],
    plan: ProjectionPlan,
    log: logging.Logger,
) -> Replayed:
    """Rebuild a projection's read model from position 0 into a new generation, the live one
    answering queries meanwhile, and switch to it once caught up (the running projection then
    goes on from there). Runs in the calling process with the projection's credentials."""
    async with AsyncExitStack() as resources:
        links = await clients(topology, node, protos, credentials, resources)
        context = PluginContext(topology, node, protos, log)
        started = await start_plugins(node, context)
        resources.push_async_callback(stop_plugins, started, log)
        return await _replay(topology, node, protos, say, plan, log, links, started)


async def _replay(
    topology: Topology,
    node: ProjectionNode,
    protos: ProtoSet,
    say: Callable[[str], None],
    plan: ProjectionPlan,
    log: logging.Logger,
    links: Clients,
    started: list[Any],
) -> Replayed:
    """The replay itself, with its links and the projection's plugin started."""
    plugin = started[0]
    assert isinstance(plugin, ProjectionPlugin), "the loader checks the kind"
    runner = Runner(topology, node, plan, plugin, links, protos, log)
    began = time.monotonic()
    state: Any = await runner._call("Begin", _request(links.target, "Begin"))
    runner.reset(state.generation, fresh=True)
    say(
        f"replaying {node.name} into generation {state.generation} of {plan.entity.name}; "
        "the live one answers queries meanwhile"
    )
    position = 0
    while True:  # to the end of the log, again until what came meanwhile is little
        info: Any = await links.changes.call("Info", _request(links.changes, "Info"))
        before, position = position, await runner.run(position, wait=False)
        say(f"  at position {position:,} of {info.last:,} ({runner.handled:,} changes)")
        if position == before or info.last - position <= node.batch:
            break  # the live projection goes on from there
    await runner._call("Switch", _request(links.target, "Switch", generation=state.generation))
    return Replayed(state.generation, position, runner.handled, time.monotonic() - began)
