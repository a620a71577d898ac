"""The read models a store holds for projections, and the service projections write them with
(cqrs_flow.Projections, on the store's write side; projections.proto).

Each projection writes one entity of the store. Its writes come in batches, each with the last
change position it accounts for, applied together with that position in one atomic step
(ChangeLog.apply): a batch sent again after a crash or a lost answer is recognised by its
position and changes nothing. A replay builds the next generation of the read model in a
collection of its own while queries still read the live one, then switches: the entity's
backend becomes the new generation's (`backends`, which the document service reads, and
`collections`, which the change log service reads), and the old collection is dropped.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from cqrs_flow.protobuf.conversions import data_converter, from_document
from cqrs_flow.protobuf.messages import descriptor_of
from cqrs_flow.stores.base import Document, DocumentStore, Find
from cqrs_flow.stores.changes import Collections
from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.log import (
    ChangeLog,
    ProjectionState,
    SetAside,
    Superseded,
    Write,
    generation_collection,
)
from cqrs_flow.stores.operations import InvalidRequest, rfc3339_now

__all__ = ["ReadModel", "ReadModels"]

log = logging.getLogger("cqrs_flow.store")


@dataclass(frozen=True)
class ReadModel:
    """What the store knows of a projection's read model: its entity and how its documents are
    kept (collection, indexes, timestamp field)."""

    entity: str
    collection: str
    indexes: Indexes
    timestamp: str | None
    document_class: type[Message]


class ReadModels:
    """The read models of the projections writing into one store node (projection -> its
    ReadModel); `backends` and `collections` are the node's, kept pointing at each read model's
    live generation."""

    def __init__(
        self,
        change_log: ChangeLog,
        models: dict[str, ReadModel],
        backends: MutableMapping[str, DocumentStore],
        collections: Collections,
    ) -> None:
        self.log = change_log
        self.models = models
        self.backends = backends
        self.collections = collections
        self._building: dict[str, tuple[int, DocumentStore]] = {}  # a replay's generation
        self.opened: builtins.list[DocumentStore] = []  # backends opened here: closed by the node
        self._converters: dict[str, Callable[[Message], Document]] = {}  # entity -> made once

    async def open(self) -> None:
        """Point each read model at its live generation (the first one unless a replay switched)."""
        for name, model in self.models.items():
            state = await self.log.state(name)
            if state.live:
                self._make_live(model, await self._collection(model, state.live))
                log.info(
                    "projection %s: its read model %s is generation %d (%s)",
                    name,
                    model.entity,
                    state.live,
                    generation_collection(model.collection, state.live),
                )

    async def _collection(self, model: ReadModel, generation: int) -> DocumentStore:
        store = await self.log.collection(
            generation_collection(model.collection, generation), model.indexes, model.timestamp
        )
        self.opened.append(store)
        return store

    def _make_live(self, model: ReadModel, store: DocumentStore) -> DocumentStore:
        old = self.backends[model.entity]
        self.backends[model.entity] = store
        self.collections.move(model.entity, _name(store))
        return old

    def _model(self, projection: str) -> ReadModel:
        model = self.models.get(projection)
        if model is None:  # a caller the topology wires here always has one
            raise InvalidRequest(f"'{projection}' writes no read model into this store")
        return model

    def _store(self, projection: str, generation: int, live: int) -> DocumentStore:
        model = self._model(projection)
        if generation == live:
            return self.backends[model.entity]
        building = self._building.get(projection)
        if building is not None and building[0] == generation:
            return building[1]
        raise Superseded(
            f"generation {generation} of the read model of {projection} is neither the live one "
            f"({live}) nor one a replay builds"
        )

    # -- the service -------------------------------------------------------------------------------

    async def state(self, projection: str, generation: int | None, answer: Any) -> Any:
        """Fill a ProjectionState message."""
        self._model(projection)
        state = await self.log.state(projection)
        return _state(answer, state, state.live if generation is None else generation)

    async def read(
        self, projection: str, generation: int, keys: builtins.list[str], answer: Any
    ) -> Any:
        """Fill a ReadResponse with the documents found under `keys`, in their order."""
        model = self._model(projection)
        store = self._store(projection, generation, (await self.log.state(projection)).live)
        found = (await store.find(Find(keys=tuple(dict.fromkeys(keys))))).documents  # one read
        for document in found:
            answer.documents.add(
                key=document[model.indexes.key],
                document=from_document(document, model.document_class).SerializeToString(),
            )
        return answer

    async def apply(self, projection: str, request: Any, answer: Any) -> Any:
        """Carry out an ApplyRequest; fill an ApplyResponse. Superseded for a generation that is
        no longer live nor being built."""
        model = self._model(projection)
        state = await self.log.state(projection)
        store = self._store(projection, request.generation, state.live)
        stamp = {model.timestamp: rfc3339_now()} if model.timestamp else {}
        writes = []
        for write in request.writes:
            if not write.key:
                raise InvalidRequest("a read model's write needs its key")
            writes.append(
                Write(
                    write.key, None if write.deleted else self._decode(model, write.document, stamp)
                )
            )
        aside = [
            SetAside(s.position, s.entity, s.key, s.op, s.command_id or None, s.error)
            for s in request.set_aside
        ]
        answer.applied = await self.log.apply(
            projection, request.generation, request.position, store, writes, aside
        )
        _state(answer.state, await self.log.state(projection), request.generation)
        return answer

    def _decode(self, model: ReadModel, data: bytes, stamp: Document) -> Document:
        try:
            message = model.document_class.FromString(data)
        except Exception:  # DecodeError, and whatever a malformed message makes protobuf raise
            name = model.document_class.DESCRIPTOR.full_name
            raise InvalidRequest(f"a write of {model.entity} is not a valid {name}") from None
        convert = self._converters.get(model.entity)
        if convert is None:
            convert = self._converters[model.entity] = data_converter(
                descriptor_of(model.document_class)
            )
        return {**convert(message), **stamp}

    async def begin(self, projection: str, answer: Any) -> Any:
        """A replay starts: a new, empty generation beside the live one."""
        model = self._model(projection)
        generation = await self.log.begin(projection)
        store = await self._collection(model, generation)
        await self.log.drop(store)  # what a replay that did not finish left there
        self.opened.remove(store)
        store = await self._collection(model, generation)
        self._building[projection] = (generation, store)
        log.info(
            "projection %s: replay into generation %d (%s) begun",
            projection,
            generation,
            generation_collection(model.collection, generation),
        )
        return _state(answer, await self.log.state(projection), generation)

    async def switch(self, projection: str, generation: int, answer: Any) -> Any:
        """The replayed generation becomes the live one; the one before is dropped."""
        model = self._model(projection)
        building = self._building.get(projection)
        if building is None or building[0] != generation:
            raise Superseded(f"no replay of {projection} builds generation {generation}")
        await self.log.switch(projection, generation)
        old = self._make_live(model, building[1])
        del self._building[projection]
        await self.log.drop(old)
        state = await self.log.state(projection)
        log.info(
            "projection %s: generation %d (%s) is live, at position %d; the one before it was "
            "dropped",
            projection,
            generation,
            generation_collection(model.collection, generation),
            state.position(generation),
        )
        return _state(answer, state, generation)


def _name(store: DocumentStore) -> str:
    """A backend's collection name (each backend names it its own way)."""
    for attribute in ("collection", "name"):
        value = getattr(store, attribute, None)
        if isinstance(value, str):
            return value
    raise TypeError(f"{type(store).__name__} does not say its collection's name")


def _state(answer: Any, state: ProjectionState, generation: int) -> Any:
    answer.live = state.live
    answer.generation = generation
    answer.position = state.position(generation)
    answer.set_aside = state.set_aside
    return answer
