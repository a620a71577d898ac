"""Wiring checks of the entities, on the whole model without the protos: which store holds each
entity, the relations between them, and the entities a gateway's queries, subscriptions and
mutations name.

What needs the protos (an index on a field the document lacks, a relation's key field that is
not a string) is checked in cqrs_flow/contracts/entities.py. Each check reports problems at
their key path; nothing raises.
"""

from __future__ import annotations

from cqrs_flow.topology.model import GatewayNode, ReaderNode, StoreNode, Topology
from cqrs_flow.topology.problems import KeyPath, Problems, did_you_mean

__all__ = ["check_entities"]


def check_entities(topology: Topology, report: Problems) -> None:
    _check_holders(topology, report)
    _check_collections(topology, report)
    _check_indexes(topology, report)
    _check_relations(topology, report)
    _check_gateways(topology, report)


def _unknown_entity(topology: Topology, name: str) -> str:
    """The message for a name that is no entity: a did-you-mean, else the entities there are."""
    hint = did_you_mean(name, topology.entities)
    if hint:
        return f"no entity named '{name}'{hint}"
    if topology.entities:
        return f"no entity named '{name}'; entities: {', '.join(topology.entities)}"
    return f"no entity named '{name}': declare it under 'entities'"


def _check_holders(topology: Topology, report: Problems) -> None:
    """Every entity is held by exactly one store, and a store names only entities there are."""
    holder: dict[str, str] = {}
    for store in topology.nodes_of(StoreNode):
        for i, name in enumerate(store.entities):
            path = ("nodes", store.name, "entities", i)
            if name not in topology.entities:
                report(path, _unknown_entity(topology, name))
            elif store.entities.index(name) != i:
                report(path, f"'{name}' is listed twice")
            elif holder.setdefault(name, store.name) != store.name:
                report(
                    path,
                    f"entity '{name}' is held by store '{holder[name]}' already; an entity's "
                    "documents are kept by one store (a reader reads one store, and so a "
                    "gateway finds each entity in one place)",
                )
    stores = [s.name for s in topology.nodes_of(StoreNode)]
    for entity in topology.entities.values():
        if entity.name not in holder:
            report(
                entity.path,
                f"entity '{entity.name}' is held by no store: add it to the 'entities' of "
                + (f"store '{stores[0]}'" if len(stores) == 1 else "a store node"),
            )


def _check_collections(topology: Topology, report: Problems) -> None:
    """The entities of one store keep their documents in collections (tables) of their own."""
    for store in topology.nodes_of(StoreNode):
        seen: dict[str, str] = {}
        for entity in topology.entities_of(store):
            other = seen.setdefault(entity.collection, entity.name)
            if other != entity.name:
                report(
                    entity.path + ("collection",),
                    f"collection '{entity.collection}' is {other}'s too, in store '{store.name}'; "
                    f"give {entity.name} a collection of its own (collection: ...)",
                )


def _check_indexes(topology: Topology, report: Problems) -> None:
    for entity in topology.entities.values():
        for i, field in enumerate(entity.indexes):
            if entity.indexes.index(field) != i:
                report(entity.path + ("indexes", i), f"'{field}' is listed twice")


def _check_relations(topology: Topology, report: Problems) -> None:
    """A relation leads to an entity there is, by exactly one of `key` and `by`, within the store
    of its own entity (a gateway follows it through the one store its reader reads)."""
    holders = {name: s.name for s in topology.nodes_of(StoreNode) for name in s.entities}
    for entity in topology.entities.values():
        for relation in entity.relations.values():
            path = entity.path + ("relations", relation.name)
            if relation.key and relation.by:
                report(
                    path,
                    "give only one of 'key' (to one: the field of "
                    f"{entity.name}'s documents that holds the related key) or 'by' (to many: "
                    f"the field of the related documents that holds {entity.name}'s key)",
                )
            elif not relation.key and not relation.by:
                target = relation.entity or "entity"
                report(
                    path,
                    f"missing 'key' or 'by': key: <field> leads to one {target}"
                    f" (the field of {entity.name}'s documents that holds its key), by: <field> "
                    f"to many (the field of their documents that holds {entity.name}'s key)",
                )
            if not relation.entity:
                continue  # missing: reported by the spec checker
            if relation.entity not in topology.entities:
                report(path + ("entity",), _unknown_entity(topology, relation.entity))
                continue
            mine, theirs = holders.get(entity.name), holders.get(relation.entity)
            if mine and theirs and mine != theirs:
                report(
                    path + ("entity",),
                    f"{relation.entity} is held by store '{theirs}' and {entity.name} by store "
                    f"'{mine}': a gateway follows a relation through its one reader, which reads "
                    "one store; keep both entities in one store",
                )


def _check_gateways(topology: Topology, report: Problems) -> None:
    """The entities a gateway's queries (`list:`, `get:`), subscriptions (`changed:`,
    `changes:`) and mutations (`exists:`) name exist and are held by the store its reader
    reads."""
    for gateway in topology.nodes_of(GatewayNode):
        named: list[tuple[KeyPath, str]] = []
        for field, query in gateway.queries.items():
            for key, name in (("list", query.list), ("get", query.get)):
                if name:
                    named.append((("nodes", gateway.name, "queries", field, key), name))
        for field, subscription in gateway.subscriptions.items():
            key = "changed" if subscription.changed else "changes"
            named.append(
                (("nodes", gateway.name, "subscriptions", field, key), subscription.entity)
            )
        for field, mutation in gateway.mutations.items():
            # `exists` names an entity or a reader RPC; which RPCs there are is known with the
            # protos (cqrs_flow/contracts/entities.py), so only entities are checked here.
            if mutation.exists and mutation.exists in topology.entities:
                named.append(
                    (("nodes", gateway.name, "mutations", field, "exists"), mutation.exists)
                )
        store = _store_read_by(topology, gateway)
        for path, name in named:
            if name not in topology.entities:
                if store is not None and not store.entities:
                    continue  # a store that describes no entity is reported itself
                report(path, _unknown_entity(topology, name))
            elif store is not None and name not in store.entities:
                holder = topology.store_holding(name)
                report(
                    path,
                    f"gateway '{gateway.name}' cannot reach {name}: its reader "
                    f"'{gateway.reader}' reads store '{store.name}', which holds "
                    f"{', '.join(store.entities) or 'no entity'}"
                    + (f", and {name} is in store '{holder.name}'" if holder else ""),
                )


def _store_read_by(topology: Topology, gateway: GatewayNode) -> StoreNode | None:
    reader = topology.nodes.get(gateway.reader)
    store = topology.nodes.get(reader.store.node) if isinstance(reader, ReaderNode) else None
    return store if isinstance(store, StoreNode) else None
