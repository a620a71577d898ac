"""The gateway: GraphQL over HTTP (tartiflette on aiohttp) and the playground page.

Mutations become commands published on MQTT and are answered at once; queries go to the
reader over gRPC and are answered with what it returns.
"""

from __future__ import annotations

import asyncio
import html
import json
import uuid
from pathlib import Path
from typing import Any, Callable

import grpc
from aiohttp import web
from google.protobuf import json_format
from tartiflette import Resolver, Subscription, TartifletteError, create_engine

from cqrs_flow.errors import NodeError, TopologyError
from cqrs_flow.conversions import data_converter
from cqrs_flow.messages import get_path, set_path
from cqrs_flow.mqtt import connect, new_client
from cqrs_flow.nodes.commands import STATUS_SDL, SUBSCRIPTION_SDL, CommandBook, Outbox
from cqrs_flow.nodes.reader import UNAVAILABLE_PEER
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.nodes.websocket import serve_websocket
from cqrs_flow.plans import Call, GatewayPlan, MutationPlan, QueryPlan, Report, gateway_plan
from cqrs_flow.plugins import PluginContext, Rejected, start_plugins, stop_plugins
from cqrs_flow.rpc import ServiceClient
from cqrs_flow.topology.model import BrokerNode, GatewayNode, ReaderNode

__all__ = ["GatewayService"]

PLAYGROUND = Path(__file__).resolve().parent.parent / "playground"
MAX_BODY_BYTES = 1024 * 1024
GENERATORS = {"uuid": lambda: str(uuid.uuid4())}
_CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                  grpc.StatusCode.OUT_OF_RANGE}


class RequestFailed(Exception):
    """A failure the client is told about in plain words (no internals)."""


class GatewayService(NodeService):
    node: GatewayNode

    async def start(self) -> None:
        report = Report(self.topology)
        plan = gateway_plan(self.topology, self.node, self.protos, report)
        if report.problems or plan is None:
            raise TopologyError(report.problems, str(self.topology.source))
        reader = self.topology.nodes[self.node.reader]
        broker = self.topology.nodes[self.node.broker]
        assert isinstance(reader, ReaderNode) and isinstance(broker, BrokerNode)
        self.reader = ServiceClient(self.protos, self.protos.service(reader.service),
                                    reader.listen.target, self.credentials, timeout=self.node.reader_timeout)
        self.plugins = await start_plugins(self.node, PluginContext(self.topology, self.node, self.protos, self.log))
        self.book = CommandBook()
        self.outbox = Outbox(self.topology.redeliver_after(self.node))
        self.mqtt = new_client(self.topology.name, self.node.name, broker, persistent=False)
        self.mqtt.on_connect = lambda client, *_: client.subscribe(self.topology.status_topic, qos=1)
        self.mqtt.on_message = self._on_status
        await connect(self.mqtt, broker)
        self.spawn(self._redeliver(), "redeliver")
        self.engine = await self._engine(plan)
        self.playground = _playground_page(self.topology.name, plan.schema.example_query())

        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/", self._get)
        app.router.add_post("/", self._post)
        app.router.add_get("/graphql", self._get)
        app.router.add_post("/graphql", self._post)
        app.router.add_get("/health", self._health)
        if self.node.playground:
            app.router.add_static("/playground/static/", PLAYGROUND / "static")
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.node.listen.host, self.node.listen.port)
        try:
            await site.start()
        except OSError as exc:
            raise NodeError(f"HTTP server cannot listen on {self.node.listen}: {exc.strerror or exc}") from None
        self.log.info("GraphQL on %s (reader %s, broker %s)", self.node.url, reader.listen, broker.address)

    async def stop(self) -> None:
        # HTTP first so no request arrives with its backends gone, then the backends.
        if hasattr(self, "runner"):
            await self.runner.cleanup()
        if hasattr(self, "mqtt") and self.mqtt.is_connected:
            await self.mqtt.disconnect()
        if hasattr(self, "reader"):
            await self.reader.close()
        await stop_plugins(getattr(self, "plugins", []), self.log)

    def _on_status(self, client, topic: str, payload: bytes, qos: int, properties) -> int:
        if topic != self.topology.status_topic:
            return 0
        settled = self.book.heard(payload)
        if settled is None:
            self.log.warning("ignored a status message that is not one (%d bytes)", len(payload))
        for command_id in settled or ():
            self.outbox.settle(command_id)
        return 0

    async def _redeliver(self) -> None:
        """Publish again the commands no writer has reported on within redeliver_after."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            if not self.mqtt.is_connected:
                continue
            due = self.outbox.due(loop.time())
            for _, topic, payload in due:
                self.mqtt.publish(topic, payload, qos=1)
            if due:
                self.log.warning("published %d command(s) again: no writer reported on them within %gs",
                                 len(due), self.outbox.redeliver_after)

    # -- GraphQL ------------------------------------------------------------------------------

    async def _engine(self, plan: GatewayPlan):
        schema_name = f"cqrs-flow:{self.topology.name}:{self.node.name}"
        sdl = plan.schema.text
        if "commandStatus" not in plan.schema.queries:
            sdl += STATUS_SDL.format(query_type=plan.schema.query_type)
            Resolver(f"{plan.schema.query_type}.commandStatus", schema_name=schema_name)(
                self._command_status)
            subscription = plan.schema.subscription_type
            if subscription is not None:
                keyword = "extend" if subscription in plan.schema.object_fields else ""
                sdl += SUBSCRIPTION_SDL.format(keyword=keyword, subscription_type=subscription)
                Subscription(f"{subscription}.commandSettled", schema_name=schema_name)(self._command_settled)
        for name, query in plan.queries.items():
            Resolver(f"{plan.schema.query_type}.{name}", schema_name=schema_name)(self._query_resolver(query))
        for name, mutation in plan.mutations.items():
            Resolver(f"{plan.schema.mutation_type}.{name}", schema_name=schema_name)(
                self._mutation_resolver(mutation))
        return await create_engine(sdl, schema_name=schema_name, error_coercer=self._coerce_error)

    async def _command_status(self, parent: Any, args: dict[str, Any], ctx: Any, info: Any):
        return self.book.get(args["id"])

    async def _command_settled(self, parent: Any, args: dict[str, Any], ctx: Any, info: Any):
        yield {"commandSettled": await self.book.settled(args["id"])}

    async def _coerce_error(self, exception: Exception, error: dict[str, Any]) -> dict[str, Any]:
        """Clients see the message of failures we expect; anything else is logged, not leaked."""
        original = getattr(exception, "original_error", None)
        if original is None or isinstance(original, (RequestFailed, TartifletteError)):
            return error  # tartiflette's own errors (syntax, validation, coercion) and ours
        error_id = uuid.uuid4().hex[:12]
        self.log.error("internal error %s: %r", error_id, original, exc_info=original)
        return {**error, "message": f"internal error (id {error_id}; details are in the gateway log)"}

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
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self.log.warning("reader %s: %s %s", call.rpc, code.name, exc.details())
                peer = dict(exc.trailing_metadata() or ()).get(UNAVAILABLE_PEER, "reader")
                raise RequestFailed(f"the {peer} is unavailable; try again") from None
            error_id = uuid.uuid4().hex[:12]
            self.log.error("reader %s failed (error id %s): %s %s", call.rpc, error_id, code.name, exc.details())
            raise RequestFailed(f"internal error (id {error_id}; details are in the gateway log)") from None

    def _query_resolver(self, plan: QueryPlan):
        converters: dict[str, Callable[[Any], dict[str, Any]]] = {}  # message type -> its data_converter

        def data(value: Any) -> Any:
            if not hasattr(value, "DESCRIPTOR"):
                return value
            convert = converters.get(value.DESCRIPTOR.full_name)
            if convert is None:
                convert = converters[value.DESCRIPTOR.full_name] = data_converter(value.DESCRIPTOR)
            return convert(value)

        async def resolve(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
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
                    return {"status": "ERROR", "message": plan.not_found.format_map(words), "id": key}
                except RequestFailed as exc:
                    return {"status": "ERROR", "message": f"nothing was queued: {exc}", "id": key}
            refusal = await self._before_publish(plan, command, args)
            if refusal is not None:
                return {"status": "ERROR", "message": refusal, "id": key}
            if not self.mqtt.is_connected:
                return {"status": "ERROR", "message": "the broker is unavailable; nothing was queued",
                        "id": key}
            command_id = str(uuid.uuid4())
            if plan.command_id_path:
                if self.outbox.full:
                    return {"status": "ERROR", "id": key, "message": f"{len(self.outbox)} commands are waiting "
                            "for a writer; nothing was queued, try again later"}
                set_path(command, plan.command_id_path, command_id)
            payload = command.SerializeToString()
            if plan.command_id_path:
                self.book.queued(command_id, plan.command, key)
                self.outbox.add(command_id, plan.topic, payload, asyncio.get_running_loop().time())
            self.mqtt.publish(plan.topic, payload, qos=1)
            return {"status": "OK", "message": plan.message.format_map(words), "id": key,
                    "command_id": command_id if plan.command_id_path else None}

        return resolve

    async def _before_publish(self, plan: MutationPlan, command, args: dict[str, Any]) -> str | None:
        """Run the plugins' checks; the message to answer with if one refuses, else None."""
        for plugin in self.plugins:
            try:
                await plugin.before_publish(plan.field, command, args)
            except Rejected as exc:
                return str(exc)
            except Exception:
                error_id = uuid.uuid4().hex[:12]
                self.log.exception("plugin '%s' failed on %s (error id %s)", plugin.name, plan.field, error_id)
                return f"plugin '{plugin.name}' failed; nothing was queued (error id {error_id})"
        return None

    # -- HTTP ---------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "broker": self.mqtt.is_connected})

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await serve_websocket(request, self.engine, {"request": request})
        if self.node.playground:
            return web.Response(text=self.playground, content_type="text/html")
        return _graphql_error("send GraphQL requests as POST with a JSON body", status=405)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        try:
            query, variables, operation = await _read_request(request)
        except RequestFailed as exc:
            return _graphql_error(str(exc), status=400)
        except web.HTTPRequestEntityTooLarge:
            return _graphql_error(f"request body is larger than {MAX_BODY_BYTES} bytes", status=413)
        result = await self.engine.execute(query, operation_name=operation, variables=variables,
                                           context={"request": request})
        return web.json_response(result)


async def _read_request(request: web.Request) -> tuple[str, dict[str, Any] | None, str | None]:
    """The query, variables and operation name of a POST, or RequestFailed saying what is wrong."""
    if request.content_type == "application/graphql":
        return await request.text(), None, None
    try:
        body = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise RequestFailed("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestFailed('request body must be a JSON object like {"query": "..."}')
    query, variables, operation = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise RequestFailed('request body has no "query" string')
    if variables is not None and not isinstance(variables, dict):
        raise RequestFailed('"variables" must be a JSON object')
    if operation is not None and not isinstance(operation, str):
        raise RequestFailed('"operationName" must be a string')
    return query, variables, operation


def _graphql_error(message: str, status: int) -> web.Response:
    return web.json_response({"data": None, "errors": [{"message": message}]}, status=status)


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
    query = json.dumps(default_query).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = (PLAYGROUND / "index.html").read_text(encoding="utf-8")
    return page.replace("{{TITLE}}", html.escape(f"{title} · GraphQL playground")).replace(
        "{{DEFAULT_QUERY_JSON}}", query)

