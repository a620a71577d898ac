"""The store: a document collection behind two gRPC services, one for writes and one for reads.

Each RPC is bound to a store operation in the topology (see cqrs_flow.contracts.operations); a caller check
lets only the nodes wired to a service call it. The documents are in memory (stores/memory.py),
or, with `data: <directory>`, also journaled on disk before a write is answered
(stores/durable.py), so a restarted store has every write it acknowledged; or, with
`backend: mongodb`, in a MongoDB collection that several store processes may share
(stores/mongodb.py; a MongoDB error answers UNAVAILABLE, and the writer tries again).

Commands are applied once and in order per entity: the backend keeps each key's last command id
(in the journal too), and a write whose command id is that one, or older (cqrs_flow.contracts.ordering),
is answered as done without being applied. The ids of recent commands are also kept with their
responses (AppliedCommands), so a command delivered again gets the very answer it got first.
"""

from __future__ import annotations

import grpc

from cqrs_flow.contracts.operations import BoundOperation
from cqrs_flow.contracts.store import store_plan
from cqrs_flow.errors import NodeError, TopologyError
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.security.sources import read_source
from cqrs_flow.security.tokens import CallerCheck
from cqrs_flow.stores import (
    DocumentStore,
    DuplicateKey,
    DurableStore,
    InvalidDocument,
    MemoryStore,
    NotFound,
    StoreError,
)
from cqrs_flow.stores.applied import AppliedCommands
from cqrs_flow.stores.operations import InvalidRequest, Stale, apply_operation, command_id_of
from cqrs_flow.topology.model import StoreNode, TlsServer, Topology
from cqrs_flow.topology.problems import Problems
from cqrs_flow.transport.rpc import Handler, service_handler, start_server
from cqrs_flow.transport.tls import server_credentials

__all__ = ["StoreService", "open_backend"]


async def open_backend(topology: Topology, node: StoreNode) -> DocumentStore:
    """The node's backend, opened; NodeError (the node exits non-zero, and `up` restarts it by
    its restart policy) if it cannot be: a MongoDB not reachable, a data directory in use."""
    try:
        if node.backend == "mongodb" and node.mongodb is not None:
            from cqrs_flow.stores.mongodb import MongoStore

            url = read_source(node.mongodb.url, topology, f"nodes.{node.name}.mongodb.url")
            return await MongoStore.open(
                url, node.mongodb.database, node.collection, last_writer_wins=node.last_writer_wins
            )
        if node.data is not None:
            return await DurableStore.open(
                topology.root / node.data, node.collection, last_writer_wins=node.last_writer_wins
            )
        return MemoryStore(node.collection, node.last_writer_wins)
    except StoreError as exc:
        raise NodeError(f"store {node.name}: {exc}") from None


def _tls_note(tls: TlsServer | None) -> str:
    if tls is None:
        return ""
    return " over TLS" + (" with client certificates" if tls.client_auth else "")


class StoreService(NodeService):
    node: StoreNode

    async def start(self) -> None:
        report = Problems(self.topology.located)
        plan = store_plan(self.topology, self.node, self.protos, report)
        if report.problems:
            raise TopologyError(report.problems, str(self.topology.source))
        self.backend: DocumentStore = await open_backend(self.topology, self.node)
        self.spawn(self.backend.wait_failure(), "store backend")
        self.document_class = self.protos.message_class(self.node.document)
        self.entity = self.node.document.rpartition(".")[2].lower()
        self.applied = AppliedCommands()
        check = CallerCheck(self.topology.callers_of(self.node.name), self.credentials)
        self.servers: list[grpc.aio.Server] = []
        for side in ("write", "read"):
            service = self.node.service(side)
            handlers = {rpc: self._handler(bound) for rpc, bound in plan[service.name].items()}
            generic = service_handler(
                self.protos, self.protos.service(service.name), handlers, check
            )
            tls = server_credentials(self.topology, service.tls) if service.tls else None
            self.servers.append(await start_server(service.listen, [generic], check, tls))
            self.log.info(
                "%s service %s on %s%s", side, service.name, service.listen, _tls_note(service.tls)
            )

    def _handler(self, bound: BoundOperation) -> Handler:
        response_class = self.protos.class_of(bound.method.output_type)
        node = self.node
        id_name = self.topology.command_id
        command_ids = bound.side == "write" and id_name in bound.method.input_type.fields_by_name

        async def handle(request, context: grpc.aio.ServicerContext):
            try:
                command_id = command_id_of(request, id_name) if command_ids else ""
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if command_id and (done := self.applied.get(command_id)) is not None:
                self.log.info("command %s was applied before; not applying it again", command_id)
                return response_class.FromString(done)
            try:
                response = await apply_operation(
                    bound,
                    request,
                    self.backend,
                    self.document_class,
                    response_class,
                    node.timestamp,
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
                    self.entity,
                    stale.key,
                    why,
                )
                return stale.response
            except NotFound as exc:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"no {self.entity} with {node.key} '{exc}'"
                )
            except DuplicateKey as exc:
                await context.abort(
                    grpc.StatusCode.ALREADY_EXISTS, f"{self.entity} '{exc}' exists already"
                )
            except (InvalidRequest, InvalidDocument) as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except (
                StoreError
            ) as exc:  # the backend cannot serve (journal failed, MongoDB unreachable): try later
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

        return handle

    async def stop(self) -> None:
        # Stop accepting calls, let those in flight finish (up to a second), then drop the data
        # (a durable store has it on disk already).
        for server in getattr(self, "servers", []):
            await server.stop(grace=1.0)
        if hasattr(self, "backend"):
            await self.backend.close()
