"""The reader: the read API the gateway calls, forwarding to the store's read service.

It is the place where read-side business logic plugs in; it can only reach the store's read
service (its credentials are refused by the write service).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.contracts.reader import reader_plan
from cqrs_flow.nodes.runtime import STOP_GRACE, NodeService
from cqrs_flow.plugins import PluginContext, ReaderPlugin, Rejected, start_plugins, stop_plugins
from cqrs_flow.protobuf.compiler import CHANGES_SERVICE, DOCUMENTS_SERVICE
from cqrs_flow.security.tokens import CallerCheck, outside_callers
from cqrs_flow.topology.model import ReaderNode
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
        context = PluginContext(self.topology, self.node, self.protos, self.log, store=self.store)
        started = await start_plugins(self.node, context)
        self.resources.push_async_callback(stop_plugins, started, self.log)
        self.plugins = [p for p in started if isinstance(p, ReaderPlugin)]  # all: the loader checks
        handlers = {}
        for rpc, target in plan.items():
            if target is not None:
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
        # The document service (lists, lookups, relations) is passed on to the store's as it is.
        self.documents = self.store.sibling(self.protos.service(DOCUMENTS_SERVICE))
        documents = service_handler(
            self.protos,
            self.protos.service(DOCUMENTS_SERVICE),
            {"Find": self._forward("Find", self.documents)},
            check,
            forward={"Find"},
        )
        # The change log too: Follow streamed through as it comes, Info forwarded.
        self.changes = self.store.sibling(self.protos.service(CHANGES_SERVICE))
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
            self.node.listen, [generic, documents, changes], check, tls, reflection
        )
        self.resources.push_async_callback(server.stop, STOP_GRACE)
        self.log.info(
            "%s on %s%s, reading from %s%s%s",
            self.node.service,
            self.node.listen,
            " over TLS" if tls else "",
            store.read.listen,
            f"; outside clients: {', '.join(outside)}" if outside else "",
            "; server reflection on" if reflection else "",
        )

    def _forward(self, target: str, store: ServiceClient) -> Handler:
        """Pass the request on to the store's `target` RPC as bytes (it takes and returns the same
        messages), and its answer back: decoding and encoding them again would only cost time."""

        async def forward(
            request: Message | bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> bytes:
            assert isinstance(request, bytes)  # a forwarded RPC gets the request's bytes
            try:
                return await store.forward(target, request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
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
