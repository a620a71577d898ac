"""The store's contract: each RPC of its two services bound to a store operation on the documents
of one of its entities."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from cqrs_flow.contracts import command_id_misfit
from cqrs_flow.contracts.operations import READ_OPS, WRITE_OPS, BoundOperation, ShapeError, bind
from cqrs_flow.errors import ProtoError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.messages import is_repeated
from cqrs_flow.topology.model import Entity, StoreNode, Topology, store_operation
from cqrs_flow.topology.problems import Problems, did_you_mean

__all__ = ["entity_of_rpc", "store_plan"]


def entity_of_rpc(
    topology: Topology, store: StoreNode, operation: str, method: MethodDescriptor
) -> Entity | str:
    """The entity an RPC of `store` is about: the one its operation names (Book.delete), the
    store's only entity, or the one whose document its messages carry. A string says why it
    cannot be told."""
    named, op = store_operation(operation)
    held = topology.entities_of(store)
    if named is not None:
        if named in store.entities and named in topology.entities:
            return topology.entities[named]
        return (
            f"'{named}' is not an entity of store '{store.name}'"
            f"{did_you_mean(named, store.entities) or '; it holds ' + ', '.join(store.entities)}"
        )
    if len(held) == 1:
        return held[0]
    carried = {e.name: e for e in held if _carries(method, e.document)}
    if len(carried) == 1:
        return next(iter(carried.values()))
    which = (
        f"its messages carry {' and '.join(sorted(carried))} documents"
        if carried
        else "its messages carry no document of the store"
    )
    return (
        f"{method.name} ({op}): {which}, so the entity it is about is not known; write "
        f"'{method.name}: <Entity>.{op}' with one of {', '.join(store.entities)}"
    )


def _carries(method: MethodDescriptor, document: str) -> bool:
    """Whether a request or response is the document, or has a field of that message type."""

    def has(message: Descriptor) -> bool:
        return message.full_name == document or any(
            f.message_type is not None and f.message_type.full_name == document
            for f in message.fields
        )

    return has(method.input_type) or has(method.output_type)


def store_plan(
    topology: Topology, store: StoreNode, protos: ProtoSet, report: Problems
) -> dict[str, dict[str, BoundOperation]]:
    """service full name -> RPC -> bound operation."""
    base = ("nodes", store.name)
    documents: dict[str, Descriptor] = {}
    for entity in topology.entities_of(store):
        try:
            documents[entity.name] = document = protos.message_descriptor(entity.document)
        except ProtoError as exc:
            report(entity.path + ("document",), str(exc))
            continue
        if entity.timestamp:
            stamp = document.fields_by_name.get(entity.timestamp)
            if stamp is None or stamp.type != FieldDescriptor.TYPE_STRING or is_repeated(stamp):
                report(
                    entity.path + ("timestamp",),
                    f"{document.full_name} has no string field '{entity.timestamp}'",
                )
    plan: dict[str, dict[str, BoundOperation]] = {}
    for side, allowed in (("write", WRITE_OPS), ("read", READ_OPS)):
        service = store.service(side)
        path = base + (side,)
        try:
            descriptor = protos.service(service.name)
        except ProtoError as exc:
            report(path + ("service",), str(exc))
            continue
        bound = plan.setdefault(service.name, {})
        for rpc, operation in service.rpcs.items():
            rpc_path = path + ("rpcs", rpc)
            op = store_operation(operation)[1]
            if op not in allowed:
                report(
                    rpc_path,
                    f"'{op}' is a {'write' if op in WRITE_OPS else 'read'} operation; "
                    f"the {side} service may only {', '.join(sorted(allowed))}",
                )
                continue
            try:
                method = protos.method(service.name, rpc)
            except ProtoError as exc:
                report(rpc_path, str(exc))
                continue
            about = entity_of_rpc(topology, store, operation, method)
            if isinstance(about, str):
                report(rpc_path, about)
                continue
            if about.name not in documents:
                continue  # its document was reported above
            try:
                bound[rpc] = bind(op, method, documents[about.name], about.key, about.name)
            except ShapeError as exc:
                report(rpc_path, str(exc))
                continue
            if side == "write":  # the store reads each write's command id (nodes/store.py)
                request = bound[rpc].method.input_type
                for misfit in (
                    command_id_misfit(request, topology.command_id),
                    command_id_misfit(request, topology.subject, "subject"),
                ):
                    if misfit is not None:
                        report(rpc_path, misfit)
        unmapped = sorted(set(descriptor.methods_by_name) - set(service.rpcs))
        if unmapped:
            report(
                path + ("rpcs",),
                f"{service.name} has RPCs with no operation: {', '.join(unmapped)}",
            )
    return plan
