"""What every served gRPC call reports: its count by status code and its latency (metrics), one
access-log event, and a server span continuing the caller's trace (its `traceparent` metadata).

The handler is wrapped once, when the server is set up, with the metrics of the node being set
up (cqrs_flow.telemetry.current): per call, a clock read before and after, one counter and one
histogram; the access event is formatted only when the access log is on, the span made only
when tracing is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from cqrs_flow.telemetry import current, tracing
from cqrs_flow.telemetry.logs import access, access_on

__all__ = ["observed"]

ServedCall = Callable[[Any, Any], Awaitable[Message | bytes]]


def observed(service: str, method: str, handler: ServedCall) -> ServedCall:
    """`handler` (of `service`'s `method`) counted, timed, logged and traced."""
    telemetry = current()
    telemetry.serves(service)  # its server's health service answers for it by name
    metrics = telemetry.metrics
    requests = metrics.grpc_requests
    seconds = metrics.grpc_seconds.labels(service, method)
    ok = requests.labels(service, method, "OK")
    rpc = f"{service}/{method}"

    async def handle(request: Any, context: Any) -> Message | bytes:
        began = time.perf_counter()
        code = "OK"
        try:
            if tracing.enabled():
                with tracing.span(
                    rpc,
                    "SERVER",
                    parent=_traceparent(context),
                    attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
                ):
                    return await handler(request, context)
            return await handler(request, context)
        except asyncio.CancelledError:
            code = "CANCELLED"  # the caller went away, or the server is stopping
            raise
        except BaseException:
            status = context.code() if hasattr(context, "code") else None
            code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
            raise
        finally:
            elapsed = time.perf_counter() - began
            (ok if code == "OK" else requests.labels(service, method, code)).inc()
            seconds.observe(elapsed)
            if access_on():
                access("grpc", {"rpc": rpc}, status=code, duration_ms=round(elapsed * 1000, 3))

    return handle


def _traceparent(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == tracing.TRACEPARENT:
            return str(value)
    return None
