"""The reader: the read API the gateway calls, forwarding to the store's read service, or
answering from its own read model (`read_model:`, model.py and answers.py).

It is the place where read-side business logic plugs in; it can only reach the store's read
service (its credentials are refused by the write service), and its read model is kept in its
own memory: it never writes to the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.contracts.operations import BoundOperation
from cqrs_flow.contracts.reader import reader_plan
from cqrs_flow.contracts.store import store_plan
from cqrs_flow.nodes.reader.answers import ModelAnswers, Stale
from cqrs_flow.nodes.reader.model import ReadModel
from cqrs_flow.nodes.runtime import STOP_GRACE, NodeService
from cqrs_flow.plugins import PluginContext, ReaderPlugin, Rejected, start_plugins, stop_plugins
from cqrs_flow.protobuf.compiler import CHANGES_SERVICE, DOCUMENTS_SERVICE, ProtoSet
from cqrs_flow.security.tokens import CallerCheck, outside_callers
from cqrs_flow.topology.model import ReaderNode, StoreNode, Topology
from cqrs_flow.topology.problems import Problems
from cqrs_flow.transport.local import serve_locally, stop_serving_locally
from cqrs_flow.transport.rpc import (
    UNAVAILABLE_PEER,
    Handler,
    ServiceClient,
    StreamHandler,
    service_handler,
    start_server,
)
from cqrs_flow.transport.tls import channel_security, server_credentials

__all__ = ["ReaderService"]


class ReaderService(NodeService):
    node: ReaderNode

    async def setup(self) -> None:
        plan = self.contract(reader_plan)
        store = self.topology.store_of(self.node.store)
        self.store = ServiceClient(
            self.protos,
            self.protos.service(store.read.name),
            store.read.listen.target,
            self.credentials,
            security=channel_security(self.topology, store.read.tls, self.node.client_tls),
        )
        self.resources.push_async_callback(self.store.close)
        self.telemetry.readiness = lambda: {"store": self.store.reachable()}
        self.documents = self.store.sibling(self.protos.service(DOCUMENTS_SERVICE))
        self.changes = self.store.sibling(self.protos.service(CHANGES_SERVICE))
        self.answers: ModelAnswers | None = None
        if self.node.read_model is not None:
            self.answers = self._read_model(store)
        context = PluginContext(self.topology, self.node, self.protos, self.log, store=self.store)
        started = await start_plugins(self.node, context)
        self.resources.push_async_callback(stop_plugins, started, self.log)
        self.plugins = [p for p in started if isinstance(p, ReaderPlugin)]  # all: the loader checks
        handlers = {}
        bound = self.contract(_store_reads) if self.answers is not None else {}
        for rpc, target in plan.items():
            if target is not None and self.answers is not None and target in bound:
                entity = self.topology.entities[bound[target].entity]
                what = f"no {entity.name.lower()} with {entity.key}"
                read = self.answers.operation(bound[target])
                stale = self.answers.stale(read, what)
                forward = self._forward(target, self.store, stale)
                handlers[rpc] = self.answers.handler(read, forward, what)
            elif target is not None:
                handlers[rpc] = self._forward(target, self.store)
            else:
                plugin = next(p for p in self.plugins if type(p).serves(rpc))
                handlers[rpc] = self._plugin(plugin, rpc)
        outside = outside_callers(self.topology, self.node.name)
        check = CallerCheck(self.topology.callers_of(self.node.name), self.credentials, outside)
        forwarded = {rpc for rpc, target in plan.items() if target is not None}
        generic = service_handler(
            self.protos, self.protos.service(self.node.service), handlers, check, forward=forwarded
        )
        # The document service (lists, lookups, relations) is passed on to the store's as it is
        # (or answered from the read model).
        find = self._forward("Find", self.documents)
        if self.answers is not None:
            stale = self.answers.stale(self.answers.find)
            find = self._forward("Find", self.documents, stale)
            find = self.answers.handler(self.answers.find, find)
        documents = service_handler(
            self.protos,
            self.protos.service(DOCUMENTS_SERVICE),
            {"Find": find},
            check,
            forward={"Find"},
        )
        # The change log too: Follow streamed through as it comes, Info forwarded.
        passed: dict[str, Handler | StreamHandler] = {
            "Follow": self._follow("Follow"),
            "FollowBatches": self._follow("FollowBatches"),
            "Info": self._forward("Info", self.changes),
        }
        changes = service_handler(
            self.protos,
            self.protos.service(CHANGES_SERVICE),
            passed,
            check,
            forward=set(passed),
        )
        tls = server_credentials(self.topology, self.node.tls) if self.node.tls else None
        served = (self.node.service, DOCUMENTS_SERVICE, CHANGES_SERVICE)
        reflection = (self.protos, served) if self.node.serves_reflection else None
        server = await start_server(
            self.node.listen,
            [generic, documents, changes],
            check,
            tls,
            reflection,
        )
        self.resources.push_async_callback(server.stop, STOP_GRACE)
        if self.node.process:  # in its gateway's process: the gateway calls it there, directly
            serve_locally(self.node.listen.target, [generic, documents, changes])
            self.resources.callback(stop_serving_locally, self.node.listen.target)
        self.log.info(
            "%s on %s%s, reading from %s%s%s%s",
            self.node.service,
            self.node.listen,
            " over TLS" if tls else "",
            store.read.listen,
            f"; outside clients: {', '.join(outside)}" if outside else "",
            "; server reflection on" if reflection else "",
            f"; read model of {', '.join(self.answers.model.entities)}" if self.answers else "",
        )

    def _read_model(self, store: StoreNode) -> ModelAnswers:
        """The read model, followed in the background, and what answers from it; readiness and
        metrics say how far behind it is."""
        settings = self.node.read_model
        assert settings is not None
        model = ReadModel(
            self.node.name,
            self.topology.model_entities(self.node),
            self._document_class,
            self.changes,
            self.documents,
            page=store.list_limit,
            probe=min(settings.staleness / 4, 0.25),
        )
        self.spawn(model.run(), "read model")
        answers = ModelAnswers(
            model, settings, self.protos, self._document_class, store.list_limit, self.metrics
        )
        self.telemetry.readiness = lambda: {
            "store": self.store.reachable(),
            "read_model": model.fresh(settings.staleness),
        }
        self.metrics.model_lag.set_function(model.lag)
        self.metrics.model_staleness.set_function(lambda: model.staleness() or 0.0)
        model.on_bootstrap = self.metrics.model_bootstraps.inc
        self.telemetry.facts["read_model"] = answers.facts
        return answers

    def _document_class(self, entity: str) -> type[Message]:
        return self.protos.message_class(self.topology.entities[entity].document)

    def _forward(self, target: str, store: ServiceClient, stale: Stale | None = None) -> Handler:
        """Pass the request on to the store's `target` RPC as bytes (it takes and returns the same
        messages), and its answer back: decoding and encoding them again would only cost time.
        A store that cannot be reached: `stale`'s answer (the read model's), if it has one."""

        async def forward(
            request: Message | bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> bytes:
            assert isinstance(request, bytes)  # a forwarded RPC gets the request's bytes
            try:
                return await store.forward(target, request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    if stale is not None and (answer := await stale(request, context)) is not None:
                        return answer
                    self.log.warning("store read service %s: %s", store.target, exc.details())
                    context.set_trailing_metadata(((UNAVAILABLE_PEER, "store"),))
                    await context.abort(exc.code(), "the store is unavailable; try again")
                await context.abort(exc.code(), exc.details() or "")

        return forward

    def _follow(self, rpc: str) -> StreamHandler:
        """The store's change log (`rpc`: Follow or FollowBatches), each message passed on as it
        comes, for as long as both ends stay (a follower that goes away cancels the store's
        stream)."""

        async def follow(
            request: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            call = self.changes.stream(rpc, request)
            try:
                async for message in call:
                    yield message
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED and context.cancelled():
                    return
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self.log.warning(
                        "store read service %s: %s", self.changes.target, exc.details()
                    )
                    context.set_trailing_metadata(((UNAVAILABLE_PEER, "store"),))
                    await context.abort(exc.code(), "the store is unavailable; try again")
                await context.abort(exc.code(), exc.details() or "")
            finally:
                call.cancel()

        return follow

    def _plugin(self, plugin: ReaderPlugin, rpc: str) -> Handler:
        method = getattr(plugin, rpc)

        async def answer(
            request: Message | bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message:
            try:
                response: Message = await method(request, context)
                return response
            except grpc.aio.AbortError:
                raise  # the plugin aborted the call itself, with its own status
            except grpc.aio.AioRpcError as exc:  # a call the plugin made failed: pass its status on
                await context.abort(exc.code(), exc.details() or "")
            except Rejected as exc:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            except Exception:
                self.log.exception("plugin '%s' failed on %s", plugin.name, rpc)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"plugin '{plugin.name}' failed on {rpc}"
                )

        return answer


def _store_reads(
    topology: Topology, reader: ReaderNode, protos: ProtoSet, report: Problems
) -> dict[str, BoundOperation]:
    """The reads of the reader's store's read service the read model can answer: store RPC ->
    its bound operation (a get or a list of an entity the model keeps)."""
    store = topology.nodes[reader.store.node]
    assert isinstance(store, StoreNode)
    kept = {e.name for e in topology.model_entities(reader)}
    reads = store_plan(topology, store, protos, report).get(store.read.name, {})
    return {rpc: b for rpc, b in reads.items() if b.op in ("get", "list") and b.entity in kept}
