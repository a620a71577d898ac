"""What the gateway reports of its requests: HTTP requests counted and timed by route and
status with one access-log event each (an aiohttp middleware, outside every other), and GraphQL
operations counted and timed by operation name and outcome (`ObservedEngine`, around the
engine). With tracing on, each request is a server span continuing the client's `traceparent`,
and each operation a span inside it: the command a mutation publishes carries that trace on to
the writer."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cqrs_flow.nodes.gateway.http import REQUEST_ID_HEADER
from cqrs_flow.telemetry import Children, Metrics, OperationNames, tracing
from cqrs_flow.telemetry.logs import access, access_on

__all__ = ["ObservedEngine", "observe_http"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNMATCHED = "(unmatched)"  # the route label of a request no route serves (a 404)
# The name of a document's operation when it comes first: `mutation Add($name: String!) {...}`.
_LEADING_OPERATION = re.compile(
    r"(?:[\s,]|#[^\n]*\n)*(?:query|mutation|subscription)[\s,]+([_A-Za-z][_0-9A-Za-z]*)"
)


def _named_in(query: str) -> str | None:
    """The operation's name in the document, when no operationName says it."""
    match = _LEADING_OPERATION.match(query)
    return match.group(1) if match else None


def observe_http(metrics: Metrics) -> Any:
    """The middleware; put it first in the application's list."""
    requests, seconds = Children(metrics.http_requests), Children(metrics.http_seconds)

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        began = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        status, response = 500, None
        try:
            if tracing.enabled():
                with tracing.span(
                    f"{request.method} {route}",
                    "SERVER",
                    parent=request.headers.get(tracing.TRACEPARENT),
                    attributes={"http.request.method": request.method, "http.route": route},
                ):
                    response = await handler(request)
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - began
            requests(request.method, route, str(status)).inc()
            seconds(request.method, route).observe(elapsed)
            if access_on():
                request_id = None if response is None else response.headers.get(REQUEST_ID_HEADER)
                access(
                    "http",
                    {"method": request.method, "path": request.path},
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    request_id=request_id,
                )

    return observe


class ObservedEngine:
    """The tartiflette engine, its operations counted and timed by name and outcome ("ok", or
    "error" when the answer has errors)."""

    def __init__(self, engine: Any, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.names = OperationNames()
        self.operations = Children(metrics.graphql_operations)
        self.seconds = Children(metrics.graphql_seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    async def execute(self, query: str, operation_name: str | None = None, **kwargs: Any) -> Any:
        name = self.names(operation_name or _named_in(query))
        began = time.perf_counter()
        outcome = "error"
        try:
            if tracing.enabled():
                with tracing.span(f"graphql {name}", attributes={"graphql.operation.name": name}):
                    result = await self.engine.execute(
                        query, operation_name=operation_name, **kwargs
                    )
            else:
                result = await self.engine.execute(query, operation_name=operation_name, **kwargs)
            outcome = "error" if isinstance(result, dict) and result.get("errors") else "ok"
            return result
        finally:
            self.operations(name, outcome).inc()
            self.seconds(name).observe(time.perf_counter() - began)
