"""The gateway's contract with the document service: lists (Relay connections), lookups by key,
relations between entities and live subscriptions to their changes, as GraphQL fields.

A gateway answers `list: <Entity>` and `get: <Entity>` queries, and every relation of an entity
whose GraphQL type its schema shows, through the reader's document service
(cqrs_flow/protobuf/proto/cqrs_flow/documents.proto). The types and fields that needs and the
schema leaves out are written here (`extras`): PageInfo, `<Entity>Connection`, `<Entity>Edge`,
`<Entity>Where` with a filter input per indexed field, `<Entity>Order`; the list and get query
fields; the relation fields; for `subscriptions:`, `ChangeOp`, `<Entity>Change` and the
subscription fields (the Subscription type itself when the schema has none). What the schema
does write is checked against them, so a hand-written schema may show as much or as little as
it wants. docs/BEHAVIOUR.md, "Lists, filters and relations" and "Live subscriptions", says how a
client uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from cqrs_flow.contracts.sdl import Schema, TypeRef
from cqrs_flow.errors import ProtoError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.messages import INTEGER_TYPES, is_repeated
from cqrs_flow.topology.model import Entity, GatewayNode, ReaderNode, Topology
from cqrs_flow.topology.problems import KeyPath, Problems

__all__ = [
    "CONNECTION_ARGUMENTS",
    "LIVE_LIST_ARGUMENTS",
    "ConnectionPlan",
    "DocumentPlans",
    "EntityView",
    "LookupPlan",
    "SubscriptionPlan",
    "document_plans",
    "filter_ops",
    "misfits_of_written_types",
]

# The arguments of a connection field, and the GraphQL type of each (`{}`: the entity's name).
CONNECTION_ARGUMENTS = {
    "first": "Int",
    "after": "String",
    "last": "Int",
    "before": "String",
    "where": "{}Where",
    "orderBy": "{}Order",
}
# The arguments of a `changes:` subscription field (`{}`: the entity's name); a `changed:` one
# takes the key and `after`.
LIVE_LIST_ARGUMENTS = {"where": "{}Where", "first": "Int", "after": "String"}
# The gateway's own subscription (commands.py): no `subscriptions:` entry may take its name.
_COMMAND_SETTLED = "commandSettled"
# What a filter input of each kind offers; `{}` is the kind's GraphQL type.
_FILTER_OPS = {
    "String": ("eq", "in", "gt", "gte", "lt", "lte", "prefix"),
    "Int": ("eq", "in", "gt", "gte", "lt", "lte"),
    "Float": ("eq", "in", "gt", "gte", "lt", "lte"),
    "Boolean": ("eq",),
}
_ENUM_FILTER_OPS = ("eq", "in")
_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)

_PAGE_INFO = """
type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}
"""
_ORDER_DIRECTION = "\nenum OrderDirection {\n  ASC\n  DESC\n}\n"
# One line: the engine keeps a block string's first and last line breaks in the description.
_CHANGE_OP = (
    "\n\"What a live subscription's message tells: CURRENT is how things stood when it started "
    "(its first message); INSERT, UPDATE and DELETE are what the store did, in the order it did "
    'them."\nenum ChangeOp {\n  CURRENT\n  INSERT\n  UPDATE\n  DELETE\n}\n'
)
# The fields of `<Entity>Change` (`{}`: the entity's name), and what each holds.
CHANGE_FIELDS = {
    "op": (
        "ChangeOp!",
        "CURRENT for the first message (how things stood), then what the store did.",
    ),
    "position": (
        "String!",
        "The change log's position this message brings the subscription to (a whole number): "
        "subscribe again with after set to it to go on from there.",
    ),
    "key": (
        "String",
        "The key of the document that changed (in the first message of one document: its key; "
        "of a list: null).",
    ),
    "document": (
        "{}",
        "The document after the change; null when it was deleted or no longer matches the "
        "filter (and in the first message, when there is no such document).",
    ),
    "matches": (
        "Boolean!",
        "Whether the document, after the change, is one the subscription shows; false: drop "
        "the key (deleted, or out of the filter).",
    ),
    "documents": (
        "[{}!]",
        "In the first message of a list: the documents the filter matched, oldest first (at "
        "most first); null in the others.",
    ),
    "has_more": (
        "Boolean",
        "In the first message of a list: whether more documents matched than it holds.",
    ),
    "command_id": ("String", "The command that made the change, if one did."),
    "at": ("String", "When the store made the change (RFC 3339); null in the first message."),
    "subject": (
        "String",
        "Who asked for the change (the sub of their token), shown to that caller only; null "
        "to others, for a change no known caller asked for, and in the first message.",
    ),
}


@dataclass(frozen=True)
class EntityView:
    """What the gateway needs of an entity: its message class, key and indexed fields (field ->
    the GraphQL type its filter compares: String, Int, Float, Boolean or an enum's name)."""

    name: str
    document: type[Message]
    key: str
    indexes: dict[str, str]

    def filter_input(self, field_name: str) -> str:
        kind = self.indexes[field_name]
        return f"{kind}Filter"


@dataclass(frozen=True)
class ConnectionPlan:
    """A field answering a page of an entity's documents: a `list:` query (owner: the query
    type), or a to-many relation (owner: the parent entity's type, `by`: the target's field that
    holds the parent's key, `parent_key`: the parent's key field)."""

    owner: str
    field: str
    entity: EntityView
    arguments: frozenset[str]  # the connection arguments the field has
    by: str | None = None
    parent_key: str | None = None


@dataclass(frozen=True)
class LookupPlan:
    """A field answering one document by its key: a `get:` query (`argument` holds the key), or a
    to-one relation (`key_field`: the parent's field holding it). `required`: the field is
    non-null, so a key that leads nowhere is an error instead of null."""

    owner: str
    field: str
    entity: EntityView
    argument: str | None = None
    key_field: str | None = None
    required: bool = False


@dataclass(frozen=True)
class SubscriptionPlan:
    """A live subscription field (owner: the subscription type) following an entity's changes:
    one document, by the key its `argument` gives (`changed:`), or the documents a filter
    matches (`changes:`, argument None). `arguments`: the optional ones the field has (where,
    first, after)."""

    owner: str
    field: str
    entity: EntityView
    argument: str | None
    arguments: frozenset[str]

    @property
    def many(self) -> bool:
        return self.argument is None


@dataclass
class DocumentPlans:
    """What a gateway answers from the document service, and the SDL its schema needed added."""

    extras: str = ""
    entities: dict[str, EntityView] = field(default_factory=dict)
    connections: list[ConnectionPlan] = field(default_factory=list)
    lookups: list[LookupPlan] = field(default_factory=list)
    subscriptions: list[SubscriptionPlan] = field(default_factory=list)
    # GraphQL fields on an entity's type that are relations, not document fields: type -> fields
    relation_fields: dict[str, set[str]] = field(default_factory=dict)


def _filter_kind(descriptor: FieldDescriptor, shown: TypeRef | None, schema: Schema) -> str:
    """The GraphQL type a filter on this document field compares."""
    if descriptor.enum_type is not None:
        return shown.base if shown is not None and shown.base in schema.enums else "String"
    if descriptor.type in INTEGER_TYPES:
        return "Int"
    if descriptor.type in _FLOATS:
        return "Float"
    if descriptor.type == FieldDescriptor.TYPE_BOOL:
        return "Boolean"
    return "String"


def _view(entity: Entity, protos: ProtoSet, schema: Schema) -> EntityView | None:
    try:
        document: Descriptor = protos.message_descriptor(entity.document)
    except ProtoError:
        return None  # reported with the store that holds it
    indexes: dict[str, str] = {}
    for name in dict.fromkeys((entity.key, *entity.indexes)):
        descriptor = document.fields_by_name.get(name)
        if descriptor is None or is_repeated(descriptor) or descriptor.message_type is not None:
            continue  # reported by the entity checks
        shown = schema.fields_of(entity.name).get(name)
        indexes[name] = _filter_kind(descriptor, shown, schema)
    return EntityView(entity.name, protos.class_of(document), entity.key, indexes)


def document_plans(
    topology: Topology,
    gateway: GatewayNode,
    schema: Schema,
    protos: ProtoSet,
    report: Problems,
) -> DocumentPlans:
    """The lists, lookups and relations `gateway` answers, the SDL to add for them to `schema`
    (the schema as written), and every misfit between the two reported."""
    plans = DocumentPlans()
    base: KeyPath = ("nodes", gateway.name)
    reader = topology.nodes.get(gateway.reader)
    if not isinstance(reader, ReaderNode):
        return plans
    store = topology.nodes.get(reader.store.node)
    reachable = set(getattr(store, "entities", ()))

    def view(name: str) -> EntityView | None:
        if name not in plans.entities:
            entity = topology.entities.get(name)
            if entity is None or name not in reachable:
                return None  # reported by the topology checks
            found = _view(entity, protos, schema)
            if found is None:
                return None
            plans.entities[name] = found
        return plans.entities[name]

    extras = _Extras(schema)
    query_type = schema.query_type
    for name, query in gateway.queries.items():
        path = base + ("queries", name)
        if query.list:
            target = view(query.list)
            if target is None or not _shown(schema, target, report, path, gateway):
                continue
            extras.connection_types(target)
            arguments = _connection_field(
                schema,
                extras,
                query_type,
                name,
                target,
                report,
                path,
                written=name in schema.queries,
            )
            if arguments is not None:
                plans.connections.append(ConnectionPlan(query_type, name, target, arguments))
        elif query.get:
            target = view(query.get)
            if target is None or not _shown(schema, target, report, path, gateway):
                continue
            lookup = _get_field(schema, extras, name, target, report, path)
            if lookup is not None:
                plans.lookups.append(lookup)

    _subscriptions(gateway, schema, extras, view, plans, report)

    # Relations of every entity the schema shows (as written, or as a list or get added above).
    shown = [
        e for e in topology.entities.values() if e.name in schema.object_fields and view(e.name)
    ]
    for entity in shown:
        fields = plans.entities[entity.name].document.DESCRIPTOR.fields_by_name
        for relation in entity.relations.values():
            if relation.name in fields:
                continue  # named like a document field: reported by the entity checks
            path = entity.path + ("relations", relation.name)
            plans.relation_fields.setdefault(entity.name, set()).add(relation.name)
            target = view(relation.entity)
            if target is None:
                if relation.entity in topology.entities and relation.entity not in reachable:
                    report(
                        path,
                        f"{entity.name}.{relation.name} leads to {relation.entity}, which the "
                        f"reader of gateway '{gateway.name}' cannot read (its store does not "
                        "hold it)",
                    )
                continue
            if relation.entity not in schema.object_fields:
                report(
                    path,
                    f"{entity.name}.{relation.name} leads to {relation.entity}, but "
                    f"{gateway.schema} has no type {relation.entity}; add it (its fields: the "
                    f"fields of {target.document.DESCRIPTOR.full_name} to show)",
                )
                continue
            if relation.many:
                extras.connection_types(target)
                arguments = _connection_field(
                    schema,
                    extras,
                    entity.name,
                    relation.name,
                    target,
                    report,
                    path,
                    written=relation.name in schema.fields_of(entity.name),
                )
                if arguments is not None:
                    plans.connections.append(
                        ConnectionPlan(
                            entity.name, relation.name, target, arguments, relation.by, entity.key
                        )
                    )
            else:
                written = schema.fields_of(entity.name).get(relation.name)
                if written is None:
                    extras.field(entity.name, f"{relation.name}: {relation.entity}")
                elif written.base != relation.entity or written.is_list:
                    report(
                        path,
                        f"{entity.name}.{relation.name} is {written.text} in {gateway.schema}, "
                        f"but the relation leads to one {relation.entity}: make it "
                        f"'{relation.name}: {relation.entity}' (or {relation.entity}! if every "
                        f"{entity.name.lower()} has one)",
                    )
                    continue
                required = written is not None and written.text.endswith("!")
                plans.lookups.append(
                    LookupPlan(
                        entity.name,
                        relation.name,
                        target,
                        key_field=relation.key,
                        required=required,
                    )
                )
    plans.extras = extras.text()
    return plans


def _subscriptions(
    gateway: GatewayNode,
    schema: Schema,
    extras: _Extras,
    view: Callable[[str], EntityView | None],
    plans: DocumentPlans,
    report: Problems,
) -> None:
    """Plan the gateway's `subscriptions:`, adding what the schema leaves out; a subscription
    field the schema writes without a mapping, reported."""
    base: KeyPath = ("nodes", gateway.name, "subscriptions")
    owner = schema.subscription_type
    written = schema.fields_of(owner) if owner is not None else {}
    for name in written:
        if name not in gateway.subscriptions and name != _COMMAND_SETTLED:
            report(
                base,
                f"{owner}.{name} in {gateway.schema} has no mapping; add "
                f"'{name}: {{changed: <Entity>}}' (one document) or "
                f"'{name}: {{changes: <Entity>}}' (a filtered list) under subscriptions",
            )
    for name, subscription in gateway.subscriptions.items():
        path = base + (name,)
        target = view(subscription.entity)
        if target is None or not _shown(schema, target, report, path, gateway):
            continue
        if owner is None:
            report(
                path,
                f"the schema definition of {gateway.schema} names no subscription type; add "
                "'subscription: Subscription' to it",
            )
            return
        if name == _COMMAND_SETTLED:
            report(
                path,
                f"{name} is the gateway's own subscription (a command's outcome); "
                "give this one another name",
            )
            continue
        extras.change_types(target, many=bool(subscription.changes))
        plan = _subscription_field(
            schema,
            extras,
            owner,
            name,
            target,
            bool(subscription.changes),
            report,
            path,
            written.get(name),
        )
        if plan is not None:
            plans.subscriptions.append(plan)


def _subscription_field(
    schema: Schema,
    extras: _Extras,
    owner: str,
    name: str,
    target: EntityView,
    many: bool,
    report: Problems,
    path: KeyPath,
    returns: TypeRef | None,
) -> SubscriptionPlan | None:
    """The subscription field `owner.name` as the schema writes it (checked), or added to it."""
    change = f"{target.name}Change"
    optional = {
        arg: kind.format(target.name)
        for arg, kind in LIVE_LIST_ARGUMENTS.items()
        if many or arg == "after"
    }
    if returns is None:
        declared = ", ".join(f"{arg}: {kind}" for arg, kind in optional.items())
        if not many:
            declared = f"{target.key}: String!, {declared}"
        extras.field(owner, f"{name}({declared}): {change}!")
        return SubscriptionPlan(
            owner, name, target, None if many else target.key, frozenset(optional)
        )
    arguments = schema.arguments_of(owner, name)
    problems = []
    if returns.base != change or returns.is_list:
        problems.append(f"it returns {returns.text}; a subscription's messages are {change}!")
    key_argument = None
    for arg, ref in arguments.items():
        wanted = optional.get(arg)
        if wanted is not None:
            if ref.base != wanted or ref.is_list or ref.text.endswith("!"):
                problems.append(f"argument '{arg}' is {ref.text}; it must be {wanted}")
        elif not many and key_argument is None:
            key_argument = arg
            if ref.base not in ("String", "ID") or ref.is_list:
                problems.append(f"argument '{arg}' is {ref.text}; a key is String!")
        else:
            problems.append(
                f"argument '{arg}' is not one a subscription to "
                + (
                    f"{target.name} documents takes ({', '.join(optional)})"
                    if many
                    else f"one {target.name} takes (the key, and after)"
                )
            )
    if not many and key_argument is None:
        problems.append(
            f"it takes no key; one {target.name} is followed by its key: "
            f"{name}({target.key}: String!, after: String)"
        )
    for problem in problems:
        report(path, f"{owner}.{name}: {problem}")
    if problems:
        return None
    return SubscriptionPlan(
        owner, name, target, key_argument, frozenset(a for a in arguments if a in optional)
    )


def _shown(
    schema: Schema, target: EntityView, report: Problems, path: KeyPath, gateway: GatewayNode
) -> bool:
    """Whether the schema has the entity's type; reported if not."""
    if target.name in schema.object_fields:
        return True
    report(
        path,
        f"{gateway.schema} has no type {target.name}; add it with the fields of "
        f"{target.document.DESCRIPTOR.full_name} to show",
    )
    return False


def _connection_field(
    schema: Schema,
    extras: _Extras,
    owner: str,
    name: str,
    target: EntityView,
    report: Problems,
    path: KeyPath,
    written: bool,
) -> frozenset[str] | None:
    """The connection arguments of the field `owner.name` as the schema writes it (checked), or
    all of them for a field added to it."""
    connection = f"{target.name}Connection"
    if not written:
        declared = ", ".join(
            f"{arg}: {kind.format(target.name)}" for arg, kind in CONNECTION_ARGUMENTS.items()
        )
        extras.field(owner, f"{name}({declared}): {connection}!")
        return frozenset(CONNECTION_ARGUMENTS)
    returns = (
        schema.queries[name].returns
        if owner == schema.query_type
        else schema.fields_of(owner)[name]
    )
    arguments = (
        schema.queries[name].arguments
        if owner == schema.query_type
        else schema.arguments_of(owner, name)
    )
    problems = []
    if returns.base != connection or returns.is_list:
        problems.append(f"it returns {returns.text}; a list of {target.name} is {connection}!")
    for arg, ref in arguments.items():
        wanted = CONNECTION_ARGUMENTS.get(arg)
        if wanted is None:
            problems.append(
                f"argument '{arg}' is not a connection argument ({', '.join(CONNECTION_ARGUMENTS)})"
            )
        elif ref.base != wanted.format(target.name) or ref.is_list or ref.text.endswith("!"):
            problems.append(
                f"argument '{arg}' is {ref.text}; it must be {wanted.format(target.name)}"
            )
    for problem in problems:
        report(path, f"{owner}.{name}: {problem}")
    return None if problems else frozenset(arguments)


def _get_field(
    schema: Schema,
    extras: _Extras,
    name: str,
    target: EntityView,
    report: Problems,
    path: KeyPath,
) -> LookupPlan | None:
    query = schema.queries.get(name)
    if query is None:
        extras.field(schema.query_type, f"{name}({target.key}: String!): {target.name}")
        return LookupPlan(schema.query_type, name, target, argument=target.key)
    problems = []
    if query.returns.base != target.name or query.returns.is_list:
        problems.append(f"it returns {query.returns.text}; one {target.name} is {target.name}")
    if len(query.arguments) != 1:
        problems.append(
            f"it takes {len(query.arguments)} arguments; it takes one, the key: "
            f"{name}({target.key}: String!)"
        )
    else:
        ((argument, ref),) = query.arguments.items()
        if ref.base not in ("String", "ID") or ref.is_list:
            problems.append(f"argument '{argument}' is {ref.text}; a key is String!")
    for problem in problems:
        report(path, f"{schema.query_type}.{name}: {problem}")
    if problems:
        return None
    return LookupPlan(schema.query_type, name, target, argument=next(iter(query.arguments)))


class _Extras:
    """The SDL a schema needs added: each type once, unless the schema defines it; fields
    added to existing types with `extend type`."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.types: dict[str, str] = {}
        self.fields: dict[str, list[str]] = {}

    def text(self) -> str:
        parts = list(self.types.values())
        for owner, lines in self.fields.items():
            body = "\n".join(f"  {line}" for line in lines)
            # The subscription type is the one owner a schema may leave out altogether.
            keyword = "extend type" if owner in self.schema.object_fields else "type"
            parts.append(f"\n{keyword} {owner} {{\n{body}\n}}\n")
        if not parts:
            return ""
        return (
            "\n# Added by cqrs-flow: lists, filters, relations and live subscriptions (see "
            "docs/BEHAVIOUR.md)\n" + "".join(parts)
        )

    def field(self, owner: str, line: str) -> None:
        self.fields.setdefault(owner, []).append(line)

    def type(self, name: str, text: str) -> None:
        if name not in self.schema.type_names and name not in self.types:
            self.types[name] = text

    def connection_types(self, entity: EntityView) -> None:
        name = entity.name
        self.type("PageInfo", _PAGE_INFO)
        self.type("OrderDirection", _ORDER_DIRECTION)
        self.type(f"{name}Edge", f"\ntype {name}Edge {{\n  cursor: String!\n  node: {name}!\n}}\n")
        self.type(
            f"{name}Connection",
            f"\ntype {name}Connection {{\n  edges: [{name}Edge!]!\n  nodes: [{name}!]!\n"
            "  pageInfo: PageInfo!\n  totalCount: Int!\n}\n",
        )
        fields = list(entity.indexes)
        self.type(
            f"{name}OrderField",
            f"\nenum {name}OrderField {{\n" + "".join(f"  {f}\n" for f in fields) + "}\n",
        )
        self.type(
            f"{name}Order",
            f"\ninput {name}Order {{\n  field: {name}OrderField!\n"
            "  direction: OrderDirection = ASC\n}\n",
        )
        self.where_types(entity)

    def change_types(self, entity: EntityView, many: bool) -> None:
        """ChangeOp and `<Entity>Change`; for a filtered list, `<Entity>Where` and its inputs."""
        self.type("ChangeOp", _CHANGE_OP)
        lines = "".join(
            f'  "{doc}"\n  {field}: {kind.format(entity.name)}\n'
            for field, (kind, doc) in CHANGE_FIELDS.items()
        )
        self.type(
            f"{entity.name}Change",
            f'\n"A message of a live subscription to {entity.name} documents."\n'
            f"type {entity.name}Change {{\n{lines}}}\n",
        )
        if many:
            self.where_types(entity)

    def where_types(self, entity: EntityView) -> None:
        """`<Entity>Where` and the filter inputs of its indexed fields."""
        name, fields = entity.name, list(entity.indexes)
        where = "".join(f"  {f}: {entity.filter_input(f)}\n" for f in fields)
        self.type(f"{name}Where", f"\ninput {name}Where {{\n{where}}}\n")
        for kind in entity.indexes.values():
            ops = _FILTER_OPS.get(kind, _ENUM_FILTER_OPS)
            lines = "".join(f"  {op}: {'[' + kind + '!]' if op == 'in' else kind}\n" for op in ops)
            self.type(f"{kind}Filter", f"\ninput {kind}Filter {{\n{lines}}}\n")


def filter_ops(kind: str) -> tuple[str, ...]:
    """The operations a filter input of `kind` (String, Int, ..., or an enum) offers."""
    return _FILTER_OPS.get(kind, _ENUM_FILTER_OPS)


def misfits_of_written_types(plans: DocumentPlans, schema: Schema) -> Iterator[str]:
    """Why a type the schema writes itself cannot stand for the one cqrs-flow would add."""
    if plans.subscriptions and "ChangeOp" in schema.enums:
        wanted = ("CURRENT", "INSERT", "UPDATE", "DELETE")
        missing = [v for v in wanted if v not in schema.enum_values.get("ChangeOp", ())]
        if missing:
            yield f"enum ChangeOp lacks {', '.join(missing)}; it is {' '.join(wanted)}"
    for entity in {p.entity.name: p.entity for p in plans.subscriptions}.values():
        for name, ref in schema.fields_of(f"{entity.name}Change").items():
            known = CHANGE_FIELDS.get(name)
            if known is None:
                yield (
                    f"type {entity.name}Change has '{name}', which the gateway does not "
                    f"answer; its fields: {', '.join(CHANGE_FIELDS)}"
                )
            elif ref.base != known[0].format(entity.name).strip("[]!"):
                yield (
                    f"{entity.name}Change.{name} is {ref.text}; it is "
                    f"{known[0].format(entity.name)}"
                )
    for entity in plans.entities.values():
        where = schema.input_fields.get(f"{entity.name}Where")
        for name in where or {}:
            if name not in entity.indexes:
                indexed = ", ".join(entity.indexes)
                yield (
                    f"input {entity.name}Where has '{name}', which is not indexed; "
                    f"{entity.name}'s indexed fields: {indexed} (add it to the entity's indexes)"
                )
        if f"{entity.name}OrderField" in schema.enums:
            for value in schema.enum_values.get(f"{entity.name}OrderField", ()):
                if value not in entity.indexes:
                    yield (
                        f"enum {entity.name}OrderField has {value}, which is not indexed; "
                        f"{entity.name}'s indexed fields: {', '.join(entity.indexes)}"
                    )
