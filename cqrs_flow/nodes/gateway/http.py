"""The gateway's HTTP side (aiohttp): GraphQL over POST and over WebSocket on `/` and
`/graphql`, the playground page, `/health`.

Every request gets a request id: the X-Request-Id header of the answer, `extensions.request_id`
of each error, and the log lines about it. Requests over the topology's `limits` are answered
with a GraphQL error before anything runs (limits.py); failures the client cannot act on are
logged in full and answered only with the request id. Browsers on the origins of cors.origins
may call it.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from cqrs_flow.nodes.gateway.limits import (
    Busy,
    LimitExceeded,
    OperationTimeout,
    RequestGate,
    TooManyRequests,
    caller_of,
    too_large,
)
from cqrs_flow.nodes.gateway.refusals import (
    REQUEST_ID,
    RequestFailed,
    internal_error,
    with_request_id,
)
from cqrs_flow.nodes.gateway.websocket import serve_websocket
from cqrs_flow.topology.model import GatewayNode

__all__ = ["REQUEST_ID_HEADER", "GraphQLHttp", "playground_page"]

PLAYGROUND = Path(__file__).resolve().parent / "playground"
REQUEST_ID_HEADER = "X-Request-Id"
# A client may name its request (to find it in the log); anything else gets a fresh id.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_TIMEOUT = getattr(asyncio, "timeout", None)  # Python 3.11+


class GraphQLHttp:
    """The aiohttp application of one gateway, answering with `engine` within `gate`'s limits;
    `playground` is the page GET answers with (None: GET asks for POST)."""

    def __init__(
        self,
        node: GatewayNode,
        engine: Any,
        gate: RequestGate,
        playground: str | None,
        broker_connected: Callable[[], bool],
        log: logging.Logger,
    ) -> None:
        self.node = node
        self.engine = engine
        self.gate = gate
        self.playground = playground
        self.broker_connected = broker_connected
        self.log = log
        self.trusted_proxies = tuple(ipaddress.ip_network(p) for p in node.trusted_proxies)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.node.limits.body_bytes, middlewares=[self._edge])
        app.router.add_get("/", self._get)
        app.router.add_post("/", self._post)
        app.router.add_get("/graphql", self._get)
        app.router.add_post("/graphql", self._post)
        app.router.add_get("/health", self._health)
        if self.playground is not None:
            app.router.add_static("/playground/static/", PLAYGROUND / "static")
        return app

    async def _execute(
        self,
        query: str,
        operation: str | None,
        variables: Any,
        context: dict[str, Any],
        caller: str,
        cost: int,
    ) -> dict[str, Any]:
        """Run a query or mutation in its caller's share (RequestGate.share) within
        limits.timeout, waiting for its turn included; OperationTimeout when it takes longer."""
        timeout = self.node.limits.timeout

        async def run() -> dict[str, Any]:
            async with self.gate.share(caller, cost):
                result: dict[str, Any] = await self.engine.execute(
                    query, operation_name=operation, variables=variables, context=context
                )
                return result

        try:
            if _TIMEOUT is None:  # Python 3.10: wait_for, which runs it in a task of its own
                return await asyncio.wait_for(run(), timeout)
            async with _TIMEOUT(timeout):  # in this task: no extra step through the loop
                return await run()
        except asyncio.TimeoutError:
            self.log.warning(
                "request %s: cut off after %gs (limits.timeout)", REQUEST_ID.get(), timeout
            )
            raise OperationTimeout(
                f"the operation took longer than {timeout:g}s and was cut off (limits.timeout)"
            ) from None

    @web.middleware
    async def _edge(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Give each request its id; answer CORS preflights; never let a failure out as a trace."""
        request_id = request.headers.get(REQUEST_ID_HEADER, "")
        if not _CLIENT_REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex[:16]
        request["request_id"] = request_id
        REQUEST_ID.set(request_id)
        origin = request.headers.get("Origin")
        allowed = origin is not None and self._origin_allowed(origin)
        try:
            if request.method == "OPTIONS" and allowed and request.path in ("/", "/graphql"):
                response: web.StreamResponse = web.Response(
                    status=204,
                    headers={
                        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                        "Access-Control-Allow-Headers": f"Content-Type, {REQUEST_ID_HEADER}",
                        "Access-Control-Max-Age": "600",
                    },
                )
            else:
                response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own answers: 404, 405, ...
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        except Exception:
            self.log.exception("request %s: %s %s failed", request_id, request.method, request.path)
            response = _graphql_error(internal_error(request_id), 500, request_id)
        if not response.prepared:  # a WebSocket answer went out already, with its own headers
            response.headers[REQUEST_ID_HEADER] = request_id
            if allowed and origin is not None:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = REQUEST_ID_HEADER
                response.headers["Vary"] = "Origin"
        return response

    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.node.cors_origins or origin in self.node.cors_origins

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "broker": self.broker_connected()})

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            # Browsers do not apply CORS to WebSockets: refuse pages from other origins here.
            origin = request.headers.get("Origin")
            if (
                origin is not None
                and not _same_origin(origin, request.host)
                and not self._origin_allowed(origin)
            ):
                return _graphql_error(
                    f"WebSocket from origin {origin[:100]!r} refused: not listed in "
                    "the gateway's cors.origins",
                    403,
                    request["request_id"],
                )
            try:
                with self.gate.connected():
                    return await serve_websocket(
                        request,
                        self.engine,
                        {"request": request},
                        self.gate,
                        request["request_id"],
                        self._caller(request),
                        self._execute,
                    )
            except Busy as exc:  # raised before the upgrade: an HTTP answer still fits
                return _graphql_error(str(exc), 503, request["request_id"])
        if self.playground is not None:
            return web.Response(text=self.playground, content_type="text/html")
        return _graphql_error(
            "send GraphQL requests as POST with a JSON body", 405, request["request_id"]
        )

    def _caller(self, request: web.Request) -> str:
        """The key per-caller limits count by: the client's address (see caller_of)."""
        forwarded = request.headers.get("X-Forwarded-For")
        return caller_of(request.remote, forwarded, self.trusted_proxies)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        request_id = request["request_id"]
        caller = self._caller(request)
        try:
            self.gate.pace(caller)  # before the body is even read
            query, variables, operation = await _read_request(request)
            cost = self.gate.check(query, variables, operation)
        except TooManyRequests as exc:
            return _too_many(exc, request_id)
        except (RequestFailed, LimitExceeded) as exc:
            return _graphql_error(str(exc), 400, request_id)
        except web.HTTPRequestEntityTooLarge:
            return _graphql_error(
                f"request body is larger than {self.node.limits.body_bytes} bytes "
                "(limits.body_bytes)",
                413,
                request_id,
            )
        try:
            # Counted from here: a client sending its body slowly holds a connection, not a place.
            with self.gate.admitted(caller):
                result = await self._execute(
                    query, operation, variables, {"request": request}, caller, cost
                )
        except TooManyRequests as exc:  # this caller's places are taken: the others' are not
            return _too_many(exc, request_id)
        except OperationTimeout as exc:
            return _graphql_error(str(exc), 504, request_id)
        except LimitExceeded as exc:  # Busy: refused at once, so callers back off, not pile up
            return _graphql_error(str(exc), 503, request_id)
        body = json.dumps(with_request_id(result, request_id))
        if len(body) > self.node.limits.response_bytes:  # ASCII (json.dumps escapes the rest)
            self.log.warning(
                "request %s: answer of %d bytes refused (limits.response_bytes)",
                request_id,
                len(body),
            )
            return _graphql_error(too_large(self.node.limits.response_bytes), 400, request_id)
        return web.Response(text=body, content_type="application/json")


async def _read_request(request: web.Request) -> tuple[str, dict[str, Any] | None, str | None]:
    """The query, variables and operation name of a POST, or RequestFailed saying what is wrong."""
    raw = await request.read()
    if request.content_type == "application/graphql":
        try:
            return raw.decode("utf-8"), None, None
        except UnicodeDecodeError:
            raise RequestFailed("request body is not UTF-8 text") from None
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise RequestFailed("request body is not valid JSON") from None
    except RecursionError:  # JSON nested thousands deep: nothing a query needs
        raise RequestFailed("request body is JSON nested too deeply") from None
    if not isinstance(body, dict):
        raise RequestFailed('request body must be a JSON object like {"query": "..."}')
    query, variables, operation = (
        body.get("query"),
        body.get("variables"),
        body.get("operationName"),
    )
    if not isinstance(query, str) or not query.strip():
        raise RequestFailed('request body has no "query" string')
    if variables is not None and not isinstance(variables, dict):
        raise RequestFailed('"variables" must be a JSON object')
    if operation is not None and not isinstance(operation, str):
        raise RequestFailed('"operationName" must be a string')
    return query, variables, operation


def _graphql_error(message: str, status: int, request_id: str) -> web.Response:
    return web.json_response(
        with_request_id({"data": None, "errors": [{"message": message}]}, request_id), status=status
    )


def _too_many(exc: TooManyRequests, request_id: str) -> web.Response:
    response = _graphql_error(str(exc), 429, request_id)
    response.headers["Retry-After"] = exc.retry_after_header
    return response


def _same_origin(origin: str, host: str) -> bool:
    """Whether a browser page on `origin` is on the gateway's own host:port."""
    return origin.partition("://")[2] == host


def playground_page(title: str, default_query: str) -> str:
    query = (
        json.dumps(default_query)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    page = (PLAYGROUND / "index.html").read_text(encoding="utf-8")
    return page.replace("{{TITLE}}", html.escape(f"{title} · GraphQL playground")).replace(
        "{{DEFAULT_QUERY_JSON}}", query
    )
