"""Batched reads of the document service for one GraphQL request (the DataLoader pattern).

Resolvers of one request ask for pages (`page`) and for documents by key (`lookup`) one at a
time; a Finder holds what they ask during a turn of the event loop and sends it all in one
cqrs_flow.Documents/Find call to the reader. Every lookup of an entity in the batch becomes one
query with all their keys. Resolving a relation for N parents thus costs one call per relation
level of the query, not N: the resolvers of one level run side by side (tartiflette gathers
them) and all ask before the batch goes.

`rows` are the caller's row rules (auth.py): entity -> (field, value) conditions added to every
query about that entity the Finder sends (pages, lookups, relations, exists), so the store
answers only the documents the caller may see, and pages and counts stay right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import grpc
from google.protobuf.descriptor import Descriptor

from cqrs_flow.contracts.documents import EntityView
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.transport.rpc import ServiceClient

__all__ = ["Finder", "add_condition"]

# Turns of the event loop with nothing new asked after which the batch goes: the resolvers of
# one level start over a few turns (each list item is a task of its own).
_QUIET_TURNS = 2


class Finder:
    """One per request: batches its document service reads (see the module)."""

    def __init__(
        self,
        documents: ServiceClient,
        entities: dict[str, EntityView],
        refusal: Callable[[grpc.aio.AioRpcError], Exception],
        rows: Mapping[str, Sequence[tuple[str, Any]]] | None = None,
    ) -> None:
        self._documents = documents
        self._rows = rows or {}
        self._entities = entities
        self._refusal = refusal
        self._request_class: Any = documents.request_class("Find")  # made from the protos
        self._pages: list[tuple[Any, asyncio.Future[Any]]] = []
        self._lookups: dict[str, dict[str, asyncio.Future[dict[str, Any] | None]]] = {}
        self._asked = 0
        self._batch: asyncio.Task[None] | None = None
        self._converters: dict[str, Callable[[Any], dict[str, Any]]] = {}
        self.calls = 0  # Find calls made

    def new_query(self, entity: str) -> Any:
        """An empty cqrs_flow.Query about `entity`, to fill and hand to `page`."""
        query = self._request_class().queries.add()
        query.entity = entity
        return query

    async def page(self, query: Any) -> Any:
        """The cqrs_flow.Page answering `query`."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pages.append((query, future))
        self._asked += 1
        self._schedule()
        return await future

    async def lookup(self, entity: str, key: str) -> dict[str, Any] | None:
        """The document of `entity` with `key`, as data; None if there is none."""
        waiting = self._lookups.setdefault(entity, {})
        future = waiting.get(key)
        if future is None:
            future = waiting[key] = asyncio.get_running_loop().create_future()
            self._asked += 1
            self._schedule()
        return await future

    def data(self, entity: str, document: bytes) -> dict[str, Any]:
        """A document as the gateway answers with it (proto field names)."""
        view = self._entities[entity]
        convert = self._converters.get(entity)
        if convert is None:
            descriptor = cast(Descriptor, view.document.DESCRIPTOR)
            convert = self._converters[entity] = data_converter(descriptor)
        return convert(view.document.FromString(document))

    def _schedule(self) -> None:
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        quiet, seen = 0, -1
        while quiet < _QUIET_TURNS:
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._asked == seen else 0
            seen = self._asked
        pages, self._pages = self._pages, []
        lookups, self._lookups = self._lookups, {}
        self._batch = None
        request = self._request_class()
        for query, _ in pages:
            request.queries.append(query)
        for entity, waiting in lookups.items():
            query = request.queries.add()
            query.entity = entity
            query.keys.extend(waiting)
        for query in request.queries:
            for field_name, value in self._rows.get(query.entity, ()):
                add_condition(query, field_name, "eq", [value])
        futures = [f for _, f in pages]
        try:
            self.calls += 1
            response: Any = await self._documents.call("Find", request)
        except grpc.aio.AioRpcError as exc:
            error = self._refusal(exc)
            for future in [*futures, *(f for w in lookups.values() for f in w.values())]:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException as exc:  # cancelled with the request: let the waiters go
            for future in [*futures, *(f for w in lookups.values() for f in w.values())]:
                if not future.done():
                    future.set_exception(
                        asyncio.CancelledError() if isinstance(exc, asyncio.CancelledError) else exc
                    )
            raise
        for future, page in zip(futures, response.pages, strict=False):
            if not future.done():
                future.set_result(page)
        for (entity, waiting), page in zip(
            lookups.items(), list(response.pages)[len(futures) :], strict=False
        ):
            key_field = self._entities[entity].key
            found = {}
            for document in page.documents:
                data = self.data(entity, document)
                found[str(data.get(key_field, ""))] = data
            for key, future in waiting.items():
                if not future.done():
                    future.set_result(found.get(key))


def add_condition(query: Any, field_name: str, op: str, values: list[Any]) -> None:
    """Add `field_name op values` to a cqrs_flow.Query."""
    condition = query.where.add()
    condition.field, condition.op = field_name, op
    for value in values:
        item = condition.values.add()
        if isinstance(value, bool):
            item.flag = value
        elif isinstance(value, int):
            item.integer = value
        elif isinstance(value, float):
            item.number = value
        else:
            item.text = str(value)
