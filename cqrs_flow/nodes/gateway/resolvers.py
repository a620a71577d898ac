"""The gateway's GraphQL engine: the schema with a resolver on each planned field.

Queries call the reader over gRPC and answer with what it returns (a missing entity is null).
Mutations build their command from the arguments, let the plugins check it, and hand it to
the delivery, which publishes it; commandStatus and commandSettled read the command book.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import json_format
from tartiflette import Resolver, Subscription, TartifletteError, create_engine

from cqrs_flow.contracts.plans import Call, GatewayPlan, MutationPlan, QueryPlan
from cqrs_flow.nodes.gateway.commands import STATUS_SDL, SUBSCRIPTION_SDL
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.refusals import REQUEST_ID, RequestFailed, internal_error
from cqrs_flow.plugins import GatewayPlugin, Rejected
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.protobuf.messages import get_path, set_path
from cqrs_flow.stores.journal import JournalError
from cqrs_flow.transport.rpc import UNAVAILABLE_PEER, ServiceClient

__all__ = ["Resolvers"]

GENERATORS = {"uuid": lambda: str(uuid.uuid4())}
_CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}


class Resolvers:
    """What the fields of one gateway's schema do."""

    def __init__(
        self,
        reader: ServiceClient,
        plugins: list[GatewayPlugin],
        delivery: Delivery,
        list_count: int,
        log: logging.Logger,
    ) -> None:
        self.reader = reader
        self.plugins = plugins
        self.delivery = delivery
        self.list_count = list_count
        self.log = log

    async def engine(self, plan: GatewayPlan, schema_name: str) -> Any:
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

    async def _command_status(
        self, parent: Any, args: dict[str, Any], ctx: Any, info: Any
    ) -> dict[str, Any] | None:
        return self.delivery.book.get(args["id"])

    async def _command_settled(
        self, parent: Any, args: dict[str, Any], ctx: Any, info: Any
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"commandSettled": await self.delivery.book.settled(args["id"])}

    async def _coerce_error(self, exception: Exception, error: dict[str, Any]) -> dict[str, Any]:
        """Clients see the message of failures we expect; anything else is logged, not leaked."""
        original = getattr(exception, "original_error", None)
        if original is None or isinstance(original, (RequestFailed, TartifletteError)):
            return error  # tartiflette's own errors (syntax, validation, coercion) and ours
        request_id = REQUEST_ID.get()
        self.log.error("request %s: internal error: %r", request_id, original, exc_info=original)
        return {**error, "message": internal_error(request_id)}

    async def _ask(self, call: Call, args: dict[str, Any]) -> Any:
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
            raise RequestFailed(internal_error(request_id)) from None

    def _query_resolver(self, plan: QueryPlan) -> Any:
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

    def _mutation_resolver(self, plan: MutationPlan) -> Any:
        delivery = self.delivery

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
            if not delivery.mqtt.is_connected:
                return {
                    "status": "ERROR",
                    "message": "the broker is unavailable; nothing was queued",
                    "id": key,
                }
            command_id = delivery.clock.next_id()
            if plan.command_id_path:
                if delivery.outbox.full:
                    return {
                        "status": "ERROR",
                        "id": key,
                        "message": f"{len(delivery.outbox)} commands are waiting "
                        "for a writer; nothing was queued, try again later",
                    }
                set_path(command, plan.command_id_path, command_id)
            payload = command.SerializeToString()
            if plan.command_id_path:
                try:  # with a data directory: on disk before it is published and answered
                    await delivery.outbox.add(
                        command_id, plan.topic, payload, asyncio.get_running_loop().time()
                    )
                except JournalError as exc:
                    self.log.error("cannot keep command %s in the outbox: %s", command_id, exc)
                    return {
                        "status": "ERROR",
                        "id": key,
                        "message": "the gateway cannot record commands; nothing was queued",
                    }
                delivery.book.queued(command_id, plan.command, key)
            delivery.mqtt.publish(plan.topic, payload, qos=1)
            return {
                "status": "OK",
                "message": plan.message.format_map(words),
                "id": key,
                "command_id": command_id if plan.command_id_path else None,
            }

        return resolve

    async def _before_publish(
        self, plan: MutationPlan, command: Any, args: dict[str, Any]
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


def _check_counts(args: dict[str, Any], cap: int) -> None:
    """A list query's whole-number arguments (its `count`) may not ask for more than `cap`."""
    for name, value in args.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            raise RequestFailed(
                f"argument '{name}' is {value}; a list query returns at most {cap} "
                "(limits.list_count)"
            )


def _build(message_class: Any, arguments: dict[str, str], args: dict[str, Any]) -> Any:
    """A request message with each GraphQL argument set at its mapped field path."""
    message = message_class()
    for name, path in arguments.items():
        if args.get(name) is not None:
            try:
                set_path(message, path, args[name])
            except (ValueError, TypeError, KeyError, json_format.ParseError) as exc:
                raise RequestFailed(f"argument '{name}' does not fit: {exc}") from None
    return message
