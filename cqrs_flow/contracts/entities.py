"""The entities against the protos: each document a message, each index a field lists can filter
and order on, each relation's fields where it looks for them and strings, and a mutation's
`exists` naming an entity or a reader RPC.

The wiring that needs no protos (which store holds each entity, relations to unknown entities)
is checked in cqrs_flow/topology/entities.py.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from cqrs_flow.contracts import one_string, proto_type
from cqrs_flow.errors import ProtoError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.messages import INTEGER_TYPES, is_repeated
from cqrs_flow.topology.model import Entity, GatewayNode, ReaderNode, Relation, Topology
from cqrs_flow.topology.problems import KeyPath, Problems, did_you_mean, suggest

__all__ = ["INDEXABLE", "check_entities"]

# The field types an index may be on: what a condition's Value holds (documents.proto).
INDEXABLE = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_ENUM,
        FieldDescriptor.TYPE_DOUBLE,
        FieldDescriptor.TYPE_FLOAT,
        *INTEGER_TYPES,
    }
)


def check_entities(topology: Topology, protos: ProtoSet, report: Problems) -> None:
    """Report every problem between the topology's entities and the protos."""
    documents: dict[str, Descriptor] = {}
    for entity in topology.entities.values():
        try:
            documents[entity.name] = protos.message_descriptor(entity.document)
        except ProtoError as exc:  # the store's contract says the same, once
            report(entity.path + ("document",), str(exc))
    for entity in topology.entities.values():
        if entity.name in documents:
            _check_indexes(entity, documents[entity.name], report)
            for relation in entity.relations.values():
                _check_relation(topology, entity, relation, documents, report)
    for gateway in topology.nodes_of(GatewayNode):
        _check_exists(topology, gateway, protos, report)


def _check_indexes(entity: Entity, document: Descriptor, report: Problems) -> None:
    for i, name in enumerate(entity.indexes):
        field = document.fields_by_name.get(name)
        if field is None:
            report(entity.path + ("indexes", i), _no_field(document, name))
        elif is_repeated(field) or field.type not in INDEXABLE:
            what = "repeated" if is_repeated(field) else f"of type {proto_type(field)}"
            report(
                entity.path + ("indexes", i),
                f"{document.full_name}.{name} is {what}; only string, integer, float, bool and "
                "enum fields can be indexed (one value per document, for lists to filter and "
                "order on)",
            )


def _check_relation(
    topology: Topology,
    entity: Entity,
    relation: Relation,
    documents: dict[str, Descriptor],
    report: Problems,
) -> None:
    path = entity.path + ("relations", relation.name)
    mine = documents[entity.name]
    if relation.name in mine.fields_by_name:
        report(
            path,
            f"{mine.full_name} has a field '{relation.name}' already, and the relation would "
            f"take its place in {entity.name}'s GraphQL type; name the relation otherwise",
        )
    target = topology.entities.get(relation.entity)
    if target is None or target.name not in documents:
        return  # an unknown entity (checks.py) or a document that is no message (above)
    theirs = documents[target.name]
    if relation.key and not relation.by:
        _string_field(
            mine,
            relation.key,
            path + ("key",),
            f"it holds the key of {target.name}'s documents",
            report,
        )
        _string_key(target, theirs, path + ("entity",), report)
    elif relation.by and not relation.key:
        found = _string_field(
            theirs,
            relation.by,
            path + ("by",),
            f"it holds the key of {entity.name}'s documents",
            report,
        )
        if found and relation.by not in target.indexes:
            report(
                path + ("by",),
                f"{target.name} is not indexed on '{relation.by}', and a to-many relation "
                f"pages {target.name}'s documents by that field; index it: add "
                f"'{relation.by}' to {target.name}'s indexes",
            )
        _string_key(entity, mine, path, report)


def _string_field(
    document: Descriptor, name: str, path: KeyPath, why: str, report: Problems
) -> bool:
    """Whether `document` has a single string field `name`; if not, say so at `path`."""
    field = document.fields_by_name.get(name)
    if field is None:
        report(path, _no_field(document, name))
        return False
    if not one_string(field):
        what = "repeated" if is_repeated(field) else f"of type {proto_type(field)}"
        report(path, f"{document.full_name}.{name} is {what}; make it a string: {why}")
        return False
    return True


def _string_key(entity: Entity, document: Descriptor, path: KeyPath, report: Problems) -> None:
    """A relation matches keys with string fields: the key it leads by must be a string too."""
    field = document.fields_by_name.get(entity.key)
    if field is not None and not one_string(field):  # a missing key: the store's contract says
        report(
            path,
            f"{entity.name}'s key {document.full_name}.{entity.key} is of type "
            f"{'repeated ' if is_repeated(field) else ''}{proto_type(field)}; a relation finds "
            "documents by key, which must be a string",
        )


def _no_field(document: Descriptor, name: str) -> str:
    return (
        f"{document.full_name} has no field '{name}'{did_you_mean(name, document.fields_by_name)}"
    )


def _check_exists(
    topology: Topology, gateway: GatewayNode, protos: ProtoSet, report: Problems
) -> None:
    """`exists` names an entity or an RPC of the gateway's reader; a name that is neither but
    close to an entity's was meant as one (the gateway's contract checks the RPCs)."""
    reader = topology.nodes.get(gateway.reader)
    if not isinstance(reader, ReaderNode):
        return
    try:
        rpcs = protos.service(reader.service).methods_by_name
    except ProtoError:
        return  # reported with the reader
    for field, mutation in gateway.mutations.items():
        name = mutation.exists
        if not name or name in topology.entities or name in rpcs:
            continue
        meant = suggest(name, topology.entities)
        if meant is not None:
            rpc = suggest(name, rpcs)
            report(
                ("nodes", gateway.name, "mutations", field, "exists"),
                f"no entity or RPC of {reader.service} named '{name}'; did you mean the "
                f"entity '{meant}'" + (f" or the RPC '{rpc}'?" if rpc else "?"),
            )
