"""The store's contract: each RPC of its two services bound to a store operation on its document."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

from cqrs_flow.contracts import command_id_misfit
from cqrs_flow.contracts.operations import READ_OPS, WRITE_OPS, BoundOperation, ShapeError, bind
from cqrs_flow.errors import ProtoError
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.protobuf.messages import is_repeated
from cqrs_flow.topology.model import StoreNode, Topology
from cqrs_flow.topology.problems import Problems

__all__ = ["store_plan"]


def store_plan(
    topology: Topology, store: StoreNode, protos: ProtoSet, report: Problems
) -> dict[str, dict[str, BoundOperation]]:
    """service full name -> RPC -> bound operation."""
    base = ("nodes", store.name)
    try:
        document = protos.message_descriptor(store.document)
    except ProtoError as exc:
        report(base + ("document",), str(exc))
        return {}
    if store.timestamp:
        stamp = document.fields_by_name.get(store.timestamp)
        if stamp is None or stamp.type != FieldDescriptor.TYPE_STRING or is_repeated(stamp):
            report(
                base + ("timestamp",),
                f"{document.full_name} has no string field '{store.timestamp}'",
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
        for rpc, op in service.rpcs.items():
            rpc_path = path + ("rpcs", rpc)
            if op not in allowed:
                report(
                    rpc_path,
                    f"'{op}' is a {'write' if op in WRITE_OPS else 'read'} operation; "
                    f"the {side} service may only {', '.join(sorted(allowed))}",
                )
                continue
            try:
                bound[rpc] = bind(op, protos.method(service.name, rpc), document, store.key)
            except (ProtoError, ShapeError) as exc:
                report(rpc_path, str(exc))
                continue
            if side == "write":  # the store reads each write's command id (nodes/store.py)
                misfit = command_id_misfit(bound[rpc].method.input_type, topology.command_id)
                if misfit is not None:
                    report(rpc_path, misfit)
        unmapped = sorted(set(descriptor.methods_by_name) - set(service.rpcs))
        if unmapped:
            report(
                path + ("rpcs",),
                f"{service.name} has RPCs with no operation: {', '.join(unmapped)}",
            )
    return plan
