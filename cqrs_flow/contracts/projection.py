"""The projection's contract: whose change log it follows, which entities' changes its plugin
handles (each held by that store), and the read model it writes (an entity of its store that
nothing else writes)."""

from __future__ import annotations

from dataclasses import dataclass

from cqrs_flow.contracts.store import entity_of_rpc
from cqrs_flow.errors import ProtoError
from cqrs_flow.plugins import PluginError, ProjectionPlugin, load_plugin_class
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.topology.model import (
    Entity,
    ProjectionNode,
    ReaderNode,
    StoreNode,
    Topology,
    store_operation,
)
from cqrs_flow.topology.problems import Problems, did_you_mean

__all__ = ["ProjectionPlan", "projection_plan", "source_store"]


@dataclass(frozen=True)
class ProjectionPlan:
    """What a projection node runs with: the store whose log it reads (directly or through a
    reader), the store and entity of its read model, its plugin class and the entities it
    follows (None: not known, its plugin not imported)."""

    source: StoreNode
    store: StoreNode
    entity: Entity
    plugin: type[ProjectionPlugin] | None
    follows: tuple[str, ...] | None


def source_store(topology: Topology, node: ProjectionNode) -> StoreNode | None:
    """The store whose change log the projection reads: the one it follows, or its reader's."""
    followed = topology.nodes.get(node.follows)
    if isinstance(followed, ReaderNode):
        followed = topology.nodes.get(followed.store.node)
    return followed if isinstance(followed, StoreNode) else None


def projection_plan(
    topology: Topology,
    node: ProjectionNode,
    protos: ProtoSet,
    report: Problems,
    import_plugins: bool = True,
) -> ProjectionPlan | None:
    base = ("nodes", node.name)
    source = source_store(topology, node)
    store = topology.nodes.get(node.store.node)
    entity = topology.entities.get(node.entity)
    if source is None or not isinstance(store, StoreNode) or entity is None:
        return None  # reported by the wiring checks
    try:
        protos.message_descriptor(entity.document)
    except ProtoError:
        return None  # reported with the entity
    _check_nothing_else_writes(topology, store, entity, node, protos, report)
    if not import_plugins:
        return ProjectionPlan(source, store, entity, None, None)
    try:
        plugin = load_plugin_class(node.plugin, node, topology)
    except PluginError as exc:
        report(base + ("plugin",), str(exc))
        return None
    assert issubclass(plugin, ProjectionPlugin), "load_plugin_class checks the kind"
    follows = plugin.entities()
    if not follows:
        report(
            base + ("plugin",),
            f"{node.plugin.use} has no handler: name its methods on_<Entity>_<op> (op: insert, "
            f"update or delete) or on_<Entity>, with an entity of store '{source.name}' "
            f"({', '.join(source.entities)})",
        )
    for name in follows:
        if name not in source.entities:
            report(
                base + ("plugin",),
                f"{node.plugin.use} handles changes of '{name}', which store '{source.name}' "
                f"does not hold{did_you_mean(name, source.entities) or ''}; it holds "
                f"{', '.join(source.entities)}",
            )
        elif name == entity.name and source.name == store.name:
            report(
                base + ("plugin",),
                f"{node.plugin.use} handles changes of '{name}', its own read model: it would "
                "follow its own writes for ever",
            )
    return ProjectionPlan(source, store, entity, plugin, tuple(follows))


def _check_nothing_else_writes(
    topology: Topology,
    store: StoreNode,
    entity: Entity,
    node: ProjectionNode,
    protos: ProtoSet,
    report: Problems,
) -> None:
    """A read model is written by its projection only: no write RPC of the store may be about
    it (a command would change it behind the projection's back, and a replay would undo that)."""
    for rpc, operation in store.write.rpcs.items():
        try:
            method = protos.method(store.write.name, rpc)
        except ProtoError:
            continue  # reported with the store
        about = entity_of_rpc(topology, store, operation, method)
        if isinstance(about, Entity) and about.name == entity.name:
            report(
                ("nodes", store.name, "write", "rpcs", rpc),
                f"{rpc} ({store_operation(operation)[1]}) writes {entity.name}, the read model "
                f"of projection '{node.name}', which only the projection writes",
            )
