"""The store node: a document collection behind two gRPC services, one for writes and one for
reads, each RPC bound to a store operation of the topology (cqrs_flow.contracts.operations).

Only the nodes wired to a service may call it. The backend is in memory, an SQLite database on
disk (`data:`) or MongoDB; commands are applied once and in order per entity, and a command
delivered again gets the answer it got first (cqrs_flow.stores.applied).

Beside its read service it serves the document service and the change log (cqrs_flow.Changes:
every change it applied, from a position, live); beside its write service, the service
projections write their read models with (cqrs_flow.Projections).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.contracts.operations import BoundOperation
from cqrs_flow.contracts.store import store_plan
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.runtime import STOP_GRACE, NodeService
from cqrs_flow.protobuf.compiler import (
    CHANGES_SERVICE,
    COMMANDS_SERVICE,
    DOCUMENTS_SERVICE,
    PROJECTIONS_SERVICE,
)
from cqrs_flow.security.sources import read_source
from cqrs_flow.security.tokens import METADATA_NODE, CallerCheck
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
from cqrs_flow.stores.changes import Collections, follow, follow_batches
from cqrs_flow.stores.documents import answer_find
from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.log import Ahead, ChangeLog, Retention, Superseded, Trimmed, asked_by
from cqrs_flow.stores.operations import InvalidRequest, Stale, apply_operation, command_id_of
from cqrs_flow.stores.projections import ReadModel, ReadModels
from cqrs_flow.stores.sqlite import Table
from cqrs_flow.telemetry.metrics import OTHER, Children
from cqrs_flow.topology.model import Entity, StoreNode, TlsServer, Topology
from cqrs_flow.transport.batches import batch_handler
from cqrs_flow.transport.rpc import Handler, StreamHandler, service_handler, start_server
from cqrs_flow.transport.tls import server_credentials

__all__ = ["StoreService", "indexes_of", "open_backends", "open_log"]

TRIM_EVERY = 1.0  # seconds between two trims of the change log to its retention


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


def open_log(node: StoreNode, backends: dict[str, DocumentStore]) -> ChangeLog:
    """The change log the node's backends append to (they share one: positions increase across
    all its entities)."""
    retention = Retention(node.retention.changes, node.retention.age)
    stores = list(backends.values())
    if node.backend == "mongodb":
        from cqrs_flow.stores.mongodb import MongoStore
        from cqrs_flow.stores.mongodb_log import MongoLog

        return MongoLog([s for s in stores if isinstance(s, MongoStore)], retention)
    if node.data is not None:
        from cqrs_flow.stores.sqlite_log import SqliteLog

        return SqliteLog([s for s in stores if isinstance(s, SqliteStore)], retention)
    from cqrs_flow.stores.memory_log import MemoryLog

    log = MemoryLog(retention, node.last_writer_wins)
    for store in stores:
        assert isinstance(store, MemoryStore)
        store.log = log
    return log


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
        self._find_queries = Children(self.metrics.find_queries)  # per call: looked up once
        self._find_calls = Children(self.metrics.find_calls)
        self.backends = await open_backends(self.topology, self.node)
        # Released last: the servers stop accepting calls, those in flight finish, and only then
        # is the data dropped (a durable store has it on disk already).
        for name, backend in self.backends.items():
            self.resources.push_async_callback(backend.close)
            self.spawn(backend.wait_failure(), f"store backend of {name}")
        self.log_ = open_log(self.node, self.backends)
        self.resources.push_async_callback(self.log_.close)
        entities = self.topology.entities_of(self.node)
        self.collections = Collections({e.collection: e.name for e in entities})
        self.read_models = ReadModels(
            self.log_,
            {
                p.name: self._read_model(self.topology.entities[p.entity])
                for p in self.topology.projections_into(self.node)
                if p.entity in self.backends
            },
            self.backends,
            self.collections,
        )
        self.resources.push_async_callback(self._close_opened)
        await self.read_models.open()
        info = await self.log_.info()
        self.log.info("change log: %s; retention: %s", info, self.node.retention)
        if not self.node.retention.keeps_everything:
            self.spawn(self._trim(), "change log retention")
        self.applied = await self._applied()
        self.resources.push_async_callback(self.applied.close)
        check = CallerCheck(self.topology.callers_of(self.node.name), self.credentials)
        for side in ("write", "read"):
            service = self.node.service(side)
            handlers = {rpc: self._handler(bound) for rpc, bound in plan[service.name].items()}
            generic = [
                service_handler(self.protos, self.protos.service(service.name), handlers, check)
            ]
            served = [service.name]
            if side == "read":  # the document service: lists, lookups, relations; the log
                documents = self.protos.service(DOCUMENTS_SERVICE)
                generic.append(service_handler(self.protos, documents, {"Find": self._find}, check))
                served.append(DOCUMENTS_SERVICE)
                changes = self.protos.service(CHANGES_SERVICE)
                answers: dict[str, Handler | StreamHandler] = {
                    "Follow": self._follow(batched=False),
                    "FollowBatches": self._follow(batched=True),
                    "Info": self._info,
                }
                generic.append(service_handler(self.protos, changes, answers, check))
                served.append(CHANGES_SERVICE)
            else:  # the read models of projections; the writers' commands, several a call
                generic.append(
                    service_handler(
                        self.protos,
                        self.protos.service(PROJECTIONS_SERVICE),
                        self._projection_handlers(),
                        check,
                    )
                )
                served.append(PROJECTIONS_SERVICE)
                generic.append(self._commands_handler(service.name, handlers, check))
                served.append(COMMANDS_SERVICE)
            tls = server_credentials(self.topology, service.tls) if service.tls else None
            reflection = (self.protos, served) if self.node.serves_reflection else None
            server = await start_server(service.listen, generic, check, tls, reflection)
            self.resources.push_async_callback(server.stop, STOP_GRACE)
            self.log.info(
                "%s service %s on %s%s", side, service.name, service.listen, _tls_note(service.tls)
            )

    def _commands_handler(
        self, service: str, handlers: dict[str, Handler], check: CallerCheck
    ) -> Any:
        """cqrs_flow.Commands: a writer's commands, several in one call, each applied by the
        handler of its own RPC of the write service `service` (`handlers`), side by side as
        calls of their own would be: the command-id check, the backend's transaction and change
        log entry of each command are its own (cqrs_flow.transport.batches)."""
        methods = self.protos.service(service).methods_by_name
        commands = self.protos.service(COMMANDS_SERVICE)
        apply = batch_handler(
            handlers,
            {rpc: self.protos.class_of(methods[rpc].input_type) for rpc in handlers},
            self.protos.class_of(commands.methods_by_name["Apply"].output_type),
            self.log,
        )
        return service_handler(self.protos, commands, {"Apply": apply}, check)

    def _read_model(self, entity: Entity) -> ReadModel:
        return ReadModel(
            entity.name,
            entity.collection,
            indexes_of(entity),
            entity.timestamp,
            self.protos.message_class(entity.document),
        )

    async def _close_opened(self) -> None:
        """Close the backends opened while running (read models' generations)."""
        for backend in self.read_models.opened:
            await backend.close()

    async def _trim(self) -> None:
        """Keep the change log to its retention, a trim a second (each drops a bounded number
        of changes, so a long log left to trim does not hold the writes up)."""
        while True:
            await asyncio.sleep(TRIM_EVERY)
            try:
                dropped = await self.log_.trim()
            except StoreError as exc:  # a full disk, MongoDB away: try again later
                self.log.warning("change log: trimming to its retention failed: %s", exc)
                continue
            if dropped:
                self.log.debug("change log: %d changes dropped (retention)", dropped)

    def _document_class(self, entity: str) -> type[Message]:
        return self.protos.message_class(self.topology.entities[entity].document)

    def _follow(self, batched: bool) -> StreamHandler:
        """Every change after request.after (of request.entities), and with request.wait the
        new ones as they are made, until the caller goes away: one by one (Follow), or in
        batches (FollowBatches)."""
        methods = self.protos.service(CHANGES_SERVICE).methods_by_name
        change_class = self.protos.class_of(methods["Follow"].output_type)
        batch_class = self.protos.class_of(methods["FollowBatches"].output_type)

        async def answer(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Message]:
            stream = (
                follow_batches(
                    self.log_,
                    request,
                    self.collections,
                    self._document_class,
                    change_class,
                    batch_class,
                )
                if batched
                else follow(
                    self.log_, request, self.collections, self._document_class, change_class
                )
            )
            try:
                async for message in stream:
                    yield message
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except (Trimmed, Ahead) as exc:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(exc))
            except StoreError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

        return answer

    async def _info(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        answer_class = self.protos.class_of(
            self.protos.service(CHANGES_SERVICE).methods_by_name["Info"].output_type
        )
        try:
            info = await self.log_.info()
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        answer: Message = answer_class()
        for name, value in (
            ("first", info.first),
            ("last", info.last),
            ("changes", info.changes),
            ("bytes", info.bytes),
        ):
            setattr(answer, name, value)
        return answer

    def _projection_handlers(self) -> dict[str, Handler | StreamHandler]:
        """The Projections service: each call on the read model of its caller (a projection the
        topology wires to this store's write side, which CallerCheck made sure of)."""
        service = self.protos.service(PROJECTIONS_SERVICE)
        models = self.read_models

        def answer(rpc: str) -> Any:
            return self.protos.class_of(service.methods_by_name[rpc].output_type)()

        async def call(rpc: str, context: grpc.aio.ServicerContext[Any, Any], work: Any) -> Any:
            try:
                return await work
            except Superseded as exc:
                await context.abort(grpc.StatusCode.ABORTED, str(exc))
            except (InvalidRequest, InvalidDocument) as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except StoreError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

        def caller(context: grpc.aio.ServicerContext[Any, Any]) -> str:
            metadata = dict(context.invocation_metadata() or ())
            return str(metadata.get(METADATA_NODE, ""))

        async def state(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            generation = request.generation if request.HasField("generation") else None
            work = models.state(caller(context), generation, answer("State"))
            return await call("State", context, work)

        async def read(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            work = models.read(
                caller(context), request.generation, list(request.keys), answer("Read")
            )
            return await call("Read", context, work)

        async def apply(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            work = models.apply(caller(context), request, answer("Apply"))
            return await call("Apply", context, work)

        async def begin(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await call("Begin", context, models.begin(caller(context), answer("Begin")))

        async def switch(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            work = models.switch(caller(context), request.generation, answer("Switch"))
            return await call("Switch", context, work)

        return {"State": state, "Read": read, "Apply": apply, "Begin": begin, "Switch": switch}

    @functools.cached_property
    def _find_response(self) -> type[Message]:
        """The class of the document service's answer (looked up once, not per call)."""
        find = self.protos.service(DOCUMENTS_SERVICE).methods_by_name["Find"]
        return self.protos.class_of(find.output_type)

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
        queries = getattr(request, "queries", ())
        for query in queries:
            entity = query.entity if query.entity in self.backends else OTHER
            self._find_queries(entity).inc()
        began, outcome = time.perf_counter(), "ok"
        try:
            response: Message = await answer_find(
                request,
                self._find_response(),
                self.backends,
                self._document_class,
                self.node.list_limit,
            )
            self.log.debug("find: %d quer%s", len(queries), "y" if len(queries) == 1 else "ies")
            return response
        except (InvalidRequest, BadQuery) as exc:  # the caller's error: a bad condition, ...
            outcome = "invalid_argument"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreError as exc:
            outcome = "unavailable"
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        finally:
            self._find_calls(outcome).inc()
            self.metrics.find_seconds.observe(time.perf_counter() - began)

    def _measured(self, handle: Handler, bound: BoundOperation) -> Handler:
        """`handle` counted by outcome and timed, per entity, operation and RPC."""
        entity, op, rpc = bound.entity, bound.op, bound.method.name
        operations = self.metrics.store_operations
        ok = operations.labels(entity, op, rpc, "ok")
        seconds = self.metrics.store_seconds.labels(entity, rpc)

        async def measured(
            request: Message | bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message | bytes:
            began = time.perf_counter()
            try:
                response = await handle(request, context)
            except BaseException:
                code = context.code()
                outcome = code.name.lower() if isinstance(code, grpc.StatusCode) else "unknown"
                operations.labels(entity, op, rpc, outcome).inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - began)
            ok.inc()
            return response

        return measured

    def _asked(self, handle: Handler) -> Handler:
        """`handle` with its writes recorded as asked for by the subject its request carries
        (the field the topology's `subject` names, filled by the gateway with the end user's
        `sub`): the change log keeps it with each change."""
        name = self.topology.subject

        async def asked(
            request: Message | bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message | bytes:
            subject = getattr(request, name, "")
            with asked_by(subject if isinstance(subject, str) else None):
                return await handle(request, context)

        return asked

    def _handler(self, bound: BoundOperation) -> Handler:
        response_class = self.protos.class_of(bound.method.output_type)
        node = self.node
        entity = self.topology.entities[bound.entity]
        backends = self.backends  # looked up at each call: a read model's moves with a replay
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
                    backends[bound.entity],
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

        if (
            bound.side == "write"
            and self.topology.subject in bound.method.input_type.fields_by_name
        ):
            return self._measured(self._asked(handle), bound)
        return self._measured(handle, bound)
