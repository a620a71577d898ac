"""The gateway: GraphQL over HTTP (tartiflette on aiohttp) and the playground page.

Mutations become commands published on MQTT and are answered at once; queries go to the
reader over gRPC and are answered with what it returns.

Every request gets a request id: the X-Request-Id header of the answer, `extensions.request_id`
of each error, and the log lines about it. Requests over the topology's `limits` are answered
with a GraphQL error before anything runs (cqrs_flow.nodes.gateway.limits); failures the client cannot
act on are logged in full and answered only with the request id.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from tartiflette import Resolver, Subscription, TartifletteError, create_engine

from cqrs_flow.contracts.gateway import Call, GatewayPlan, MutationPlan, QueryPlan, gateway_plan
from cqrs_flow.contracts.ordering import CommandClock
from cqrs_flow.contracts.status import writer_online
from cqrs_flow.errors import NodeError, TopologyError
from cqrs_flow.nodes.gateway.commands import STATUS_SDL, SUBSCRIPTION_SDL, CommandBook
from cqrs_flow.nodes.gateway.cost import Costs
from cqrs_flow.nodes.gateway.limits import (
    Busy,
    LimitExceeded,
    OperationTimeout,
    RequestGate,
    TooManyRequests,
    caller_of,
    too_large,
)
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.websocket import serve_websocket, with_request_id
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.plugins import PluginContext, Rejected, start_plugins, stop_plugins
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.protobuf.messages import get_path, set_path
from cqrs_flow.security.mqtt_logins import login_from_env
from cqrs_flow.stores.journal import JournalError
from cqrs_flow.topology.model import BrokerNode, GatewayNode, ReaderNode
from cqrs_flow.topology.problems import Problems
from cqrs_flow.transport.mqtt import connect, new_client
from cqrs_flow.transport.rpc import UNAVAILABLE_PEER, ServiceClient
from cqrs_flow.transport.tls import channel_security, mqtt_client_context

__all__ = ["GatewayService"]

PLAYGROUND = Path(__file__).resolve().parent / "playground"
REQUEST_ID_HEADER = "X-Request-Id"
# A client may name its request (to find it in the log); anything else gets a fresh id.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The id of the request being answered: tartiflette runs resolvers in tasks that inherit it.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
GENERATORS = {"uuid": lambda: str(uuid.uuid4())}
_TIMEOUT = getattr(asyncio, "timeout", None)  # Python 3.11+
_CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}


class RequestFailed(Exception):
    """A failure the client is told about in plain words (no internals)."""


class GatewayService(NodeService):
    node: GatewayNode

    async def start(self) -> None:
        report = Problems(self.topology.located)
        plan = gateway_plan(self.topology, self.node, self.protos, report)
        if report.problems or plan is None:
            raise TopologyError(report.problems, str(self.topology.source))
        reader = self.topology.nodes[self.node.reader]
        broker = self.topology.nodes[self.node.broker]
        assert isinstance(reader, ReaderNode) and isinstance(broker, BrokerNode)
        self.reader = ServiceClient(
            self.protos,
            self.protos.service(reader.service),
            reader.listen.target,
            self.credentials,
            timeout=self.node.reader_timeout,
            security=channel_security(self.topology, reader.tls, self.node.client_tls),
        )
        self.plugins = await start_plugins(
            self.node, PluginContext(self.topology, self.node, self.protos, self.log)
        )
        self.book = CommandBook()
        self.clock = CommandClock()  # command ids in the order this gateway accepts commands
        self.outbox = await self._outbox()
        self.spawn(self.outbox.wait_failure(), "outbox")
        self.mqtt = new_client(
            self.topology.name,
            self.node.name,
            broker,
            persistent=False,
            login=login_from_env(self.topology, self.node.name),
        )
        self.republish = asyncio.Event()  # set: publish what is due now, not at the next tick
        self.connects = 0
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_status
        await connect(self.mqtt, broker, tls=mqtt_client_context(self.topology, broker))
        self.spawn(self._redeliver(), "redeliver")
        self.engine = await self._engine(plan)
        self.playground = _playground_page(self.topology.name, plan.schema.example_query())
        self.list_count = self.topology.list_count(self.node)
        self.gate = RequestGate(
            self.node.limits,
            self.node.introspection,
            Costs(self.engine._schema, self._parsed, self.list_count),
        )
        self.trusted_proxies = tuple(ipaddress.ip_network(p) for p in self.node.trusted_proxies)

        app = web.Application(client_max_size=self.node.limits.body_bytes, middlewares=[self._edge])
        app.router.add_get("/", self._get)
        app.router.add_post("/", self._post)
        app.router.add_get("/graphql", self._get)
        app.router.add_post("/graphql", self._post)
        app.router.add_get("/health", self._health)
        if self.node.playground:
            app.router.add_static("/playground/static/", PLAYGROUND / "static")
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.node.listen.host, self.node.listen.port)
        try:
            await site.start()
        except OSError as exc:
            raise NodeError(
                f"HTTP server cannot listen on {self.node.listen}: {exc.strerror or exc}"
            ) from None
        self.log.info(
            "GraphQL on %s (reader %s, broker %s)", self.node.url, reader.listen, broker.address
        )

    async def _outbox(self) -> Outbox:
        redeliver_after = self.topology.redeliver_after(self.node)
        if self.node.data is None:
            return Outbox(redeliver_after)
        try:
            return await Outbox.open(
                self.topology.root / self.node.data,
                redeliver_after,
                now=asyncio.get_running_loop().time(),
            )
        except JournalError as exc:
            raise NodeError(str(exc)) from None

    async def stop(self) -> None:
        # HTTP first so no request arrives with its backends gone, then the backends.
        if hasattr(self, "runner"):
            await self.runner.cleanup()
        if hasattr(self, "mqtt") and self.mqtt.is_connected:
            await self.mqtt.disconnect()
        if hasattr(self, "outbox"):
            await self.outbox.close()
        if hasattr(self, "reader"):
            await self.reader.close()
        await stop_plugins(getattr(self, "plugins", []), self.log)

    def _on_connect(self, client, *_) -> None:
        client.subscribe(self.topology.status_topic, qos=1)
        self.connects += 1
        if self.connects > 1:  # a broker that restarted has lost the commands it held
            self._due_now(None, "the gateway reconnected to the broker")

    def _on_status(self, client, topic: str, payload: bytes, qos: int, properties) -> int:
        if topic != self.topology.status_topic:
            return 0
        settled = self.book.heard(payload)
        if settled is not None:
            self.outbox.settle(settled)
        elif (online := writer_online(payload)) is not None:
            writer, topics = online
            self._due_now(topics, f"writer '{writer[:100]}' is online")
        else:
            self.log.warning("ignored a status message that is not one (%d bytes)", len(payload))
        return 0

    def _due_now(self, topics: list[str] | None, why: str) -> None:
        """Publish again at once the commands on `topics` (all with None) not reported on yet: a
        writer that was restarted lost what it held, a broker that was, what it queued. The
        store applies each command once, so those that were not lost change nothing."""
        count = self.outbox.due_now(asyncio.get_running_loop().time(), topics)
        if count:
            self.log.info("%s: publishing the %d command(s) not reported on again", why, count)
            self.republish.set()

    async def _redeliver(self) -> None:
        """Publish again the commands no writer has reported on within redeliver_after, and
        those _due_now made due."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self.republish.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            woken = self.republish.is_set()
            self.republish.clear()
            if not self.mqtt.is_connected:
                continue
            due = self.outbox.due(loop.time())
            for _, topic, payload in due:
                self.mqtt.publish(topic, payload, qos=1)
            if due and woken:
                self.log.info("published %d command(s) again", len(due))
            elif due:
                self.log.warning(
                    "published %d command(s) again: no writer reported on them within %gs",
                    len(due),
                    self.outbox.redeliver_after,
                )

    # -- GraphQL ------------------------------------------------------------------------------

    async def _engine(self, plan: GatewayPlan):
        schema_name = f"cqrs-flow:{self.topology.name}:{self.node.name}"
        sdl = plan.schema.text
        if "commandStatus" not in plan.schema.queries:
            sdl += STATUS_SDL.format(query_type=plan.schema.query_type)
            Resolver(f"{plan.schema.query_type}.commandStatus", schema_name=schema_name)(
                self._command_status
            )
            subscription = plan.schema.subscription_type
            if subscription is not None:
                keyword = "extend" if subscription in plan.schema.object_fields else ""
                sdl += SUBSCRIPTION_SDL.format(keyword=keyword, subscription_type=subscription)
                Subscription(f"{subscription}.commandSettled", schema_name=schema_name)(
                    self._command_settled
                )
        for name, query in plan.queries.items():
            Resolver(f"{plan.schema.query_type}.{name}", schema_name=schema_name)(
                self._query_resolver(query)
            )
        for name, mutation in plan.mutations.items():
            Resolver(f"{plan.schema.mutation_type}.{name}", schema_name=schema_name)(
                self._mutation_resolver(mutation)
            )
        return await create_engine(sdl, schema_name=schema_name, error_coercer=self._coerce_error)

    def _parsed(self, query: str) -> Any:
        """The engine's parse of a query (cached by the engine, so the execution that follows
        does not parse it again), or None when it does not parse or validate."""
        document, _ = self.engine._cached_parse_and_validate_query(query, self.engine._schema)
        return document

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
                return await self.engine.execute(
                    query, operation_name=operation, variables=variables, context=context
                )

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

    async def _command_status(self, parent: Any, args: dict[str, Any], ctx: Any, info: Any):
        return self.book.get(args["id"])

    async def _command_settled(self, parent: Any, args: dict[str, Any], ctx: Any, info: Any):
        yield {"commandSettled": await self.book.settled(args["id"])}

    async def _coerce_error(self, exception: Exception, error: dict[str, Any]) -> dict[str, Any]:
        """Clients see the message of failures we expect; anything else is logged, not leaked."""
        original = getattr(exception, "original_error", None)
        if original is None or isinstance(original, (RequestFailed, TartifletteError)):
            return error  # tartiflette's own errors (syntax, validation, coercion) and ours
        request_id = REQUEST_ID.get()
        self.log.error("request %s: internal error: %r", request_id, original, exc_info=original)
        return {
            **error,
            "message": f"internal error (request {request_id}; details are in the gateway log)",
        }

    async def _ask(self, call: Call, args: dict[str, Any]):
        request = _build(call.request, call.arguments, args)
        try:
            return await self.reader.call(call.rpc, request)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise
            if code in _CLIENT_ERRORS:  # meant for the client (a plugin's Rejected, a bad argument)
                raise RequestFailed(exc.details() or code.name.lower().replace("_", " ")) from None
            request_id = REQUEST_ID.get()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self.log.warning(
                    "request %s: reader %s: %s %s", request_id, call.rpc, code.name, exc.details()
                )
                peer = dict(exc.trailing_metadata() or ()).get(UNAVAILABLE_PEER, "reader")
                raise RequestFailed(f"the {peer} is unavailable; try again") from None
            self.log.error(
                "request %s: reader %s failed: %s %s",
                request_id,
                call.rpc,
                code.name,
                exc.details(),
            )
            raise RequestFailed(
                f"internal error (request {request_id}; details are in the gateway log)"
            ) from None

    def _query_resolver(self, plan: QueryPlan):
        converters: dict[
            str, Callable[[Any], dict[str, Any]]
        ] = {}  # message type -> its data_converter

        def data(value: Any) -> Any:
            if not hasattr(value, "DESCRIPTOR"):
                return value
            convert = converters.get(value.DESCRIPTOR.full_name)
            if convert is None:
                convert = converters[value.DESCRIPTOR.full_name] = data_converter(value.DESCRIPTOR)
            return convert(value)

        async def resolve(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
            if plan.many:
                _check_counts(args, self.list_count)
            try:
                response = await self._ask(plan.call, args)
            except grpc.aio.AioRpcError:  # NOT_FOUND: a missing entity is null, not an error
                return [] if plan.many else None
            value = get_path(response, plan.result) if plan.result else response
            if plan.many:
                return [data(v) for v in value]
            return data(value)

        return resolve

    def _mutation_resolver(self, plan: MutationPlan):
        async def resolve(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> dict[str, Any]:
            try:
                command = _build(plan.request, plan.arguments, args)
            except RequestFailed as exc:
                return {"status": "ERROR", "message": str(exc), "id": None}
            for path, generator in plan.generate.items():
                if not get_path(command, path):
                    set_path(command, path, GENERATORS[generator]())
            key = str(get_path(command, plan.key_path)) if plan.key_path else None
            words = {**{k: v for k, v in args.items()}, "entity": plan.entity, "id": key or ""}
            if plan.exists is not None:
                try:
                    await self._ask(plan.exists, args)
                except grpc.aio.AioRpcError:
                    return {
                        "status": "ERROR",
                        "message": plan.not_found.format_map(words),
                        "id": key,
                    }
                except RequestFailed as exc:
                    return {"status": "ERROR", "message": f"nothing was queued: {exc}", "id": key}
            refusal = await self._before_publish(plan, command, args)
            if refusal is not None:
                return {"status": "ERROR", "message": refusal, "id": key}
            if not self.mqtt.is_connected:
                return {
                    "status": "ERROR",
                    "message": "the broker is unavailable; nothing was queued",
                    "id": key,
                }
            command_id = self.clock.next_id()
            if plan.command_id_path:
                if self.outbox.full:
                    return {
                        "status": "ERROR",
                        "id": key,
                        "message": f"{len(self.outbox)} commands are waiting "
                        "for a writer; nothing was queued, try again later",
                    }
                set_path(command, plan.command_id_path, command_id)
            payload = command.SerializeToString()
            if plan.command_id_path:
                try:  # with a data directory: on disk before it is published and answered
                    await self.outbox.add(
                        command_id, plan.topic, payload, asyncio.get_running_loop().time()
                    )
                except JournalError as exc:
                    self.log.error("cannot keep command %s in the outbox: %s", command_id, exc)
                    return {
                        "status": "ERROR",
                        "id": key,
                        "message": "the gateway cannot record commands; nothing was queued",
                    }
                self.book.queued(command_id, plan.command, key)
            self.mqtt.publish(plan.topic, payload, qos=1)
            return {
                "status": "OK",
                "message": plan.message.format_map(words),
                "id": key,
                "command_id": command_id if plan.command_id_path else None,
            }

        return resolve

    async def _before_publish(
        self, plan: MutationPlan, command, args: dict[str, Any]
    ) -> str | None:
        """Run the plugins' checks; the message to answer with if one refuses, else None."""
        for plugin in self.plugins:
            try:
                await plugin.before_publish(plan.field, command, args)
            except Rejected as exc:
                return str(exc)
            except Exception:
                request_id = REQUEST_ID.get()
                self.log.exception(
                    "request %s: plugin '%s' failed on %s", request_id, plugin.name, plan.field
                )
                return f"plugin '{plugin.name}' failed; nothing was queued (request {request_id})"
        return None

    # -- HTTP ---------------------------------------------------------------------------------

    @web.middleware
    async def _edge(self, request: web.Request, handler) -> web.StreamResponse:
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
            response = _graphql_error(
                f"internal error (request {request_id}; details are in the gateway log)",
                500,
                request_id,
            )
        if not response.prepared:  # a WebSocket answer went out already, with its own headers
            response.headers[REQUEST_ID_HEADER] = request_id
            if allowed:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = REQUEST_ID_HEADER
                response.headers["Vary"] = "Origin"
        return response

    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.node.cors_origins or origin in self.node.cors_origins

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "broker": self.mqtt.is_connected})

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
        if self.node.playground:
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
        except (
            LimitExceeded
        ) as exc:  # Busy: refused at once, so callers back off instead of piling up
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


def _check_counts(args: dict[str, Any], cap: int) -> None:
    """A list query's whole-number arguments (its `count`) may not ask for more than `cap`."""
    for name, value in args.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            raise RequestFailed(
                f"argument '{name}' is {value}; a list query returns at most {cap} "
                "(limits.list_count)"
            )


def _build(message_class, arguments: dict[str, str], args: dict[str, Any]):
    """A request message with each GraphQL argument set at its mapped field path."""
    message = message_class()
    for name, path in arguments.items():
        if args.get(name) is not None:
            try:
                set_path(message, path, args[name])
            except (ValueError, TypeError, KeyError, json_format.ParseError) as exc:
                raise RequestFailed(f"argument '{name}' does not fit: {exc}") from None
    return message


def _playground_page(title: str, default_query: str) -> str:
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
