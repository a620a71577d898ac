"""The writer's contract: for each topic it consumes, the command's request type, where its
entity key is and where its command id goes."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from cqrs_flow.contracts import one_string
from cqrs_flow.contracts.store import entity_of_rpc
from cqrs_flow.errors import ProtoError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.messages import PathError, find_field, is_repeated, resolve_path
from cqrs_flow.topology.model import StoreNode, Topology, WriterNode
from cqrs_flow.topology.problems import KeyPath, Problems

__all__ = ["CommandPlan", "command_plan", "writer_plan"]


@dataclass(frozen=True)
class CommandPlan:
    name: str
    topic: str
    rpc: str
    request: type[Message]
    key_path: str | None  # where the entity key is in the request; None: no per-entity order
    command_id_path: str | None  # where the command id goes; None: the request has no such field
    entity: str = ""  # the entity it writes; commands keep their order per entity and key
    subject_path: str | None = None  # where the caller's subject goes; None: no such field


def command_plan(
    topology: Topology,
    name: str,
    store: StoreNode,
    protos: ProtoSet,
    report: Problems,
    path: KeyPath,
) -> CommandPlan | None:
    command = topology.commands.get(name)
    if command is None:
        return None  # reported by the wiring checks
    op = store.write.rpcs.get(command.rpc)
    if op is None:
        report(
            ("commands", name, "rpc"),
            f"'{command.rpc}' is not an RPC of {store.name}'s write service ({store.write.name})",
        )
        return None
    try:
        method = protos.method(store.write.name, command.rpc)
    except ProtoError:
        return None  # reported with the store
    request = method.input_type
    if command.key:
        try:
            fields = resolve_path(request, command.key)
            if is_repeated(fields[-1]):
                raise PathError(f"'{command.key}' is repeated; the entity key is one string field")
            if fields[-1].type != FieldDescriptor.TYPE_STRING:
                raise PathError(f"'{command.key}' is not a string field")
            key_path: str | None = command.key
        except PathError as exc:
            report(("commands", name, "key"), str(exc))
            return None
    entity = entity_of_rpc(topology, store, op, method)
    if isinstance(entity, str):
        return None  # reported with the store
    if not command.key:
        key_path = find_field(request, entity.key)
    id_field = request.fields_by_name.get(topology.command_id)  # any other kind: store_plan says
    id_path = topology.command_id if id_field is not None and one_string(id_field) else None
    subject_field = request.fields_by_name.get(topology.subject)
    subject_path = topology.subject if subject_field and one_string(subject_field) else None
    return CommandPlan(
        name,
        command.topic,
        command.rpc,
        protos.class_of(request),
        key_path,
        id_path,
        entity.name,
        subject_path,
    )


def writer_plan(
    topology: Topology, writer: WriterNode, protos: ProtoSet, report: Problems
) -> dict[str, CommandPlan]:
    """topic -> what arrives on it and how to apply it."""
    store = topology.nodes.get(writer.store.node)
    if not isinstance(store, StoreNode):
        return {}
    plans = {}
    for name in topology.commands_of(writer):
        plan = command_plan(topology, name, store, protos, report, ("nodes", writer.name))
        if plan is not None:
            plans[plan.topic] = plan
    return plans
