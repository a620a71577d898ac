"""A stand-in for the reader's read side as live subscriptions use it: a small grpc.aio server
serving cqrs_flow.Documents/Find (with the log position of its answer) and cqrs_flow.Changes
(Follow, Info) from documents and a change log kept in memory, changed together in one step as
a store changes them."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.messages import to_data
from cqrs_flow.stores.base import Condition, Find
from cqrs_flow.stores.documents import value_of
from cqrs_flow.stores.find import Indexes, matches, plan
from cqrs_flow.topology.relocate import free_ports


class FakeLog:
    """Documents by entity and key, and the log of their changes (positions from 1). `changes`
    False: the server does not serve cqrs_flow.Changes (a store without a log)."""

    def __init__(self, protos: ProtoSet, changes: bool = True) -> None:
        self.protos = protos
        self.serves_changes = changes
        self.documents: dict[str, dict[str, bytes]] = {}  # entity -> key -> encoded document
        self.log: list[Any] = []  # cqrs_flow.Change, in order
        self.first_kept = 1  # retention: the oldest position still kept
        self.follows: list[tuple[int, tuple[str, ...], bool]] = []  # (after, entities, wait)
        self.indexes: dict[str, Indexes] = {}
        self._grew = asyncio.Event()
        self._streams: list[dict[str, bool]] = []  # the Follow calls being served
        self._change = protos.message_class("cqrs_flow.Change")
        self.server: grpc.aio.Server | None = None
        self.target = ""

    @property
    def last(self) -> int:
        return self.log[-1].position if self.log else 0

    # -- what the store does

    def write(self, entity: str, key: str, document: Any | None, command_id: str = "") -> int:
        """Put (or, with None, delete) a document and log the change, in one step; its position."""
        held = self.documents.setdefault(entity, {})
        op = "delete" if document is None else ("update" if key in held else "insert")
        if document is None:
            held.pop(key, None)
        else:
            held[key] = document.SerializeToString()
        change = self._change(
            position=self.last + 1,
            entity=entity,
            key=key,
            op=op,
            command_id=command_id,
            document=b"" if document is None else held[key],
            at="2026-01-01T00:00:00.000000Z",
        )
        self.log.append(change)
        self._grew.set()
        self._grew = asyncio.Event()
        return change.position

    async def drop_follows(self) -> None:
        """End every Follow being served with UNAVAILABLE (a reader restarting)."""
        for stream in list(self._streams):
            stream["dropped"] = True
        self._grew.set()
        self._grew = asyncio.Event()
        await asyncio.sleep(0.05)

    # -- the services

    async def find(self, request: bytes, context: Any) -> bytes:
        find_request = self.protos.message_class("cqrs_flow.FindRequest").FromString(request)
        response = self.protos.message_class("cqrs_flow.FindResponse")()
        for query in find_request.queries:
            held = self.documents.get(query.entity, {})
            page = response.pages.add()
            if query.keys:
                found = [held[k] for k in query.keys if k in held]
                page.documents.extend(found)
                continue
            conditions = tuple(
                Condition(c.field, c.op, tuple(value_of(v) for v in c.values)) for c in query.where
            )
            indexes = self.indexes.get(query.entity, Indexes())
            sets = plan(Find(where=conditions), indexes, query.entity).sets
            cls = self.protos.message_class(f"library.{query.entity}")
            matching = [
                d
                for k, d in held.items()
                if matches(sets, k, indexes.key, to_data(cls.FromString(d)))
            ]
            first = query.first if query.HasField("first") else len(matching)
            page.documents.extend(matching[:first])
            page.has_next = len(matching) > first
        response.log_position = self.last
        return response.SerializeToString()

    async def info(self, request: bytes, context: Any) -> bytes:
        info = self.protos.message_class("cqrs_flow.LogInfo")(
            first=self.first_kept if self.log else 0, last=self.last, changes=len(self.log)
        )
        return info.SerializeToString()

    async def follow(self, request: bytes, context: Any) -> Any:
        asked = self.protos.message_class("cqrs_flow.FollowRequest").FromString(request)
        self.follows.append((asked.after, tuple(asked.entities), asked.wait))
        if asked.after + 1 < self.first_kept:
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"position {asked.after} is no longer kept; the oldest kept is {self.first_kept}",
            )
        stream = {"dropped": False}
        self._streams.append(stream)
        try:
            after = asked.after
            while True:
                for change in self.log[after:]:  # positions are 1, 2, ...: log[p - 1] is p
                    after = change.position
                    if not asked.entities or change.entity in asked.entities:
                        yield change.SerializeToString()
                if not asked.wait:
                    return
                grew = self._grew
                if after >= self.last:
                    await grew.wait()
                if stream["dropped"]:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the reader is stopping")
        finally:
            self._streams.remove(stream)

    async def start(self) -> FakeLog:
        handlers = {
            "Find": grpc.unary_unary_rpc_method_handler(self.find),
        }
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("cqrs_flow.Documents", handlers),)
        )
        if self.serves_changes:
            changes = {
                "Follow": grpc.unary_stream_rpc_method_handler(self.follow),
                "Info": grpc.unary_unary_rpc_method_handler(self.info),
            }
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("cqrs_flow.Changes", changes),)
            )
        port = free_ports(1)[0]
        self.target = f"127.0.0.1:{port}"
        server.add_insecure_port(self.target)
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
