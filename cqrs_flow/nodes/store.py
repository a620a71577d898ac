"""The store node: a document collection behind two gRPC services, one for writes and one for
reads, each RPC bound to a store operation of the topology (cqrs_flow.contracts.operations).

Only the nodes wired to a service may call it. The backend is in memory, an SQLite database on
disk (`data:`) or MongoDB; commands are applied once and in order per entity, and a command
delivered again gets the answer it got first (cqrs_flow.stores.applied).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.contracts.operations import BoundOperation
from cqrs_flow.contracts.store import store_plan
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.runtime import STOP_GRACE, NodeService
from cqrs_flow.protobuf.compiler import DOCUMENTS_SERVICE
from cqrs_flow.security.sources import read_source
from cqrs_flow.security.tokens import CallerCheck
from cqrs_flow.stores import (
    DocumentStore,
    DuplicateKey,
    InvalidDocument,
    MemoryStore,
    NotFound,
    SqliteStore,
    StoreError,
)
from cqrs_flow.stores.applied import DIRECTORY as APPLIED_DIRECTORY
from cqrs_flow.stores.applied import AppliedCommands
from cqrs_flow.stores.base import BadQuery
from cqrs_flow.stores.documents import answer_find
from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.operations import InvalidRequest, Stale, apply_operation, command_id_of
from cqrs_flow.stores.sqlite import Table
from cqrs_flow.topology.model import Entity, StoreNode, TlsServer, Topology
from cqrs_flow.transport.rpc import Handler, service_handler, start_server
from cqrs_flow.transport.tls import server_credentials

__all__ = ["StoreService", "indexes_of", "open_backends"]


async def open_backends(topology: Topology, node: StoreNode) -> dict[str, DocumentStore]:
    """A backend per entity the node holds, opened (entity name -> backend); NodeError (the node
    exits non-zero, and `up` restarts it by its restart policy) if one cannot be: a MongoDB not
    reachable, a data directory in use. Closing each is the caller's job."""
    entities = topology.entities_of(node)
    opened: dict[str, DocumentStore] = {}
    try:
        if node.backend == "mongodb" and node.mongodb is not None:
            from cqrs_flow.stores.mongodb import MongoStore

            url = read_source(node.mongodb.url, topology, f"nodes.{node.name}.mongodb.url")
            shared = await MongoStore.open_many(
                url,
                node.mongodb.database,
                {e.collection: indexes_of(e) for e in entities},
                last_writer_wins=node.last_writer_wins,
            )
            opened = {e.name: store for e, store in zip(entities, shared, strict=True)}
        elif node.data is not None:
            stores = await SqliteStore.open_many(
                topology.root / node.data,
                {e.collection: Table(e.timestamp, indexes_of(e)) for e in entities},
                last_writer_wins=node.last_writer_wins,
            )
            opened = {e.name: store for e, store in zip(entities, stores, strict=True)}
        else:
            opened = {
                e.name: MemoryStore(e.collection, node.last_writer_wins, indexes_of(e))
                for e in entities
            }
    except StoreError as exc:
        for backend in opened.values():
            await backend.close()
        raise NodeError(f"store {node.name}: {exc}") from None
    return opened


def indexes_of(entity: Entity) -> Indexes:
    """What finds over an entity's documents may use: its key field and its indexed fields."""
    return Indexes(entity.key, entity.indexes)


def _tls_note(tls: TlsServer | None) -> str:
    if tls is None:
        return ""
    return " over TLS" + (" with client certificates" if tls.client_auth else "")


class StoreService(NodeService):
    node: StoreNode

    async def setup(self) -> None:
        plan = self.contract(store_plan)
        self.backends = await open_backends(self.topology, self.node)
        # Released last: the servers stop accepting calls, those in flight finish, and only then
        # is the data dropped (a durable store has it on disk already).
        for name, backend in self.backends.items():
            self.resources.push_async_callback(backend.close)
            self.spawn(backend.wait_failure(), f"store backend of {name}")
        self.applied = await self._applied()
        self.resources.push_async_callback(self.applied.close)
        check = CallerCheck(self.topology.callers_of(self.node.name), self.credentials)
        for side in ("write", "read"):
            service = self.node.service(side)
            handlers = {rpc: self._handler(bound) for rpc, bound in plan[service.name].items()}
            generic = [
                service_handler(self.protos, self.protos.service(service.name), handlers, check)
            ]
            if side == "read":  # the document service: lists, lookups, relations
                documents = self.protos.service(DOCUMENTS_SERVICE)
                generic.append(service_handler(self.protos, documents, {"Find": self._find}, check))
            tls = server_credentials(self.topology, service.tls) if service.tls else None
            server = await start_server(service.listen, generic, check, tls)
            self.resources.push_async_callback(server.stop, STOP_GRACE)
            self.log.info(
                "%s service %s on %s%s", side, service.name, service.listen, _tls_note(service.tls)
            )

    async def _applied(self) -> AppliedCommands:
        """The applied commands' answers: in the data directory (`applied/`) if there is one."""
        retention = self.node.applied_retention
        if self.node.data is None or self.node.backend != "embedded":
            return AppliedCommands(retention)
        directory = self.topology.root / self.node.data / APPLIED_DIRECTORY
        try:
            return await AppliedCommands.open(directory, retention)
        except StoreError as exc:
            raise NodeError(f"store {self.node.name}: {exc}") from None

    async def _find(
        self, request: Message | bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Message:
        response_class = self.protos.class_of(
            self.protos.service(DOCUMENTS_SERVICE).methods_by_name["Find"].output_type
        )
        try:
            response: Message = await answer_find(
                request,
                response_class(),
                self.backends,
                lambda entity: self.protos.message_class(self.topology.entities[entity].document),
                self.node.list_limit,
            )
            self.log.debug(
                "find: %d quer%s",
                len(getattr(request, "queries", ())),
                "y" if len(getattr(request, "queries", ())) == 1 else "ies",
            )
            return response
        except (InvalidRequest, BadQuery) as exc:  # the caller's error: a bad condition, ...
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    def _handler(self, bound: BoundOperation) -> Handler:
        response_class = self.protos.class_of(bound.method.output_type)
        node = self.node
        entity = self.topology.entities[bound.entity]
        backend = self.backends[bound.entity]
        document_class = self.protos.message_class(entity.document)
        what = entity.name.lower()
        id_name = self.topology.command_id
        command_ids = bound.side == "write" and id_name in bound.method.input_type.fields_by_name

        async def handle(
            request: Message | bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message:
            assert isinstance(request, Message)  # the store decodes every request
            try:
                command_id = command_id_of(request, id_name) if command_ids else ""
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if command_id and (done := self.applied.cached(command_id)) is not None:
                self.log.info("command %s was applied before; not applying it again", command_id)
                return response_class.FromString(done)
            try:
                response = await apply_operation(
                    bound,
                    request,
                    backend,
                    document_class,
                    response_class,
                    entity.timestamp,
                    node.list_limit,
                    command=command_id or None,
                )
                if command_id:
                    self.applied.add(command_id, response.SerializeToString())
                return response
            except Stale as stale:
                why = (
                    "was applied before"
                    if stale.last == command_id
                    else f"is older than {stale.last}"
                )
                self.log.info(
                    "command %s on %s %s: not applied (it %s)",
                    command_id,
                    what,
                    stale.key,
                    why,
                )
                done = await self.applied.get(command_id)  # on disk: what it was answered
                return stale.response if done is None else response_class.FromString(done)
            except NotFound as exc:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"no {what} with {entity.key} '{exc}'"
                )
            except DuplicateKey as exc:
                await context.abort(
                    grpc.StatusCode.ALREADY_EXISTS, f"{what} '{exc}' exists already"
                )
            except (InvalidRequest, InvalidDocument) as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except (
                StoreError
            ) as exc:  # the backend cannot serve (disk full, MongoDB unreachable): try later
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

        return handle
