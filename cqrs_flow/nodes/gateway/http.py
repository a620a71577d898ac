"""The gateway's HTTP side (aiohttp): GraphQL over POST and over WebSocket on `/` and
`/graphql`, the playground page, `/health`.

Every request gets a request id: the X-Request-Id header of the answer, `extensions.request_id`
of each error, and the log lines about it. Requests over the topology's `limits` are answered
with a GraphQL error before anything runs (limits.py); failures the client cannot act on are
logged in full and answered only with the request id. Browsers on the origins of cors.origins
may call it.

No cross-site request runs an operation. A POST body is read only as `application/json` (UTF-8;
a charset parameter may say so): anything else, such as the text/plain, form and multipart
bodies a page of any origin may send without asking first, is answered 415 before its body is
read. A JSON body from another origin needs a CORS preflight, which only the origins of
cors.origins pass. GET never runs a mutation: `GET /graphql?query=...` runs a query (as
GraphQL-over-HTTP clients send one), through the same limits as a POST, and answers a mutation
(decided on the parsed document, for the operation operationName selects) 405 with
`Allow: POST`, running nothing. A query changes nothing, and a page of another origin cannot
read its answer (CORS). The playground page is the answer to a GET without a query that asks
for `text/html`.

GraphQL over HTTP as clients speak it: an `Accept` preferring
`application/graphql-response+json` gets that media type, and a request error (a document
that does not parse or validate, no operation to run) answered 400 without `data`;
`application/json` is answered as before (200). A subscription is served over WebSocket only:
over HTTP it is refused (400, SUBSCRIPTION_OVER_HTTP), never answered with null. Automatic
persisted queries (a hash without the query text) are not kept: the answer is Apollo's
PersistedQueryNotSupported error (200), on which its clients send the text. A batch (a JSON
array of operations) is refused (400, BATCHING_NOT_SUPPORTED): the limits count per operation,
and a batch would multiply them.

A client has limits.read_timeout to send a request's headers (the server's keep-alive timeout,
set in service.py, which also closes idle connections) and as long again for its body; then
its connection is closed, or its request answered 408. A client that goes away while sending
its body is one warning line.

Every answer says what a browser may do with it: no framing (X-Frame-Options, CSP
frame-ancestors), no sniffing of its type, no scripts or anything else loaded from it, except
on the playground page, whose policy admits its own scripts (/playground/static on the same
origin, and its inline script by hash). The Server header names no library or version.

A request must name one of the gateway's hosts in its Host header (else 421): its listen
address, localhost, any IP address, or a name of the topology's `hosts`. A page whose DNS name
was rebound to the gateway's address sends its own name, so it cannot read the answers; an IP
address names no DNS record to rebind, so every IP address is accepted (a gateway on 0.0.0.0
answers on each of its addresses; names need `hosts`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import ipaddress
import json
import logging
import random
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web, web_response

from cqrs_flow.nodes.gateway.auth import UNAUTHENTICATED, GatewayAuth, bearer
from cqrs_flow.nodes.gateway.consistency import AFTER_COMMAND, AFTER_POSITION
from cqrs_flow.nodes.gateway.limits import RequestGate, caller_of
from cqrs_flow.nodes.gateway.refusals import (
    REQUEST_ID,
    Refused,
    http_answer,
    internal,
    with_request_id,
)
from cqrs_flow.nodes.gateway.websocket import serve_websocket
from cqrs_flow.topology.model import GatewayNode, Limits
from cqrs_flow.transport.deadline import within

__all__ = [
    "GRAPHQL_RESPONSE",
    "REQUEST_ID_HEADER",
    "GraphQLHttp",
    "answer_type",
    "get_refusal",
    "host_name",
    "own_hosts",
    "playground_page",
    "wants_html",
]

PLAYGROUND = Path(__file__).resolve().parent / "playground"
REQUEST_ID_HEADER = "X-Request-Id"
# A client may name its request (to find it in the log); anything else gets a fresh id.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
SERVER = "cqrs-flow"  # the Server header: no library, no version
# Host and Accept headers remembered with what they mean, at most (a client sends the same ones
# every time; the headers are the client's to say, so the memory is bounded).
HEADERS_REMEMBERED = 64
# What a browser may do with an answer that is not the playground: nothing but show it.
POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_HEADERS = {
    "Server": SERVER,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
GRAPHQL_RESPONSE = "application/graphql-response+json"  # GraphQL over HTTP's own media type
JSON = "application/json"


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
        auth: GatewayAuth | None = None,
    ) -> None:
        self.node = node
        self.auth = auth or GatewayAuth()  # who calls (auth.py); none: anonymous, no rules
        self.engine = engine
        self.gate = gate
        self.playground = playground
        self.broker_connected = broker_connected
        self.log = log
        self.trusted_proxies = tuple(ipaddress.ip_network(p) for p in node.trusted_proxies)
        self.hosts = own_hosts(node)
        self.playground_policy = playground_policy(playground) if playground else POLICY

    def app(self) -> web.Application:
        # aiohttp answers a request it cannot parse itself, past middlewares and signals, with
        # a Server header naming itself and Python with their versions: its default is the one
        # place that answer can be changed.
        web_response.SERVER_SOFTWARE = SERVER
        app = web.Application(client_max_size=self.node.limits.body_bytes, middlewares=[self._edge])
        app.on_response_prepare.append(_stamp)
        app.router.add_get("/", self._get)
        app.router.add_post("/", self._post)
        app.router.add_get("/graphql", self._get)
        app.router.add_post("/graphql", self._post)
        app.router.add_get("/health", self._health)
        if self.playground is not None:
            app.router.add_static("/playground/static/", PLAYGROUND / "static")
        return app

    @web.middleware
    async def _edge(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Give each request its id; answer CORS preflights; answer refusals (the one place
        HTTP does); never let a failure out as a trace."""
        request_id = request.headers.get(REQUEST_ID_HEADER, "")
        if not _CLIENT_REQUEST_ID.fullmatch(request_id):
            request_id = f"{random.getrandbits(64):016x}"  # 16 hex digits, as unique as uuid4's
        REQUEST_ID.set(request_id)  # the handler runs in this task: it reads it from there
        origin = request.headers.get("Origin")
        allowed = origin is not None and self._origin_allowed(origin)
        try:
            host = request.headers.get("Host")
            if host is not None and not self._host_allowed(host):
                allowed = False
                raise Refused(
                    f"this gateway does not answer for the host {host[:100]!r}: it answers for "
                    "its listen address, localhost, IP addresses and the names of its `hosts`",
                    "HOST_NOT_ALLOWED",
                    status=421,
                )
            if request.method == "OPTIONS" and allowed and request.path in ("/", "/graphql"):
                response: web.StreamResponse = web.Response(
                    status=204,
                    headers={
                        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                        "Access-Control-Allow-Headers": (
                            f"Authorization, Content-Type, {REQUEST_ID_HEADER}, "
                            f"{AFTER_COMMAND}, {AFTER_POSITION}"
                        ),
                        "Access-Control-Max-Age": "600",
                    },
                )
            else:
                response = await handler(request)
        except Refused as refused:
            response = http_answer(refused, request_id, answer_type(request.headers.get("Accept")))
            if refused.code == UNAUTHENTICATED:
                response.headers["WWW-Authenticate"] = 'Bearer realm="graphql"'
        except web.HTTPException as exc:  # aiohttp's own answers: 404, 405, ...
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        except Exception:
            self.log.exception("request %s: %s %s failed", request_id, request.method, request.path)
            response = http_answer(
                internal(request_id), request_id, answer_type(request.headers.get("Accept"))
            )
        if not response.prepared:  # a WebSocket answer went out already, with its own headers
            response.headers[REQUEST_ID_HEADER] = request_id
            if allowed and origin is not None:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = REQUEST_ID_HEADER
                response.headers["Vary"] = "Origin"
        return response

    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.node.cors_origins or origin in self.node.cors_origins

    def _host_allowed(self, host: str) -> bool:
        """Whether a Host header (or an origin's host[:port]) names one of the gateway's hosts:
        an IP address, or a name of `self.hosts`."""
        return _names_a_host(host, self.hosts)

    def _own_origin(self, origin: str, host: str) -> bool:
        """Whether a page on `origin` is one of the gateway's own: on one of its hosts, at the
        host:port the request was sent to (another port is another site)."""
        authority = origin.partition("://")[2].lower()
        return authority == host.lower() and self._host_allowed(authority)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "broker": self.broker_connected()})

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            # Browsers do not apply CORS to WebSockets: refuse pages from other origins here.
            origin = request.headers.get("Origin")
            if (
                origin is not None
                and not self._own_origin(origin, request.headers.get("Host", ""))
                and not self._origin_allowed(origin)
            ):
                raise Refused(
                    f"WebSocket from origin {origin[:100]!r} refused: not listed in "
                    "the gateway's cors.origins",
                    "ORIGIN_REFUSED",
                    status=403,
                )
            caller = self._address(request)  # the token comes in connection_init
            # refused before the upgrade: an HTTP answer fits
            with self.gate.connected(caller) as place:
                return await serve_websocket(
                    request, self.engine, self.gate, REQUEST_ID.get(), place, self.auth
                )
        if "query" not in request.query and "extensions" not in request.query:
            if self.playground is not None and wants_html(request.headers.get("Accept")):
                return web.Response(
                    text=self.playground,
                    content_type="text/html",
                    headers={"Content-Security-Policy": self.playground_policy},
                )
            raise Refused(
                'a GET runs a query given as its "query" parameter: /graphql?query={...}'
                "&variables={...}; or send a POST with Content-Type: application/json"
            )
        caller = await self._caller(request)
        self.gate.pace(caller)
        query, variables, operation = _operation_of(_get_parameters(request.query))
        return await self._run(request, caller, query, variables, operation, "GET")

    def _address(self, request: web.Request) -> str:
        """The client's address (see caller_of)."""
        forwarded = request.headers.get("X-Forwarded-For")
        return caller_of(request.remote, forwarded, self.trusted_proxies)

    async def _caller(self, request: web.Request) -> str:
        """Who calls (its token verified, auth.py), and the key per-caller limits count by."""
        token = bearer(request.headers.get("Authorization")) if self.auth.enabled else None
        return await self.auth.identify(token, self._address(request), self.gate)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        caller = await self._caller(request)
        self.gate.pace(caller)  # before the body is even read
        _check_json_body(request.headers.get("Content-Type"))
        body = await _read_body(request, self.node.limits, self.log)
        query, variables, operation = _operation_of(body)
        return await self._run(request, caller, query, variables, operation, "POST")

    async def _run(
        self,
        request: web.Request,
        caller: str,
        query: str,
        variables: dict[str, Any] | None,
        operation: str | None,
        method: str,
    ) -> web.Response:
        """Run one operation within the gate's limits and answer it in the media type the
        client asked for; what may not run over `method` is refused before anything runs."""
        cost = self.gate.check(query, variables, operation)
        # Decided on the parsed document, for the operation operationName selects: None when
        # it does not validate or names no operation it has (the engine then runs nothing and
        # answers what is wrong).
        kind = self.gate.operation_type(query, operation)
        refusal = get_refusal(method, kind, decided=self.gate.costs is not None)
        if refusal is not None:
            raise refusal
        self.auth.authorize(self.gate, query, operation, variables)  # the caller's role
        # Counted in flight from here: a client sending its body slowly holds a connection,
        # not a place.
        result = await self.gate.run(
            caller,
            cost,
            lambda: self.engine.execute(
                query, operation_name=operation, variables=variables, context={"request": request}
            ),
        )
        media_type = answer_type(request.headers.get("Accept"))
        status = 200
        if media_type == GRAPHQL_RESPONSE and kind is None and result.get("data") is None:
            # A request error (nothing ran): no `data` at all, and 400 (GraphQL over HTTP).
            result = {key: value for key, value in result.items() if key != "data"}
            status = 400
        body = json.dumps(with_request_id(result, REQUEST_ID.get()))
        self.gate.check_answer(body)
        return web.Response(text=body, status=status, content_type=media_type)


def get_refusal(method: str, kind: str | None, decided: bool = True) -> Refused | None:
    """Why an operation of `kind` (query, mutation, subscription; None: the document does not
    validate or names no such operation) may not run over HTTP `method`, or None when it may.
    `decided`: whether `kind` was read from the parsed document (else a GET runs nothing)."""
    if kind == "subscription":
        return Refused(
            "subscriptions are served over WebSocket only (graphql-transport-ws): connect to "
            "ws://<gateway>/graphql; over HTTP a subscription would have no stream to answer on",
            "SUBSCRIPTION_OVER_HTTP",
        )
    if method == "GET" and (kind == "mutation" or (kind is None and not decided)):
        return Refused(
            "a mutation is never run over GET (a link or an image of any web page can send "
            "one): send it as a POST with Content-Type: application/json",
            "METHOD_NOT_ALLOWED",
            status=405,
            allow="POST",
        )
    return None


def _media_ranges(accept: str | None) -> dict[str, float]:
    """The media ranges of an Accept header with their weights (q)."""
    ranges: dict[str, float] = {}
    for item in (accept or "").split(","):
        media, *parameters = item.split(";")
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        media = media.strip().lower()
        if media:
            ranges[media] = max(weight, ranges.get(media, 0.0))
    return ranges


@lru_cache(maxsize=HEADERS_REMEMBERED)
def answer_type(accept: str | None) -> str:
    """The media type of a GraphQL answer for an Accept header: application/graphql-response+json
    when the client asks for it at least as much as for application/json, else
    application/json (as for a client that names neither, or none)."""
    ranges = _media_ranges(accept)
    wanted = ranges.get(GRAPHQL_RESPONSE, 0.0)
    if wanted > 0 and wanted >= ranges.get(JSON, 0.0):
        return GRAPHQL_RESPONSE
    return JSON


def wants_html(accept: str | None) -> bool:
    """Whether a client asks for text/html by name (a browser does; GraphQL clients do not)."""
    return _media_ranges(accept).get("text/html", 0.0) > 0


def _check_json_body(content_type: str | None) -> None:
    """Refuse (415) a POST whose Content-Type is not application/json in UTF-8: a browser sends
    a body of any other type (text/plain, a form) from any page without asking first."""
    media, _, parameters = (content_type or "").partition(";")
    if media.strip().lower() != "application/json":
        sent = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
        raise Refused(
            f"the request body must be JSON, sent with Content-Type: application/json ({sent} "
            'was sent): {"query": "...", "variables": {...}}',
            "UNSUPPORTED_MEDIA_TYPE",
            status=415,
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise Refused(
                f"the request body must be UTF-8 (charset {charset[:40]!r} was sent)",
                "UNSUPPORTED_MEDIA_TYPE",
                status=415,
            )


async def _read_body(request: web.Request, limits: Limits, log: logging.Logger) -> dict[str, Any]:
    """The JSON object of a POST's body; Refused saying what is wrong."""
    try:
        if request.content.is_eof():  # the whole body came with the headers: nothing to wait for
            raw = await request.read()
        else:
            raw = await within(request.read(), limits.read_timeout)
    except web.HTTPRequestEntityTooLarge:
        raise Refused(
            f"request body is larger than {limits.body_bytes} bytes (limits.body_bytes)",
            "PAYLOAD_TOO_LARGE",
            status=413,
        ) from None
    except asyncio.TimeoutError:
        log.warning(
            "request %s: body not received within %gs (limits.read_timeout)",
            REQUEST_ID.get(),
            limits.read_timeout,
        )
        raise Refused(
            f"the request body did not arrive within {limits.read_timeout:g}s "
            "(limits.read_timeout)",
            "REQUEST_TIMEOUT",
            status=408,
        ) from None
    except (ConnectionError, web.RequestPayloadError) as exc:
        # The client went away or broke off its body: nobody to answer, nothing to debug.
        log.warning("request %s: body cut off (%s)", REQUEST_ID.get(), exc or type(exc).__name__)
        raise Refused("the request body was cut off", "BAD_REQUEST") from None
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise Refused("request body is not valid JSON") from None
    except RecursionError:  # JSON nested thousands deep: nothing a query needs
        raise Refused("request body is JSON nested too deeply") from None
    if isinstance(body, list):
        raise Refused(
            "batched requests (a JSON array of operations) are not supported: send each "
            "operation in a request of its own (the gateway's limits count per operation, "
            "and a batch would multiply them)",
            "BATCHING_NOT_SUPPORTED",
        )
    if not isinstance(body, dict):
        raise Refused('request body must be a JSON object like {"query": "..."}')
    return body


def _get_parameters(parameters: Mapping[str, str]) -> dict[str, Any]:
    """The request of a GET's query parameters: `variables` and `extensions` are JSON."""
    request: dict[str, Any] = {
        "query": parameters.get("query"),
        "operationName": parameters.get("operationName") or None,
    }
    for name in ("variables", "extensions"):
        text = parameters.get(name)
        if text:
            try:
                request[name] = json.loads(text)
            except (ValueError, RecursionError):
                raise Refused(f'the "{name}" parameter is not valid JSON') from None
    return request


def _operation_of(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None, str | None]:
    """The query, variables and operation name of a request (a POST's body, a GET's
    parameters); Refused saying what is wrong."""
    query, variables, operation = (
        body.get("query"),
        body.get("variables"),
        body.get("operationName"),
    )
    extensions = body.get("extensions")
    if query is None and isinstance(extensions, dict) and "persistedQuery" in extensions:
        # Apollo's automatic persisted queries: its clients send the text on this error.
        raise Refused("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED", status=200)
    if not isinstance(query, str) or not query.strip():
        raise Refused('request body has no "query" string')
    if variables is not None and not isinstance(variables, dict):
        raise Refused('"variables" must be a JSON object')
    if operation is not None and not isinstance(operation, str):
        raise Refused('"operationName" must be a string')
    return query, variables, operation


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    """The headers of every answer the application prepares (aiohttp's 404 and 405, a
    WebSocket's upgrade included)."""
    response.headers.update(_HEADERS)
    response.headers.setdefault("Content-Security-Policy", POLICY)


def playground_policy(page: str) -> str:
    """The Content-Security-Policy of the playground `page`: its scripts from the gateway's own
    origin and its inline script by hash; styles inline too (GraphiQL adds its own), fonts and
    images from data: URLs; requests to the gateway only."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def own_hosts(node: GatewayNode) -> frozenset[str]:
    """The host names a gateway answers for besides IP addresses: localhost, the name it
    listens on (if a name) and the topology's `hosts`."""
    names = {"localhost", *node.hosts}
    if node.listen.host and not _is_ip_address(node.listen.host):  # a wildcard is an address
        names.add(node.listen.host)
    return frozenset(host_name(name) for name in names)


def host_name(host: str) -> str:
    """The name of a Host header, as compared: 'API.example.com.:8080' -> 'api.example.com',
    '[::1]:8080' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


@lru_cache(maxsize=HEADERS_REMEMBERED)
def _names_a_host(host: str, hosts: frozenset[str]) -> bool:
    """Whether a Host header names one of `hosts` or is an IP address (see _host_allowed)."""
    name = host_name(host)
    return name in hosts or _is_ip_address(name)


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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
