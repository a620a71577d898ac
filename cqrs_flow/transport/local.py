"""Calls between two nodes of one process, without the network (a reader placed in its gateway's
process, topology key `process`).

A server that may be called in its process registers its handlers under the target its clients
dial (`serve_locally`); a ServiceClient whose target is registered calls the handler directly,
with the request's bytes and its own metadata, through the very handlers the gRPC server runs:
the caller check (credentials and the topology's wiring), decoding, metrics and access log are
the same, only the sockets, HTTP/2 framing and gRPC's threads are gone. Errors come back as
grpc.aio.AioRpcError with the code, details and trailing metadata the handler set, as over the
network. Server-streaming RPCs (the change log) still go over the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import grpc

from cqrs_flow.transport.deadline import within

__all__ = ["LocalServer", "local_server", "serve_locally", "stop_serving_locally"]

_SERVERS: dict[str, LocalServer] = {}


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class _Context:
    """What the handlers ask of a grpc.aio.ServicerContext, for a call made in the process."""

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = tuple(metadata)
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return {}  # no TLS in a process: callers prove themselves with their tokens

    def peer(self) -> str:
        return "local"

    def cancelled(self) -> bool:
        return False

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._trailing = tuple(metadata)

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> None:
        self._code, self._details = code, details
        raise grpc.aio.AbortError(details)

    def error(self) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(
            self._code or grpc.StatusCode.UNKNOWN,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(*self._trailing),
            self._details,
            None,
        )


class LocalServer:
    """The unary handlers of one server, called in the process."""

    def __init__(self, handlers: Sequence[Any]) -> None:
        self._handlers = tuple(handlers)
        self._methods: dict[str, Any] = {}

    def _method(self, path: str) -> Any:
        method = self._methods.get(path)
        if method is None:
            for handler in self._handlers:
                method = handler.service(_Details(path, ()))
                if method is not None:
                    break
            self._methods[path] = method
        return method

    async def unary(
        self, path: str, request: bytes, metadata: Sequence[tuple[str, str]], timeout: float
    ) -> bytes:
        """Call the unary method at `path` with the request's bytes; the response's bytes."""
        method = self._method(path)
        context = _Context(metadata)
        if method is None or method.unary_unary is None:
            context._code, context._details = grpc.StatusCode.UNIMPLEMENTED, "Method not found!"
            raise context.error()
        try:
            response = await within(method.unary_unary(request, context), timeout)
        except grpc.aio.AbortError:
            raise context.error() from None
        except asyncio.TimeoutError:
            context._code, context._details = grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
            raise context.error() from None
        except Exception as exc:
            context._code, context._details = grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}"
            raise context.error() from None
        if method.response_serializer is not None:
            data: bytes = method.response_serializer(response)
            return data
        assert isinstance(response, bytes)
        return response


def serve_locally(target: str, handlers: Sequence[Any]) -> None:
    """Let clients of this process that dial `target` call `handlers` directly."""
    _SERVERS[target] = LocalServer(handlers)


def stop_serving_locally(target: str) -> None:
    _SERVERS.pop(target, None)


def local_server(target: str) -> LocalServer | None:
    """The handlers served in this process at `target`, if any."""
    return _SERVERS.get(target)
