"""Introspection as the current GraphQL specification has it, of the user's types only.

tartiflette answers the introspection of the June 2018 specification. graphql-js 16's
getIntrospectionQuery with its options on (what GraphQL Code Generator, graphql-inspector, the
Python gql client and GraphiQL send) also asks for `__Schema.description`,
`__Type.specifiedByURL`, `__Type.isOneOf`, `__Directive.isRepeatable`,
`args(includeDeprecated:)`, `inputFields(includeDeprecated:)` and `__InputValue.isDeprecated`,
and tartiflette refuses the whole query for any of them.

tartiflette bakes each of its built-ins (the introspection types and their resolvers, @deprecated,
@skip, @include, @nonIntrospectable, the scalars) only when the engine's own modules have not
registered one of the same name: this module, given to the engine as a module, registers the
introspection types of the current specification, and its @deprecated (on all four of its places),
@specifiedBy and @oneOf, before them, so tartiflette leaves its own out.

tartiflette also puts three scalars (Date, DateTime, Time) and a directive (@nonIntrospectable)
in every schema. A client downloading the schema would find types the user never wrote (code
generators with strict scalars stop at them, a schema diff reports them): `serve_user_types`
leaves them out of what the schema shows unless the SDL uses them.

Per role. On a gateway with end-user rules (auth.py), introspection shows each caller the schema
of their role only (`RoleViews`): the root fields it may run, the fields of each entity it may
see, and the types reachable from those alone (the inputs of a mutation it may not run, the
types of an entity it cannot reach, are absent); `__type` answers null for any other type. So a
visitor cannot discover a librarian's mutations, and a client generating code from the schema it
is served gets what it may use. Each role's view is built once, when the gateway starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from tartiflette import Directive, Resolver
from tartiflette.types.non_null import GraphQLNonNull

from cqrs_flow.contracts.auth import RolePlan
from cqrs_flow.errors import NodeError

__all__ = [
    "ENGINE_ADDITIONS",
    "MODULE",
    "RoleViews",
    "SchemaView",
    "serve_role_views",
    "serve_user_types",
]

MODULE = __name__  # what the engine is given in `modules`

# What tartiflette adds to every schema besides the specification's built-ins.
ENGINE_ADDITIONS = {"types": ("Date", "DateTime", "Time"), "directives": ("nonIntrospectable",)}

_NAMES = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_DEFAULT_REASON = "No longer supported"

# The introspection types and @deprecated, @specifiedBy and @oneOf: what `bake` returns.
SDL = (Path(__file__).resolve().parent / "introspection.graphql").read_text(encoding="utf-8")


class _Deprecated:
    """@deprecated: a field or an enum value is marked when the schema is baked (as
    tartiflette's own does); an argument or an input field is read from its directives when
    introspected (tartiflette gives those no hook at bake)."""

    async def on_post_bake(
        self, directive_args: dict[str, Any], next_directive: Any, element: Any
    ) -> Any:
        element = await next_directive(element)
        element.isDeprecated = True
        element.deprecationReason = directive_args["reason"]
        return element


class _SpecifiedBy:
    """@specifiedBy: nothing happens at run time; `specifiedByURL` reads it."""


class _OneOf:
    """@oneOf: a value of the input object, from a variable or written in the query, has
    exactly one field, and it is not null."""

    async def on_post_input_coercion(
        self,
        directive_args: dict[str, Any],
        next_directive: Any,
        parent_node: Any,
        value: Any,
        ctx: Any,
    ) -> Any:
        value = await next_directive(parent_node, value, ctx)
        if isinstance(value, dict):
            given = [name for name, field in value.items() if field is not None]
            if len(value) != 1 or len(given) != 1:
                raise ValueError(
                    "exactly one field of a OneOf input object must be given, and not null"
                    + (f" (given: {', '.join(sorted(value))})" if value else "")
                )
        return value


def _directive_argument(element: Any, directive: str, argument: str) -> tuple[bool, Any]:
    """Whether `element` (from the SDL) carries `directive`, and the literal value of its
    `argument` (None when not given)."""
    for node in getattr(element, "directives", None) or ():
        if node.name.value == directive:
            for given in node.arguments or ():
                if given.name.value == argument:
                    return True, getattr(given.value, "value", None)
            return True, None
    return False, None


# -- the view of one role ------------------------------------------------------------------------


def _named(graphql_type: Any) -> Any:
    """The named type under a type's list and non-null wrappers."""
    while getattr(graphql_type, "is_wrapping_type", False):
        graphql_type = graphql_type.wrapped_type
    return graphql_type


class SchemaView:
    """What one role sees of a baked schema: the root fields it may run, the entity fields it
    may see (and the filter inputs and order values of those only), the types reachable from
    them (with every introspection type and what they use)."""

    def __init__(self, schema: Any, role: RolePlan) -> None:
        self.role = role
        self.hidden: dict[str, frozenset[str]] = {}
        roots = {
            "query": schema.query_operation_name,
            "mutation": schema.mutation_operation_name,
            "subscription": schema.subscription_operation_name,
        }
        for kind, name in roots.items():
            root = schema.type_definitions.get(name)
            if root is not None:
                self.hidden[name] = frozenset(
                    f.name for f in root.fields if not role.may_run(kind, f.name)
                )
        for entity, fields in role.hidden.items():
            self.hidden[entity] = self.hidden.get(entity, frozenset()) | fields
            self.hidden[f"{entity}Where"] = fields  # filters and orders on them: FORBIDDEN
            self.hidden[f"{entity}OrderField"] = fields
        shown_roots = [
            schema.type_definitions[name]
            for name in roots.values()
            if name in schema.type_definitions and self._fields(schema.type_definitions[name])
        ]
        self.names = self._reachable(schema, shown_roots)
        self.types = [t for t in schema.types if t.name in self.names]
        self.query_type = schema.queryType
        self.mutation_type = schema.mutationType if schema.mutationType in shown_roots else None
        self.subscription_type = (
            schema.subscriptionType if schema.subscriptionType in shown_roots else None
        )

    def _fields(self, definition: Any) -> list[Any]:
        hidden = self.hidden.get(definition.name, frozenset())
        return [f for f in definition.fields if f.name not in hidden]

    def fields(self, definition: Any) -> list[Any]:
        """The fields of an object or interface type the role sees."""
        return self._fields(definition)

    def input_fields(self, definition: Any) -> list[Any]:
        hidden = self.hidden.get(definition.name, frozenset())
        return [f for f in definition.inputFields if f.name not in hidden]

    def enum_values(self, definition: Any) -> list[Any]:
        hidden = self.hidden.get(definition.name, frozenset())
        return [v for v in definition.enumValues if v.name not in hidden]

    def shows(self, definition: Any) -> bool:
        return definition is not None and _named(definition).name in self.names

    def _reachable(self, schema: Any, roots: list[Any]) -> frozenset[str]:
        """The names of the types reachable from `roots` through what the role sees, and from
        the introspection types."""
        seen: set[str] = set()
        pending = [*roots, *(t for t in schema.types if t.name.startswith("__"))]
        while pending:
            definition = _named(pending.pop())
            if definition is None or definition.name in seen:
                continue
            seen.add(definition.name)
            pending.extend(self._uses(definition))
        return frozenset(seen)

    def _uses(self, definition: Any) -> Iterator[Any]:
        kind = getattr(definition, "kind", None)
        if kind in ("OBJECT", "INTERFACE"):
            for field in self._fields(definition):
                if field.name.startswith("__"):
                    continue
                yield field.graphql_type
                yield from (argument.graphql_type for argument in field.args)
            yield from getattr(definition, "interfaces", None) or ()
        if kind in ("INTERFACE", "UNION"):
            yield from getattr(definition, "possibleTypes", None) or ()
        if kind == "INPUT_OBJECT":
            yield from (field.graphql_type for field in self.input_fields(definition))


class RoleViews:
    """A gateway's views of its schema, one per role, built once (see the module); `role`
    says whose request is being served (None: no rules, the whole schema)."""

    def __init__(
        self, schema: Any, roles: dict[str, RolePlan], role: Callable[[], RolePlan | None]
    ) -> None:
        self.views = {name: SchemaView(schema, plan) for name, plan in roles.items()}
        self.role = role

    def current(self) -> SchemaView | None:
        """The view of the caller being served; None: the whole schema."""
        role = self.role()
        return None if role is None else self.views.get(role.name)


def serve_role_views(schema: Any, views: RoleViews) -> None:
    """Make the baked `schema`'s introspection answer each caller their role's view: the
    __Schema and __Type resolvers read it (`_view`), and `__type(name:)` answers null for a
    type the view does not show."""
    schema.cqrs_flow_views = views
    field = schema.find_type(schema.query_operation_name).find_field("__type")
    baked = field.resolver  # partial(resolve_field, field_definition=, resolver=, ...)
    inner = baked.keywords["resolver"]

    async def type_of(parent: Any, args: Any, ctx: Any, info: Any, **options: Any) -> Any:
        found = await inner(parent, args, ctx, info, **options)
        view = views.current()
        return found if view is None or view.shows(found) else None

    field.resolver = partial(baked.func, *baked.args, **{**baked.keywords, "resolver": type_of})


def _view(info: Any) -> SchemaView | None:
    """The view of the caller being served, on a schema with role views; else None."""
    views = getattr(info.schema, "cqrs_flow_views", None)
    return views.current() if isinstance(views, RoleViews) else None


async def _schema_types(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    view = _view(info)
    return parent.types if view is None else view.types


async def _schema_query_type(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    return parent.queryType


async def _schema_mutation_type(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    view = _view(info)
    return parent.mutationType if view is None else view.mutation_type


async def _schema_subscription_type(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    view = _view(info)
    return parent.subscriptionType if view is None else view.subscription_type


async def _type_interfaces(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    if getattr(parent, "kind", None) != "OBJECT":
        return None
    view = _view(info)
    return [t for t in parent.interfaces if view is None or view.shows(t)]


async def _type_possible_types(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    if getattr(parent, "kind", None) not in ("INTERFACE", "UNION"):
        return None
    view = _view(info)
    return [t for t in parent.possibleTypes if view is None or view.shows(t)]


async def _type_fields(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    if getattr(parent, "kind", None) not in ("OBJECT", "INTERFACE"):
        return None
    view = _view(info)
    fields = parent.fields if view is None else view.fields(parent)
    if args.get("includeDeprecated"):
        return fields
    return [f for f in fields if not f.isDeprecated]


async def _type_enum_values(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    if getattr(parent, "kind", None) != "ENUM":
        return None
    view = _view(info)
    values = parent.enumValues if view is None else view.enum_values(parent)
    if args.get("includeDeprecated"):
        return values
    return [v for v in values if not v.isDeprecated]


async def _type_input_fields(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    if getattr(parent, "kind", None) != "INPUT_OBJECT":
        return None
    view = _view(info)
    return _input_values(parent.inputFields if view is None else view.input_fields(parent), args)


async def _specified_by_url(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    if getattr(parent, "kind", None) != "SCALAR":
        return None
    return _directive_argument(parent, "specifiedBy", "url")[1]


async def _is_one_of(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> bool | None:
    if getattr(parent, "kind", None) != "INPUT_OBJECT":
        return None
    return _directive_argument(parent, "oneOf", "")[0]


async def _args(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> Any:
    return _input_values(parent.args, args)


async def _false(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> bool:
    return False


async def _none(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> None:
    return None


async def _input_is_deprecated(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> bool:
    return _directive_argument(parent, "deprecated", "reason")[0]


async def _input_deprecation_reason(
    parent: Any, args: dict[str, Any], ctx: Any, info: Any
) -> str | None:
    deprecated, reason = _directive_argument(parent, "deprecated", "reason")
    if not deprecated:
        return None
    return reason if isinstance(reason, str) else _DEFAULT_REASON


async def _default_value(parent: Any, args: dict[str, Any], ctx: Any, info: Any) -> str | None:
    node = getattr(parent, "default_value", None)
    return None if node is None else _literal(node)


def _literal(node: Any) -> str:
    """A value of the SDL as GraphQL writes it: tartiflette's own text of a string does not
    escape its quotes and backslashes."""
    kind = type(node).__name__
    if kind == "StringValueNode":
        return json.dumps(node.value, ensure_ascii=False)  # JSON's escapes are GraphQL's
    if kind == "ListValueNode":
        return "[" + ", ".join(_literal(value) for value in node.values) + "]"
    if kind == "ObjectValueNode":
        fields = (f"{field.name}: {_literal(field.value)}" for field in node.fields)
        return "{" + ", ".join(fields) + "}"
    return str(node)


def _input_values(values: list[Any], args: dict[str, Any]) -> list[Any]:
    if args.get("includeDeprecated"):
        return values
    return [v for v in values if not _directive_argument(v, "deprecated", "reason")[0]]


def bake(schema_name: str, config: dict[str, Any] | None = None) -> str:
    """Register the resolvers and directives of SDL for `schema_name` (tartiflette calls this
    for each module it is given, before its built-ins), and return SDL."""
    resolvers = {
        "__Schema.description": _none,  # tartiflette reads no description of a schema
        "__Schema.types": _schema_types,
        "__Schema.queryType": _schema_query_type,
        "__Schema.mutationType": _schema_mutation_type,
        "__Schema.subscriptionType": _schema_subscription_type,
        "__Type.interfaces": _type_interfaces,
        "__Type.possibleTypes": _type_possible_types,
        "__Type.fields": _type_fields,
        "__Type.enumValues": _type_enum_values,
        "__Type.inputFields": _type_input_fields,
        "__Type.specifiedByURL": _specified_by_url,
        "__Type.isOneOf": _is_one_of,
        "__Field.args": _args,
        "__Directive.args": _args,
        "__Directive.isRepeatable": _false,  # tartiflette has no repeatable directives
        "__Directive.isDeprecated": _false,
        "__Directive.deprecationReason": _none,
        "__InputValue.defaultValue": _default_value,
        "__InputValue.isDeprecated": _input_is_deprecated,
        "__InputValue.deprecationReason": _input_deprecation_reason,
    }
    for name, resolver in resolvers.items():
        Resolver(name, schema_name=schema_name)(resolver)
    Directive("deprecated", schema_name=schema_name)(_Deprecated)
    Directive("specifiedBy", schema_name=schema_name)(_SpecifiedBy)
    Directive("oneOf", schema_name=schema_name)(_OneOf)
    return SDL


def serve_user_types(schema: Any, sdl: str) -> None:
    """Leave what tartiflette adds to every schema (ENGINE_ADDITIONS) out of the baked `schema`
    unless `sdl` (what the engine was made from) names it, and list the introspection types
    among the schema's types, as the specification says (tartiflette leaves them out).

    NodeError if a OneOf input object of `sdl` is not a valid one."""
    problems = list(_one_of_problems(schema))
    if problems:
        raise NodeError("the GraphQL schema is not valid: " + "; ".join(problems))
    named = set(_NAMES.findall(_without_comments_and_strings(sdl)))
    for type_name in ENGINE_ADDITIONS["types"]:
        if type_name not in named and type_name in schema.type_definitions:
            del schema.type_definitions[type_name]
            schema._scalar_definitions.pop(type_name, None)
    for directive in ENGINE_ADDITIONS["directives"]:
        if directive not in named:
            schema._directive_definitions.pop(directive, None)
    deprecated = schema._directive_definitions["deprecated"]
    deprecated.locations = [*deprecated.locations, "DIRECTIVE_DEFINITION"]
    schema.directives = list(schema._directive_definitions.values())
    schema.types = list(schema.type_definitions.values())


def _one_of_problems(schema: Any) -> Any:
    """Why an input object with @oneOf is not a OneOf input object: each of its fields must be
    nullable and have no default (the specification's rules)."""
    for type_name, definition in schema.type_definitions.items():
        if getattr(definition, "kind", None) != "INPUT_OBJECT":
            continue
        if not _directive_argument(definition, "oneOf", "")[0]:
            continue
        for field in definition.inputFields:
            if isinstance(field.gql_type, GraphQLNonNull) or field.default_value is not None:
                yield (
                    f"input {type_name} is @oneOf, so its field '{field.name}' must be nullable "
                    "and have no default"
                )


_IGNORED = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def _without_comments_and_strings(sdl: str) -> str:
    """`sdl` without its comments and descriptions, whose words name nothing."""
    return _IGNORED.sub(" ", sdl)
