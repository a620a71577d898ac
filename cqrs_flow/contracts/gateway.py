"""The gateway's contract: its GraphQL schema's queries and mutations mapped onto reader RPCs and
commands, with every argument and result checked against the protobuf fields it meets."""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from cqrs_flow.contracts import proto_type
from cqrs_flow.contracts.auth import AuthPlan, auth_plan
from cqrs_flow.contracts.documents import (
    DocumentPlans,
    EntityView,
    document_plans,
    misfits_of_written_types,
)
from cqrs_flow.contracts.sdl import Schema, SchemaField, TypeRef, parse_schema
from cqrs_flow.contracts.writer import command_plan
from cqrs_flow.errors import ProjectFileError, ProtoError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.messages import (
    INTEGER_TYPES,
    PathError,
    find_field,
    is_repeated,
    resolve_path,
)
from cqrs_flow.topology.model import GatewayNode, Mutation, Query, ReaderNode, StoreNode, Topology
from cqrs_flow.topology.paths import MAX_SOURCE_BYTES, read_project_file
from cqrs_flow.topology.problems import KeyPath, Problems

__all__ = ["Call", "GatewayPlan", "MutationPlan", "QueryPlan", "gateway_plan"]


@dataclass(frozen=True)
class Call:
    """A reader RPC called with GraphQL arguments mapped onto its request."""

    rpc: str
    request: type[Message]
    arguments: dict[str, str]  # GraphQL argument -> request field path


@dataclass(frozen=True)
class QueryPlan:
    field: str
    call: Call
    result: str | None  # response field returned; None: the whole response
    many: bool


@dataclass(frozen=True)
class MutationPlan:
    field: str
    command: str
    topic: str
    request: type[Message]
    arguments: dict[str, str]
    generate: dict[str, str]  # request field path -> generator name
    key_path: str | None
    command_id_path: str | None
    exists: Call | None
    message: str
    not_found: str
    entity: str
    exists_entity: EntityView | None = None  # `exists: <Entity>`: looked up by the key
    subject_path: str | None = None  # where the gateway puts the caller's subject


@dataclass(frozen=True)
class GatewayPlan:
    schema: Schema  # as the engine serves it: the file's, and what documents.extras added
    queries: dict[str, QueryPlan] = field(default_factory=dict)
    mutations: dict[str, MutationPlan] = field(default_factory=dict)
    documents: DocumentPlans = field(default_factory=DocumentPlans)
    auth: AuthPlan | None = None  # the end-user rules; None: the gateway has no `auth`


_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)

# Which proto fields an argument of a built-in scalar can fill. The gateway gets a Float argument
# as a Python float, which protobuf refuses for an integer field (even 4.0), so Float fills only
# float fields; an ID arrives as a string, which set_path turns into an integer for integer fields.
_GRAPHQL_TO_PROTO: dict[str, Callable[[FieldDescriptor], bool]] = {
    "String": lambda f: f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_ENUM),
    "ID": lambda f: f.type == FieldDescriptor.TYPE_STRING or f.type in INTEGER_TYPES,
    "Int": lambda f: f.type in INTEGER_TYPES,
    "Float": lambda f: f.type in _FLOATS,
    "Boolean": lambda f: f.type == FieldDescriptor.TYPE_BOOL,
}

# Which proto fields a result field of a built-in scalar can answer with (as to_data gives them).
_PROTO_TO_GRAPHQL: dict[str, Callable[[FieldDescriptor], bool]] = {
    "String": lambda f: f.message_type is None,
    "ID": lambda f: f.type == FieldDescriptor.TYPE_STRING or f.type in INTEGER_TYPES,
    "Int": lambda f: f.type in INTEGER_TYPES,
    "Float": lambda f: f.type in _FLOATS or f.type in INTEGER_TYPES,
    "Boolean": lambda f: f.type == FieldDescriptor.TYPE_BOOL,
}


def _list_misfit(type_ref: TypeRef, field: FieldDescriptor) -> str | None:
    if type_ref.is_list == is_repeated(field):
        return None
    return (
        f"{type_ref.text} is {'a list' if type_ref.is_list else 'not a list'} "
        f"but {field.full_name} is {'repeated' if is_repeated(field) else 'not repeated'}"
    )


def _input_misfits(
    type_ref: TypeRef, field: FieldDescriptor, schema: Schema, seen: frozenset[str] = frozenset()
) -> Iterator[str]:
    """Why a GraphQL input value of `type_ref` cannot fill the proto `field` (nothing if it can)."""
    base = type_ref.base
    if (problem := _list_misfit(type_ref, field)) is not None:
        yield problem
    elif base in _GRAPHQL_TO_PROTO:
        if not _GRAPHQL_TO_PROTO[base](field):
            yield f"{base} cannot fill {field.full_name} ({proto_type(field)})"
    elif base in schema.enums:
        if field.enum_type is not None:
            known = field.enum_type.values_by_name
            missing = [v for v in schema.enum_values.get(base, ()) if v not in known]
            if missing:
                lacking = field.enum_type.full_name
                yield f"enum {base} has {', '.join(missing)}, which {lacking} lacks"
        elif field.type != FieldDescriptor.TYPE_STRING:  # a string field takes the value's name
            yield f"enum {base} cannot fill {field.full_name} ({proto_type(field)})"
    elif base in schema.input_types:
        if field.message_type is None:
            yield f"input {base} cannot fill {field.full_name} ({proto_type(field)})"
        elif base not in seen:
            for name, ref in schema.input_fields.get(base, {}).items():
                inner = field.message_type.fields_by_name.get(name)
                if inner is None:
                    lacking = field.message_type.full_name
                    yield f"input {base} has a field '{name}', which {lacking} lacks"
                else:
                    yield from (
                        f"{base}.{name}: {p}"
                        for p in _input_misfits(ref, inner, schema, seen | {base})
                    )
    else:
        yield f"{base} is not a type the gateway can put in a protobuf field"


def _result_misfits(
    type_name: str,
    message: Descriptor,
    schema: Schema,
    relations: dict[str, set[str]],
    seen: frozenset[str] = frozenset(),
) -> Iterator[str]:
    """Why the GraphQL object type `type_name` cannot show `message` as to_data gives it: the
    gateway answers with proto field names, enums by value name, messages as nested objects.
    Fields that are relations (`relations`: type -> fields) are answered by the gateway."""
    if type_name in seen:
        return
    for name, ref in schema.fields_of(type_name).items():
        if name in relations.get(type_name, ()):
            continue
        field = message.fields_by_name.get(name)
        if field is None:
            yield (
                f"{type_name}.{name} matches no field of {message.full_name} (the gateway "
                f"answers with its field names: {', '.join(message.fields_by_name)})"
            )
            continue
        where = f"{type_name}.{name}: {ref.text}"
        if (problem := _list_misfit(ref, field)) is not None:
            yield f"{where}: {problem}"
        elif ref.base in schema.object_fields:
            if field.message_type is None:
                yield f"{where} is an object type but {field.full_name} is {proto_type(field)}"
            else:
                yield from _result_misfits(
                    ref.base, field.message_type, schema, relations, seen | {type_name}
                )
        elif ref.base in schema.enums:
            if field.enum_type is not None:
                missing = [
                    v.name
                    for v in field.enum_type.values
                    if v.name not in schema.enum_values.get(ref.base, ())
                ]
                if missing:
                    yield (
                        f"{where}: enum {ref.base} lacks {', '.join(missing)}, which "
                        f"{field.full_name} may hold (an unset enum field reads as its zero value)"
                    )
            elif field.type != FieldDescriptor.TYPE_STRING:
                yield f"{where} cannot show {field.full_name} ({proto_type(field)})"
        elif ref.base in _PROTO_TO_GRAPHQL and not _PROTO_TO_GRAPHQL[ref.base](field):
            yield f"{where} cannot show {field.full_name} ({proto_type(field)})"


def _map_arguments(
    sdl_field: SchemaField,
    request: Descriptor,
    explicit: dict[str, str],
    report: Problems,
    path: KeyPath,
    schema: Schema,
    partial: bool = False,
) -> dict[str, str]:
    """GraphQL argument -> request field path, by explicit mapping or by name. With `partial`,
    arguments that match no field are left out instead of reported."""
    mapping = {}
    for name in explicit:
        if name not in sdl_field.arguments:
            report(
                path + ("arguments", name),
                f"{sdl_field.owner}.{sdl_field.name} has no argument '{name}'",
            )
    for name, argument in sdl_field.arguments.items():
        target = explicit.get(name) or find_field(request, name)
        where = path + ("arguments", name) if name in explicit else path
        if target is None:
            if partial:
                continue
            report(
                where,
                f"argument '{name}' of {sdl_field.owner}.{sdl_field.name} matches no field of "
                f"{request.full_name}; map it with 'arguments: {{{name}: <field path>}}'",
            )
            continue
        try:
            proto_field = resolve_path(request, target)[-1]
        except PathError as exc:
            report(where, str(exc))
            continue
        misfits = list(_input_misfits(argument, proto_field, schema))
        if misfits:
            for misfit in misfits:
                report(
                    where,
                    f"argument '{name}: {argument.text}' of {sdl_field.owner}.{sdl_field.name} "
                    f"does not fit {request.full_name}.{target}: {misfit}",
                )
            continue
        mapping[name] = target
    return mapping


def _template(text: str, names: set[str], report: Problems, path: KeyPath) -> None:
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        report(path, f"bad message template {text!r}: {exc}")
        return
    unknown = sorted(used - names)
    if unknown:
        report(
            path,
            f"template {text!r} uses {', '.join('{' + u + '}' for u in unknown)}; "
            f"it may use {', '.join('{' + n + '}' for n in sorted(names))}",
        )


def gateway_plan(
    topology: Topology, gateway: GatewayNode, protos: ProtoSet, report: Problems
) -> GatewayPlan | None:
    base = ("nodes", gateway.name)
    try:
        text = read_project_file(topology, gateway.schema, MAX_SOURCE_BYTES, "GraphQL schema")
        schema = parse_schema(text.decode("utf-8"))
    except ProjectFileError as exc:
        report(base + ("schema",), str(exc))
        return None
    except UnicodeDecodeError:
        report(base + ("schema",), f"{gateway.schema}: not UTF-8 text, so not a GraphQL schema")
        return None
    except ValueError as exc:
        report(base + ("schema",), f"{gateway.schema}: {exc}")
        return None
    reader = topology.nodes.get(gateway.reader)
    if not isinstance(reader, ReaderNode):
        return None
    try:
        reader_service = protos.service(reader.service)
    except ProtoError:
        return None  # reported with the reader
    documents = document_plans(topology, gateway, schema, protos, report)
    for misfit in misfits_of_written_types(documents, schema):
        report(base + ("schema",), f"{gateway.schema}: {misfit}")
    if documents.extras:
        try:
            schema = parse_schema(schema.text + documents.extras)
        except ValueError as exc:  # a type or field the schema defines in a way not foreseen
            report(base + ("schema",), f"{gateway.schema} with the types cqrs-flow adds: {exc}")
            return None

    def call(
        rpc: str,
        sdl_field: SchemaField,
        explicit: dict[str, str],
        path: KeyPath,
        partial: bool = False,
    ) -> Call | None:
        method = reader_service.methods_by_name.get(rpc)
        if method is None:
            report(path, f"{reader.service} (reader '{reader.name}') has no RPC '{rpc}'")
            return None
        arguments = _map_arguments(
            sdl_field, method.input_type, explicit, report, path[:-1], schema, partial
        )
        if partial and not arguments:
            report(
                path,
                f"no argument of {sdl_field.owner}.{sdl_field.name} matches a field of "
                f"{method.input_type.full_name}, so '{rpc}' cannot be asked",
            )
            return None
        return Call(rpc, protos.class_of(method.input_type), arguments)

    for view in documents.entities.values():  # the entity types show documents as they are
        if view.name in schema.object_fields:
            descriptor = cast(Descriptor, view.document.DESCRIPTOR)
            for misfit in _result_misfits(view.name, descriptor, schema, documents.relation_fields):
                report(
                    base + ("schema",),
                    f"type {view.name} shows {descriptor.full_name} documents and does not "
                    f"fit them: {misfit}",
                )
    plan = GatewayPlan(schema, documents=documents)
    queries = _mapped(gateway, "queries", schema.queries, gateway.queries, report)
    for name, sdl_field, query in queries:
        path = base + ("queries", name)
        if not query.rpc:
            continue  # a list or get: a document plan
        mapped = call(query.rpc, sdl_field, dict(query.arguments), path + ("rpc",))
        if mapped is None:
            continue
        response = reader_service.methods_by_name[query.rpc].output_type
        result = query.result or (response.fields[0].name if len(response.fields) == 1 else None)
        if result is not None:
            try:
                result_field = resolve_path(response, result)[-1]
            except PathError as exc:
                report(path + ("result",), str(exc))
                continue
            is_object = sdl_field.returns.base in schema.object_fields
            if is_object != (result_field.message_type is not None):
                report(
                    path + ("result",),
                    f"Query.{name} returns {sdl_field.returns.text} but "
                    f"{response.full_name}.{result} is "
                    f"{'a message' if result_field.message_type else 'a scalar'}",
                )
                continue
            if is_repeated(result_field) != sdl_field.returns.is_list:
                report(
                    path + ("result",),
                    f"Query.{name} returns {sdl_field.returns.text} but "
                    f"{response.full_name}.{result} is "
                    f"{'a list' if is_repeated(result_field) else 'not a list'}",
                )
                continue
            shown = result_field.message_type
        else:
            shown = response
        if shown is not None and sdl_field.returns.base in schema.object_fields:
            misfits = list(
                _result_misfits(sdl_field.returns.base, shown, schema, documents.relation_fields)
            )
            for misfit in misfits:
                report(
                    path + ("result",) if query.result else path,
                    f"Query.{name} returns {sdl_field.returns.text}, which does not fit "
                    f"{shown.full_name}: {misfit}",
                )
            if misfits:
                continue
        plan.queries[name] = QueryPlan(name, mapped, result, sdl_field.returns.is_list)

    mutations = _mapped(gateway, "mutations", schema.mutations, gateway.mutations, report)
    for name, sdl_field, mutation in mutations:
        path = base + ("mutations", name)
        missing = {"status", "message"} - set(schema.fields_of(sdl_field.returns.base))
        if missing:
            report(
                path,
                f"Mutation.{name} must return a type with fields status and message "
                f"(like RequestResponse); {sdl_field.returns.base} lacks "
                f"{', '.join(sorted(missing))}",
            )
        command = topology.commands.get(mutation.command)
        writers = topology.writers_of(mutation.command)
        target_store = topology.nodes.get(writers[0].store.node) if writers else None
        if command is None or not isinstance(target_store, StoreNode):
            continue  # reported by the wiring checks
        command_path = path + ("command",)
        planned = command_plan(
            topology, mutation.command, target_store, protos, report, command_path
        )
        if planned is None:
            continue
        # protobuf's stubs give DESCRIPTOR as either implementation's class; both are this API
        request = cast(Descriptor, planned.request.DESCRIPTOR)
        arguments = _map_arguments(
            sdl_field, request, dict(mutation.arguments), report, path, schema
        )
        for target in mutation.generate:
            try:
                generated = resolve_path(request, target)[-1]
                if generated.type != FieldDescriptor.TYPE_STRING or is_repeated(generated):
                    raise PathError(f"'{target}' must be a string field to hold a generated id")
            except PathError as exc:
                report(path + ("generate", target), str(exc))
        exists_entity = documents.entities.get(mutation.exists or "")
        if mutation.exists in topology.entities and exists_entity is None:
            report(
                path + ("exists",),
                f"the reader of gateway '{gateway.name}' cannot read {mutation.exists}",
            )
        exists = (
            call(mutation.exists, sdl_field, {}, path + ("exists",), partial=True)
            if mutation.exists and mutation.exists not in topology.entities
            else None
        )
        if exists_entity is not None and planned.key_path is None:
            report(
                path + ("exists",),
                f"exists: {mutation.exists} looks the mutation's key up, but command "
                f"'{mutation.command}' has no key field",
            )
        names = {"entity", "id", *sdl_field.arguments}
        _template(mutation.message, names, report, path + ("message",))
        _template(mutation.not_found, names, report, path + ("not_found",))
        plan.mutations[name] = MutationPlan(
            name,
            mutation.command,
            planned.topic,
            planned.request,
            arguments,
            dict(mutation.generate),
            planned.key_path,
            planned.command_id_path,
            exists,
            mutation.message,
            mutation.not_found,
            planned.entity.lower() or "entity",
            exists_entity,
            planned.subject_path,
        )
    writes = {name: mutation.entity for name, mutation in plan.mutations.items()}
    return replace(plan, auth=auth_plan(topology, gateway, schema, documents, report, writes))


_Mapping = TypeVar("_Mapping", Query, Mutation)


def _mapped(
    gateway: GatewayNode,
    key: str,
    fields: dict[str, SchemaField],
    mappings: Mapping[str, _Mapping],
    report: Problems,
) -> Iterator[tuple[str, SchemaField, _Mapping]]:
    """Each root field of the schema with its mapping under `key` (queries or mutations); a field
    without a mapping, and then a mapping without a field, reported."""
    root, target = ("Query", "<reader RPC>") if key == "queries" else ("Mutation", "<command>")
    for name, sdl_field in fields.items():
        mapping = mappings.get(name)
        if mapping is not None:
            yield name, sdl_field, mapping
        else:
            report(
                ("nodes", gateway.name, key),
                f"{root}.{name} in {gateway.schema} has no mapping; add "
                f"'{name}: {target}' under {key}",
            )
    for name in mappings:
        if name not in fields:
            report(
                ("nodes", gateway.name, key, name), f"{gateway.schema} has no field {root}.{name}"
            )
