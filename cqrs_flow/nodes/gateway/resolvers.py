"""The gateway's GraphQL engine: the schema with a resolver on each planned field.

Queries call the reader over gRPC and answer with what it returns (a missing entity is null);
lists, lookups and relations its document service (finder.py), live subscriptions its change
log (live.py).
Mutations build their command from the arguments, let the plugins check it, and hand it to
the delivery, which publishes it; commandStatus and commandSettled read the command book.
A refused mutation answers ERROR with the refusal's message and code (where the schema's result
type has a `code` field), and null for `id` and `command_id`: nothing was queued, so nothing
may look created; any other refusal is a GraphQL error (refusals.coerced).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import grpc
from google.protobuf import json_format
from tartiflette import Resolver, Subscription, TartifletteError, create_engine

from cqrs_flow.contracts.documents import ConnectionPlan, EntityView, LookupPlan
from cqrs_flow.contracts.gateway import Call, GatewayPlan, MutationPlan, QueryPlan
from cqrs_flow.contracts.ids import uuid4
from cqrs_flow.nodes.gateway.auth import GatewayAuth
from cqrs_flow.nodes.gateway.commands import STATUS_SDL, SUBSCRIPTION_SDL
from cqrs_flow.nodes.gateway.cursors import Cursors
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.feed import ChangeFeed
from cqrs_flow.nodes.gateway.finder import Finder, add_condition
from cqrs_flow.nodes.gateway.introspection import MODULE as INTROSPECTION
from cqrs_flow.nodes.gateway.introspection import serve_user_types
from cqrs_flow.nodes.gateway.limits import LimitExceeded
from cqrs_flow.nodes.gateway.live import Live
from cqrs_flow.nodes.gateway.refusals import NOT_FOUND, REQUEST_ID, Refused, coerced, internal
from cqrs_flow.plugins import GatewayPlugin, Rejected
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.protobuf.messages import get_path, set_path
from cqrs_flow.topology.model import Limits
from cqrs_flow.transport.rpc import UNAVAILABLE_PEER, ServiceClient

__all__ = ["Resolvers", "served_sdl"]

GENERATORS = {"uuid": uuid4}
_FINDER = "cqrs_flow.finder"  # where a request's Finder is kept in its context
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
        documents: ServiceClient | None = None,
        cursors: Cursors | None = None,
        page_size: int = Limits.page_size,
        auth: GatewayAuth | None = None,
        feed: ChangeFeed | None = None,
    ) -> None:
        self.auth = auth or GatewayAuth()  # the caller's rules (auth.py); none: no rules
        self.reader = reader
        self.plugins = plugins
        self.delivery = delivery
        self.list_count = list_count
        self.log = log
        self.documents = documents
        self.cursors = cursors
        self.page_size = page_size
        self.feed = feed  # the change log's follow, for live subscriptions
        self.entities: dict[str, EntityView] = {}

    async def engine(self, plan: GatewayPlan, name: str) -> Any:
        """A tartiflette engine for `plan`'s schema, its fields resolved here."""
        schema_name = f"{name}#{next(_ENGINES)}"
        sdl = served_sdl(plan)
        if "commandStatus" not in plan.schema.queries:
            Resolver(f"{plan.schema.query_type}.commandStatus", schema_name=schema_name)(
                self._command_status
            )
            subscription = plan.schema.subscription_type
            if subscription is not None:
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
        self.entities = plan.documents.entities
        for connection in plan.documents.connections:
            Resolver(f"{connection.owner}.{connection.field}", schema_name=schema_name)(
                self._connection_resolver(connection)
            )
        for lookup in plan.documents.lookups:
            Resolver(f"{lookup.owner}.{lookup.field}", schema_name=schema_name)(
                self._lookup_resolver(lookup)
            )
        if self.feed is not None and self.documents is not None:
            live = Live(
                self.documents,
                self.feed,
                self._refusal,
                self.page_size,
                self.list_count,
                self.auth,
            )
            for live_plan in plan.documents.subscriptions:
                Subscription(f"{live_plan.owner}.{live_plan.field}", schema_name=schema_name)(
                    live.source(live_plan)
                )
        # tartiflette annotates error_coercer as a plain function, but takes only a coroutine one.
        coercer = cast(Callable[[Exception, dict[str, Any]], dict[str, Any]], self._coerce_error)
        # The fields of an object one after the other, each awaited in the execution's task,
        # except those with a resolver of ours (Resolver's default keeps them concurrent: they
        # may call the reader, and a list's relations batch their reads in one turn of the
        # loop, finder.py). tartiflette's default made a task of every field of every object:
        # a tenth of the gateway's CPU for contact(id) (docs/PERFORMANCE.md). A field's
        # arguments likewise: coercing them does no I/O, and tartiflette gathered them in tasks.
        engine = await create_engine(
            sdl,
            schema_name=schema_name,
            error_coercer=coercer,
            modules=[INTROSPECTION],
            coerce_parent_concurrently=False,
            custom_default_arguments_coercer=_arguments_in_turn,
        )
        serve_user_types(engine._schema, sdl)  # the baked schema: tartiflette names it so
        return engine

    async def _command_status(
        self, parent: Any, args: dict[str, Any], ctx: Any, info: Any
    ) -> dict[str, Any] | None:
        entry = await self.delivery.book.lookup(args["id"])
        return entry if self.auth.sees(entry) else None  # a caller's own commands only

    async def _command_settled(
        self, parent: Any, args: dict[str, Any], ctx: Any, info: Any
    ) -> AsyncIterator[dict[str, Any]]:
        if not self.auth.sees(await self.delivery.book.lookup(args["id"])):
            yield {"commandSettled": None}
            return
        yield {"commandSettled": await self.delivery.book.settled(args["id"])}

    async def _coerce_error(self, exception: Exception, error: dict[str, Any]) -> dict[str, Any]:
        """Clients see refusals; anything else is logged, not leaked."""
        original = getattr(exception, "original_error", None)
        if original is None or isinstance(original, TartifletteError):
            return _indexed_hint(error, self.entities)  # tartiflette's (syntax, validation)
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
            raise self._refusal(exc, call) from None

    def _refusal(self, exc: grpc.aio.AioRpcError, call: Call | None = None) -> Exception:
        """What a failed reader call answers the client: Refused with the reader's words where
        they are meant for the client, else a logged internal error."""
        code = exc.code()
        rpc = call.rpc if call is not None else "Find"
        if code == grpc.StatusCode.NOT_FOUND:
            return Refused(exc.details() or "not found", NOT_FOUND)
        if code in _CLIENT_ERRORS:  # meant for the client (a plugin's Rejected, a bad argument)
            message = exc.details() or code.name.lower().replace("_", " ")
            return Refused(_in_arguments(message, call) if call else message, code.name)
        request_id = REQUEST_ID.get()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            self.log.warning(
                "request %s: reader %s: %s %s", request_id, rpc, code.name, exc.details()
            )
            return Refused(
                f"the {_unavailable_peer(exc)} is unavailable; try again",
                "UNAVAILABLE",
                status=503,
            )
        self.log.error(
            "request %s: reader %s failed: %s %s", request_id, rpc, code.name, exc.details()
        )
        return internal(request_id)

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
            self.auth.check_values(plan.field, args)  # FORBIDDEN: a GraphQL error, not ERROR
            try:
                command = _build(plan.request, plan.arguments, args)
                if plan.subject_path:  # who asked, as the gateway verified it; never the client's
                    set_path(command, plan.subject_path, self.auth.subject())
                for path, generator in plan.generate.items():
                    if not get_path(command, path):
                        set_path(command, path, GENERATORS[generator]())
                key = str(get_path(command, plan.key_path)) if plan.key_path else None
                words = {**args, "entity": plan.entity, "id": key or ""}
                if plan.exists is not None:
                    await self._must_exist(plan.exists, args, plan.not_found.format_map(words))
                elif plan.exists_entity is not None:
                    found = await self.finder(ctx).lookup(plan.exists_entity.name, key or "")
                    if found is None:
                        raise Refused(plan.not_found.format_map(words), NOT_FOUND)
                await self._before_publish(plan, command, args)
                command_id = await self.delivery.publish(plan, command, key, self.auth.subject())
            except Refused as refused:  # nothing was queued: no id that looks created
                return {
                    "status": "ERROR",
                    "message": refused.message,
                    "code": refused.code,
                    "id": None,
                    "command_id": None,
                }
            return {
                "status": "OK",
                "message": plan.message.format_map(words),
                "id": key,
                "command_id": command_id,
            }

        return resolve

    def finder(self, ctx: Any) -> Finder:
        """The request's Finder (in its context: one per request, or per WebSocket operation)."""
        finder = ctx.get(_FINDER) if isinstance(ctx, dict) else None
        if finder is None:
            assert self.documents is not None, "a gateway with document plans has the service"
            finder = Finder(self.documents, self.entities, self._refusal, self.auth.rows())
            if isinstance(ctx, dict):
                ctx[_FINDER] = finder
        return finder

    def _connection_resolver(self, plan: ConnectionPlan) -> Any:
        entity = plan.entity.name

        async def resolve(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> dict[str, Any]:
            finder = self.finder(ctx)
            query = finder.new_query(entity)
            if plan.by is not None:
                parent_key = parent.get(plan.parent_key) if isinstance(parent, dict) else None
                if not parent_key:
                    return _connection([], [], False, False, 0)
                add_condition(query, plan.by, "eq", [parent_key])
            for field_name, ops in (args.get("where") or {}).items():
                for op, value in (ops or {}).items():
                    if value is not None:
                        add_condition(query, field_name, op, value if op == "in" else [value])
            order = args.get("orderBy") or {}
            self.auth.check_filter(entity, [*(args.get("where") or {}), order.get("field") or ""])
            if order.get("field"):
                query.order_by = order["field"]
                query.descending = order.get("direction") == "DESC"
            order_key = f"{query.order_by}:{'desc' if query.descending else 'asc'}"
            order_key = order_key if query.order_by else ""
            first, last = args.get("first"), args.get("last")
            for name, value in (("first", first), ("last", last)):
                if value is not None and value < 0:
                    raise Refused(f"argument '{name}' must be 0 or more", "INVALID_ARGUMENT")
                if value is not None and value > self.list_count:
                    raise LimitExceeded(
                        f"argument '{name}' is {value}; a page holds at most "
                        f"{self.list_count} (limits.list_count)"
                    )
            if first is None and last is None:
                first = self.page_size
            if first is not None:
                query.first = first
            if last is not None:
                query.last = last
            assert self.cursors is not None
            for name in ("after", "before"):
                if args.get(name) is not None:
                    position = self.cursors.read(args[name], name, entity, order_key)
                    setattr(query, name, position)
            query.total = _selects(info, "totalCount")
            page = await finder.page(query)
            nodes = [finder.data(entity, d) for d in page.documents]
            cursors = [self.cursors.make(entity, order_key, p) for p in page.positions]
            total = page.total if page.HasField("total") else None
            return _connection(nodes, cursors, page.has_next, page.has_previous, total)

        return resolve

    def _lookup_resolver(self, plan: LookupPlan) -> Any:
        entity = plan.entity.name

        async def resolve(
            parent: Any, args: dict[str, Any], ctx: Any, info: Any
        ) -> dict[str, Any] | None:
            if plan.argument is not None:
                key = args.get(plan.argument)
                if not key:
                    raise Refused(
                        f"argument '{plan.argument}' must not be empty", "INVALID_ARGUMENT"
                    )
            else:
                key = parent.get(plan.key_field) if isinstance(parent, dict) else None
            found = await self.finder(ctx).lookup(entity, str(key)) if key else None
            if found is None and plan.required:
                owner = plan.owner.lower()
                which = (
                    parent.get(_key_of(self.entities, plan.owner), "")
                    if isinstance(parent, dict)
                    else ""
                )
                raise Refused(
                    f"{owner} {which}: its {plan.field} ({entity} {key or '(none)'}) does not "
                    f"exist; {plan.owner}.{plan.field} is non-null, so there is no answer to give",
                    "DANGLING_RELATION",
                )
            return found

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


def served_sdl(plan: GatewayPlan) -> str:
    """The SDL of the schema a gateway serves: the user's, with the list, filter and relation
    types the document plans add (already in `plan.schema.text`), and commandStatus and
    commandSettled unless the schema defines commandStatus itself. Nothing else: the engine's
    own additions are hidden (introspection.py)."""
    sdl = plan.schema.text
    if "commandStatus" not in plan.schema.queries:
        sdl += STATUS_SDL.format(query_type=plan.schema.query_type)
        subscription = plan.schema.subscription_type
        if subscription is not None:
            keyword = "extend" if subscription in plan.schema.object_fields else ""
            sdl += SUBSCRIPTION_SDL.format(keyword=keyword, subscription_type=subscription)
    return sdl


def _connection(
    nodes: list[dict[str, Any]],
    cursors: list[str],
    has_next: bool,
    has_previous: bool,
    total: int | None,
) -> dict[str, Any]:
    """A Relay connection as the gateway answers it."""
    return {
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=False)],
        "nodes": nodes,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
        "totalCount": total,
    }


def _selects(info: Any, name: str) -> bool:
    """Whether the field being resolved selects `name` (directly, or in a fragment on it)."""
    fragments = getattr(info, "fragments", None) or {}
    pending = [n.selection_set for n in getattr(info, "field_nodes", None) or () if n.selection_set]
    seen: set[str] = set()
    while pending:
        for node in pending.pop().selections:
            kind = type(node).__name__
            if kind == "FieldNode" and node.name.value == name:
                return True
            if kind == "InlineFragmentNode":
                pending.append(node.selection_set)
            elif kind == "FragmentSpreadNode" and node.name.value not in seen:
                seen.add(node.name.value)
                fragment = fragments.get(node.name.value)
                if fragment is not None:
                    pending.append(fragment.selection_set)
    return False


_NOT_IN_WHERE = re.compile(r"Unknown Input Field < (\w+) > in < (\w+)Where > Input Object")
_NOT_IN_ORDER = re.compile(r"Value (\w+) is not a valid value for enum (\w+)OrderField")


def _indexed_hint(error: dict[str, Any], entities: dict[str, EntityView]) -> dict[str, Any]:
    """A filter or order on a field that is not indexed: say which fields are."""
    message = str(error.get("message", ""))
    found = _NOT_IN_WHERE.search(message) or _NOT_IN_ORDER.search(message)
    entity = entities.get(found.group(2)) if found else None
    if found is None or entity is None:
        return error
    what = "filter on" if found.re is _NOT_IN_WHERE else "order by"
    return {
        **error,
        "message": f"{message}: a list of {entity.name} can only {what} its indexed fields "
        f"({', '.join(entity.indexes)}); '{found.group(1)}' is not one of them (the topology's "
        f"entities.{entity.name}.indexes lists them)",
    }


def _key_of(entities: dict[str, EntityView], type_name: str) -> str:
    entity = entities.get(type_name)
    return entity.key if entity is not None else "id"


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


async def _arguments_in_turn(*coercions: Coroutine[Any, Any, Any]) -> list[Any]:
    """A field's arguments coerced one after the other in the execution's task (tartiflette's
    `custom_default_arguments_coercer`): each result, or the exception it raised, in order."""
    results: list[Any] = []
    for coercion in coercions:
        try:
            results.append(await coercion)
        except Exception as exc:  # tartiflette reports each argument's error itself
            results.append(exc)
    return results
