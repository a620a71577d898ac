"""The gateway's GraphQL engine: the schema with a resolver on each planned field.

Queries call the reader over gRPC and answer with what it returns (a missing entity is null).
Mutations build their command from the arguments, let the plugins check it, and hand it to
the delivery, which publishes it; commandStatus and commandSettled read the command book.
A refused mutation answers ERROR with the refusal's message; any other refusal is a GraphQL
error (refusals.coerced).
"""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc
from google.protobuf import json_format
from tartiflette import Resolver, Subscription, TartifletteError, create_engine

from cqrs_flow.contracts.gateway import Call, GatewayPlan, MutationPlan, QueryPlan
from cqrs_flow.nodes.gateway.commands import STATUS_SDL, SUBSCRIPTION_SDL
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.limits import LimitExceeded
from cqrs_flow.nodes.gateway.refusals import NOT_FOUND, REQUEST_ID, Refused, coerced, internal
from cqrs_flow.plugins import GatewayPlugin, Rejected
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.protobuf.messages import get_path, set_path
from cqrs_flow.transport.rpc import UNAVAILABLE_PEER, ServiceClient

__all__ = ["Resolvers"]

GENERATORS = {"uuid": lambda: str(uuid.uuid4())}
# tartiflette keeps the resolvers of a schema by its name for the life of the process, and
# refuses a second registration: each engine gets a name of its own.
_ENGINES = itertools.count(1)
# How the store says a keyed request has an empty key (stores/operations.py): "GetContact needs
# 'id'". The gateway names the GraphQL argument instead of the RPC and its request field.
_EMPTY_FIELD = re.compile(r"[A-Za-z_]\w* needs '([A-Za-z_][\w.]*)'")
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

    async def engine(self, plan: GatewayPlan, name: str) -> Any:
        """A tartiflette engine for `plan`'s schema, its fields resolved here."""
        schema_name = f"{name}#{next(_ENGINES)}"
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
        # tartiflette annotates error_coercer as a plain function, but takes only a coroutine one.
        coercer = cast(Callable[[Exception, dict[str, Any]], dict[str, Any]], self._coerce_error)
        return await create_engine(sdl, schema_name=schema_name, error_coercer=coercer)

    async def _command_status(
        self, parent: Any, args: dict[str, Any], ctx: Any, info: Any
    ) -> dict[str, Any] | None:
        return self.delivery.book.get(args["id"])

    async def _command_settled(
        self, parent: Any, args: dict[str, Any], ctx: Any, info: Any
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"commandSettled": await self.delivery.book.settled(args["id"])}

    async def _coerce_error(self, exception: Exception, error: dict[str, Any]) -> dict[str, Any]:
        """Clients see refusals; anything else is logged, not leaked."""
        original = getattr(exception, "original_error", None)
        if original is None or isinstance(original, TartifletteError):
            return error  # tartiflette's own errors (syntax, validation, coercion)
        if not isinstance(original, Refused):
            request_id = REQUEST_ID.get()
            self.log.error(
                "request %s: internal error: %r", request_id, original, exc_info=original
            )
            original = internal(request_id)
        return coerced(error, original)

    async def _ask(self, call: Call, args: dict[str, Any]) -> Any:
        """The reader's answer to `call`; Refused (NOT_FOUND for a missing entity) when it has
        none to give."""
        request = _build(call.request, call.arguments, args)
        try:
            return await self.reader.call(call.rpc, request)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise Refused(exc.details() or "not found", NOT_FOUND) from None
            if code in _CLIENT_ERRORS:  # meant for the client (a plugin's Rejected, a bad argument)
                message = exc.details() or code.name.lower().replace("_", " ")
                raise Refused(_in_arguments(message, call), code.name) from None
            request_id = REQUEST_ID.get()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self.log.warning(
                    "request %s: reader %s: %s %s", request_id, call.rpc, code.name, exc.details()
                )
                raise Refused(
                    f"the {_unavailable_peer(exc)} is unavailable; try again",
                    "UNAVAILABLE",
                    status=503,
                ) from None
            self.log.error(
                "request %s: reader %s failed: %s %s",
                request_id,
                call.rpc,
                code.name,
                exc.details(),
            )
            raise internal(request_id) from None

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
            except Refused as refused:
                if refused.code != NOT_FOUND:
                    raise
                return [] if plan.many else None  # a missing entity is null, not an error
            value = get_path(response, plan.result) if plan.result else response
            if plan.many:
                return [data(v) for v in value]
            return data(value)

        return resolve

    def _mutation_resolver(self, plan: MutationPlan) -> Any:
        async def resolve(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> dict[str, Any]:
            key: str | None = None
            try:
                command = _build(plan.request, plan.arguments, args)
                for path, generator in plan.generate.items():
                    if not get_path(command, path):
                        set_path(command, path, GENERATORS[generator]())
                key = str(get_path(command, plan.key_path)) if plan.key_path else None
                words = {**args, "entity": plan.entity, "id": key or ""}
                if plan.exists is not None:
                    await self._must_exist(plan.exists, args, plan.not_found.format_map(words))
                await self._before_publish(plan, command, args)
                command_id = await self.delivery.publish(plan, command, key)
            except Refused as refused:
                return {"status": "ERROR", "message": refused.message, "id": key}
            return {
                "status": "OK",
                "message": plan.message.format_map(words),
                "id": key,
                "command_id": command_id,
            }

        return resolve

    async def _must_exist(self, call: Call, args: dict[str, Any], not_found: str) -> None:
        """Refused with `not_found` if the reader does not have the entity a mutation is about."""
        try:
            await self._ask(call, args)
        except Refused as refused:
            if refused.code == NOT_FOUND:
                raise Refused(not_found, NOT_FOUND) from None
            raise Refused(f"nothing was queued: {refused.message}", refused.code) from None

    async def _before_publish(self, plan: MutationPlan, command: Any, args: dict[str, Any]) -> None:
        """Run the plugins' checks; Refused if one refuses the command or fails."""
        for plugin in self.plugins:
            try:
                await plugin.before_publish(plan.field, command, args)
            except Rejected as exc:
                raise Refused(str(exc), "REJECTED") from None
            except Exception:
                request_id = REQUEST_ID.get()
                self.log.exception(
                    "request %s: plugin '%s' failed on %s", request_id, plugin.name, plan.field
                )
                raise Refused(
                    f"plugin '{plugin.name}' failed; nothing was queued (request {request_id})",
                    "INTERNAL",
                    status=500,
                ) from None


def _unavailable_peer(exc: grpc.aio.AioRpcError) -> str:
    """Which node behind the reader is away, as its answer says; else the reader."""
    # grpc-stubs gives AioRpcError the trailing metadata of grpc.RpcError (a tuple): it is a
    # grpc.aio.Metadata, a mapping.
    metadata = cast("grpc.aio.Metadata | None", exc.trailing_metadata())
    peer = metadata.get(UNAVAILABLE_PEER) if metadata else None
    return str(peer) if peer else "reader"


def _check_counts(args: dict[str, Any], cap: int) -> None:
    """A list query's whole-number arguments (its `count`) may not ask for more than `cap`."""
    for name, value in args.items():
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            raise LimitExceeded(
                f"argument '{name}' is {value}; a list query returns at most {cap} "
                "(limits.list_count)"
            )


def _in_arguments(message: str, call: Call) -> str:
    """A reader's refusal in the client's words: the store's "GetContact needs 'id'" becomes
    "argument 'id' must not be empty" (the argument that fills the request field)."""
    empty = _EMPTY_FIELD.fullmatch(message)
    if empty is None:
        return message
    names = [name for name, path in call.arguments.items() if path == empty.group(1)]
    if names:
        return f"argument '{names[0]}' must not be empty"
    return "an argument the query needs is empty"


def _build(message_class: Any, arguments: dict[str, str], args: dict[str, Any]) -> Any:
    """A request message with each GraphQL argument set at its mapped field path."""
    message = message_class()
    for name, path in arguments.items():
        if args.get(name) is not None:
            try:
                set_path(message, path, args[name])
            except (ValueError, TypeError, KeyError, json_format.ParseError) as exc:
                raise Refused(f"argument '{name}' {_misfit(exc)}", "INVALID_ARGUMENT") from None
    return message


def _misfit(exc: Exception) -> str:
    """Why an argument does not fit its request field, in words for the client (not Python's)."""
    if isinstance(exc, KeyError):  # an enum value the proto does not have
        return f"has no value {str(exc.args[0])[:100]!r} here"
    if isinstance(exc, json_format.ParseError):  # an input object: protobuf says what is wrong
        return f"does not fit: {str(exc)[:200]}"
    if isinstance(exc, UnicodeError):
        return "is not Unicode text"
    return "does not fit: a value of another type or out of range"
