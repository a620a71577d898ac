"""gRPC from descriptors: serve a proto service with plain async handlers, and call one.

No generated stubs: message classes come from the compiled descriptor set
(cqrs_flow.protobuf.compiler).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.reflection import SERVICE_NAME as REFLECTION_SERVICE
from grpc_reflection.v1alpha.reflection import enable_server_reflection

from cqrs_flow.errors import NodeError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.security.tokens import CallerCheck, Credentials
from cqrs_flow.telemetry import tracing
from cqrs_flow.topology.model import Address
from cqrs_flow.transport.health import HealthService
from cqrs_flow.transport.local import local_server
from cqrs_flow.transport.observe import observed
from cqrs_flow.transport.tls import ChannelSecurity

__all__ = [
    "CALL_METADATA",
    "READ_AFTER_COMMAND",
    "READ_AFTER_POSITION",
    "UNAVAILABLE_PEER",
    "Handler",
    "ServiceClient",
    "StreamHandler",
    "channel",
    "method_path",
    "service_handler",
    "start_server",
]

# grpc's classes are generic in its type stubs only: their parameters are named for the checker.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
if TYPE_CHECKING:
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    _GenericHandler = grpc.GenericRpcHandler
# A handler takes and returns messages, or bytes for the RPCs a node only forwards. The request
# is Any: its class is made at run time from the descriptors, so a handler names it as it likes.
Handler = Callable[[Any, Context], Awaitable[Message | bytes]]
# A server-streaming RPC's handler is an async generator of its responses (messages, or bytes).
StreamHandler = Callable[[Any, Context], AsyncIterator[Message | bytes]]

# Requests and responses beyond this size are refused with RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
HEALTH_SERVICE = "grpc.health.v1.Health"
# Trailing metadata of an UNAVAILABLE answer: which node behind the callee is away (e.g. "store").
UNAVAILABLE_PEER = "x-cqrs-flow-unavailable"

# Read-your-writes (a reader with a read model): a read carrying one of these in its metadata
# reflects that command (its id), or the change log up to that position (docs/BEHAVIOUR.md).
READ_AFTER_COMMAND = "x-cqrs-flow-after-command"
READ_AFTER_POSITION = "x-cqrs-flow-after-position"
# Metadata every call a ServiceClient makes in this context carries besides its credentials
# (a gateway request that names the command its reads must reflect).
CALL_METADATA: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("call_metadata", default=())

# gRPC backs off up to 2 minutes between reconnects by default; a node whose peer restarts
# should find it again within a couple of seconds. And a connection cut off (a partition) is
# given up after 2 s without an answer to a ping while calls wait on it, instead of waiting for
# TCP to send again after a pause that doubles each time (seconds once the link is back): its
# calls fail UNAVAILABLE, are tried again, and the channel reconnects (docs/RELIABILITY.md).
RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.http2.max_pings_without_data", 0),
)
# What a server lets such a client do: ping every second while a call waits, without a limit.
KEEPALIVE_SERVER_OPTIONS = (
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 500),
    ("grpc.http2.max_ping_strikes", 0),
)


def channel(
    target: str, *, fast_retry: bool = False, security: ChannelSecurity | None = None
) -> grpc.aio.Channel:
    """A channel with our size limits and reconnect backoff (`fast_retry`: 20 ms steps, for
    readiness probes that poll a server that is just starting); over TLS with `security`."""
    options: dict[str, int | str] = {
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        **dict(RECONNECT_OPTIONS),
    }
    if fast_retry:  # replaces the values above: gRPC would take the first of two equal keys
        options.update(
            {
                "grpc.initial_reconnect_backoff_ms": 20,
                "grpc.min_reconnect_backoff_ms": 20,
                "grpc.max_reconnect_backoff_ms": 200,
            }
        )
    if security is not None:
        options.update(security.options)
        return grpc.aio.secure_channel(target, security.credentials, options=list(options.items()))
    return grpc.aio.insecure_channel(target, options=list(options.items()))


def method_path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def service_handler(
    protos: ProtoSet,
    service: ServiceDescriptor,
    handlers: Mapping[str, Handler | StreamHandler],
    check: CallerCheck | None = None,
    forward: Collection[str] = (),
) -> grpc.GenericRpcHandler[Any, Any]:
    """A generic handler serving `handlers` (RPC name -> async fn) as `service`; an RPC that
    streams its responses (`returns (stream ...)`) is served by an async generator.

    With a `check`, every call is refused (PERMISSION_DENIED) unless it comes from a node wired to
    the service, before its request is even decoded. The RPCs in `forward` get the request as it
    came (bytes) and answer bytes, for a node that only passes them on.
    """
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, handler in handlers.items():
        method = service.methods_by_name[name]
        request_class = None if name in forward else protos.class_of(method.input_type)
        serializer = (
            None if name in forward else protos.class_of(method.output_type).SerializeToString
        )
        if method.server_streaming:
            streamed = cast(StreamHandler, handler)
            methods[name] = grpc.unary_stream_rpc_method_handler(
                _guarded_stream(service.full_name, name, streamed, check, request_class),
                response_serializer=serializer,
            )
            continue
        guarded = _guarded(service.full_name, name, cast(Handler, handler), check, request_class)
        methods[name] = grpc.unary_unary_rpc_method_handler(
            observed(service.full_name, name, guarded),  # gets the bytes as they came
            response_serializer=serializer,
        )
    return grpc.method_handlers_generic_handler(service.full_name, methods)


async def _decoded(
    service: str,
    rpc: str,
    check: CallerCheck | None,
    request_class: type[Message] | None,
    request: bytes,
    context: Context,
) -> Any:
    """The request of a call that may go on (see _guarded), decoded; aborts the call otherwise."""
    if check is not None and (refusal := _refusal(check, service, rpc, context)) is not None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
    if request_class is None:
        return request
    try:
        return request_class.FromString(request)
    except (DecodeError, RecursionError, ValueError):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid {request_class.DESCRIPTOR.full_name} "
            f"({len(request)} bytes)",
        )


def _guarded_stream(
    service: str,
    rpc: str,
    handler: StreamHandler,
    check: CallerCheck | None,
    request_class: type[Message] | None,
) -> StreamHandler:
    """A streaming `handler` behind the caller check, as _guarded does for the others."""

    async def guarded(request: bytes, context: Context) -> AsyncIterator[Message | bytes]:
        decoded = await _decoded(service, rpc, check, request_class, request, context)
        async for response in handler(decoded, context):
            yield response

    return guarded


def _guarded(
    service: str,
    rpc: str,
    handler: Handler,
    check: CallerCheck | None,
    request_class: type[Message] | None,
) -> Handler:
    """`handler` behind the caller check, given the request decoded (as `request_class`; None:
    the bytes as they came). A caller the topology does not wire to the service is refused
    (PERMISSION_DENIED) before its request is even decoded; bytes that are no valid message are
    INVALID_ARGUMENT. Decoding happens here rather than in a gRPC deserializer, which gRPC would
    answer with UNKNOWN and details naming the Python exception when it raises."""

    async def guarded(request: bytes, context: Context) -> Message | bytes:
        return await handler(
            await _decoded(service, rpc, check, request_class, request, context), context
        )

    return guarded


def _refusal(check: CallerCheck, service: str, rpc: str, context: Context) -> str | None:
    """Why the caller check refuses this call, if it does (see CallerCheck.refusal)."""
    return check.refusal(service, context.invocation_metadata(), rpc, context.auth_context)


class _Unserved(_GenericHandler):
    """Calls of methods a server does not serve: refused like a served method would be to a
    caller who may not call it, UNIMPLEMENTED for one who may (so that an unknown caller learns
    nothing)."""

    def __init__(self, check: CallerCheck) -> None:
        self._check = check

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        service, _, rpc = details.method.lstrip("/").partition("/")

        async def refuse(request: bytes, context: Context) -> None:
            refusal = _refusal(self._check, service, rpc, context)
            if refusal is None:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)

        return grpc.unary_unary_rpc_method_handler(refuse)


async def start_server(
    listen: Address,
    handlers: Sequence[grpc.GenericRpcHandler[Any, Any]],
    check: CallerCheck | None = None,
    credentials: grpc.ServerCredentials | None = None,
    reflection: tuple[ProtoSet, Sequence[str]] | None = None,
) -> grpc.aio.Server:
    """Start a gRPC server on `listen` with the standard health service (the readiness probe; it
    needs no credentials and holds little for a caller, see HealthService); over TLS with
    `credentials` (cqrs_flow.transport.tls.server_credentials).

    `check` is the one the `handlers` were made with; it also answers calls of other methods.
    With `reflection` (the protos and the names of the services `handlers` serve), the server
    also serves gRPC server reflection of those services, to any caller: what grpcurl and
    Postman list and describe."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
            *KEEPALIVE_SERVER_OPTIONS,
        ],
    )
    server.add_generic_rpc_handlers(tuple(handlers))
    health_service = HealthService()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    if reflection is not None:
        protos, services = reflection
        names = (*services, HEALTH_SERVICE, REFLECTION_SERVICE)
        enable_server_reflection(names, server, pool=_reflection_pool(protos))
    if check is not None:
        server.add_generic_rpc_handlers((_Unserved(check),))  # last: consulted when no other serves
    try:
        if credentials is not None:
            server.add_secure_port(str(listen), credentials)
        else:
            server.add_insecure_port(str(listen))
    except RuntimeError:  # gRPC says only "Failed to bind"; ask the OS why
        raise NodeError(f"gRPC server cannot listen on {listen}: {_bind_error(listen)}") from None
    await server.start()
    try:
        await health_service.set("", health_pb2.HealthCheckResponse.SERVING)
    except BaseException:  # the caller never gets the server: free its port here
        await server.stop(None)
        raise
    return server


def _reflection_pool(protos: ProtoSet) -> descriptor_pool.DescriptorPool:
    """The protos, and those of the health and reflection services, for reflection to describe
    every service it lists."""
    pool = descriptor_pool.DescriptorPool()
    names = set()
    for file in descriptor_pb2.FileDescriptorSet.FromString(protos.path.read_bytes()).file:
        pool.Add(file)
        names.add(file.name)
    for module in (health_pb2, reflection_pb2):
        if module.DESCRIPTOR.name not in names:
            file = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(file)
            pool.Add(file)
    return pool


def _bind_error(listen: Address) -> str:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((listen.host, listen.port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return "the address could not be bound"


class ServiceClient:
    """Calls the RPCs of one service on one channel, identifying the caller with its credentials."""

    def __init__(
        self,
        protos: ProtoSet,
        service: ServiceDescriptor,
        target: str,
        credentials: Credentials,
        timeout: float = 10.0,
        security: ChannelSecurity | None = None,
    ) -> None:
        self.service = service
        self.target = target
        self._protos = protos
        self._credentials = credentials
        self._timeout = timeout
        self._channel = channel(target, security=security)
        self._owns_channel = True
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable[Message, Message]] = {}
        self._forwards: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self._streams: dict[str, grpc.aio.UnaryStreamMultiCallable[Any, Any]] = {}

    def sibling(self, service: ServiceDescriptor) -> ServiceClient:
        """A client of another service of the same server, on this client's channel (closed
        with this client, not with the sibling)."""
        other = ServiceClient.__new__(ServiceClient)
        other.__dict__.update(self.__dict__)
        other.service = service
        other._owns_channel = False
        other._calls, other._forwards, other._streams = {}, {}, {}
        return other

    def request_class(self, rpc: str) -> type[Message]:
        return self._protos.class_of(self.service.methods_by_name[rpc].input_type)

    async def call(self, rpc: str, request: Message, timeout: float | None = None) -> Message:
        if (server := local_server(self.target)) is not None:  # in this very process
            method = self.service.methods_by_name[rpc]
            answer = await server.unary(
                method_path(method),
                request.SerializeToString(),
                self._metadata(),
                timeout or self._timeout,
            )
            response: Message = self._protos.class_of(method.output_type).FromString(answer)
            return response
        if rpc not in self._calls:
            method = self.service.methods_by_name[rpc]
            self._calls[rpc] = self._channel.unary_unary(
                method_path(method),
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self._protos.class_of(method.output_type).FromString,
            )
        return await self._calls[rpc](
            request,
            timeout=timeout or self._timeout,
            metadata=self._metadata(),
            wait_for_ready=False,
        )

    async def forward(self, rpc: str, request: bytes, timeout: float | None = None) -> bytes:
        """Call `rpc` with a request already encoded and return the response as it comes: for a
        node that passes messages on without reading them."""
        if (server := local_server(self.target)) is not None:  # in this very process
            path = method_path(self.service.methods_by_name[rpc])
            return await server.unary(path, request, self._metadata(), timeout or self._timeout)
        if rpc not in self._forwards:
            self._forwards[rpc] = self._channel.unary_unary(
                method_path(self.service.methods_by_name[rpc]),
                request_serializer=None,  # the bytes as they are, both ways
                response_deserializer=None,
            )
        return await self._forwards[rpc](
            request,
            timeout=timeout or self._timeout,
            metadata=self._metadata(),
            wait_for_ready=False,
        )

    def _metadata(self) -> Sequence[tuple[str, str]]:
        """The caller's credentials, the trace's context, and CALL_METADATA's."""
        metadata = tracing.with_traceparent(self._credentials.metadata)
        extra = CALL_METADATA.get()
        return (*metadata, *extra) if extra else metadata

    def reachable(self) -> bool:
        """Whether the server looks reachable: False while the channel fails to connect (for
        readiness; an idle channel has not failed). One in this process is."""
        if local_server(self.target) is not None:
            return True
        state = self._channel.get_state(try_to_connect=True)
        return state not in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        )

    def stream(
        self, rpc: str, request: Message | bytes, timeout: float | None = None
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        """Call a server-streaming `rpc`: iterate the call (`async for response in call`) for its
        responses, decoded, or as they come (bytes) for a request given as bytes (a node passing
        the stream on). No deadline unless `timeout` (a follower may wait for ever); cancel the
        call to end it early."""
        raw = isinstance(request, bytes)
        name = f"{rpc} as bytes" if raw else rpc
        if name not in self._streams:
            method = self.service.methods_by_name[rpc]
            self._streams[name] = self._channel.unary_stream(
                method_path(method),
                request_serializer=None if raw else (lambda m: m.SerializeToString()),
                response_deserializer=None
                if raw
                else self._protos.class_of(method.output_type).FromString,
            )
        return self._streams[name](
            request, timeout=timeout, metadata=self._credentials.metadata, wait_for_ready=False
        )

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close(grace=None)
