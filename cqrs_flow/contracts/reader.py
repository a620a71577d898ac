"""The reader's contract: each RPC of its service forwarded to a store read RPC, or served by
one of its plugins."""

from __future__ import annotations

from cqrs_flow.contracts import plugin_classes
from cqrs_flow.errors import ProtoError
from cqrs_flow.plugins import ReaderPlugin
from cqrs_flow.protobuf.compiler import ProtoSet
from cqrs_flow.topology.model import DOCUMENTS_SERVICE, ReaderNode, StoreNode, Topology
from cqrs_flow.topology.problems import Problems, did_you_mean

__all__ = ["reader_plan"]


def reader_plan(
    topology: Topology,
    reader: ReaderNode,
    protos: ProtoSet,
    report: Problems,
    import_plugins: bool = True,
) -> dict[str, str | None]:
    """reader RPC -> the store read RPC it forwards to, or None when a plugin answers it (or,
    with its plugins not imported, may answer it)."""
    plugins = plugin_classes(topology, reader, report) if import_plugins else None
    base = ("nodes", reader.name)
    try:
        service = protos.service(reader.service)
    except ProtoError as exc:
        report(base + ("service",), str(exc))
        return {}
    store = topology.nodes.get(reader.store.node)
    if not isinstance(store, StoreNode):
        return {}  # reported by the wiring checks
    try:
        store_service = protos.service(store.read.name)
    except ProtoError:
        return {}  # reported with the store
    for rpc in reader.rpcs:
        if rpc not in service.methods_by_name:
            report(base + ("rpcs", rpc), f"{reader.service} has no RPC '{rpc}'")
    _check_client_calls(reader, protos, report)
    plan: dict[str, str | None] = {}
    for rpc, method in service.methods_by_name.items():
        if rpc not in reader.rpcs and any(
            issubclass(p, ReaderPlugin) and p.serves(rpc) for p in plugins or ()
        ):
            plan[rpc] = None
            continue
        target = reader.rpcs.get(rpc, rpc)
        path = base + ("rpcs", rpc) if rpc in reader.rpcs else base + ("service",)
        store_method = store_service.methods_by_name.get(target)
        if store_method is None and plugins is None and reader.plugins and rpc not in reader.rpcs:
            plan[rpc] = None  # a plugin not imported may answer it: checked with its import
            continue
        if store_method is None:
            report(
                path,
                f"{reader.service}.{rpc} forwards to {store.read.name}.{target}, which does not "
                f"exist; map it under 'rpcs' to one of {', '.join(store_service.methods_by_name)}, "
                "or add a reader plugin with a method of that name",
            )
            continue
        if (method.input_type, method.output_type) != (
            store_method.input_type,
            store_method.output_type,
        ):
            report(
                path,
                f"{reader.service}.{rpc} and {store.read.name}.{target} must take and return "
                "the same messages for the reader to forward one to the other",
            )
            continue
        plan[rpc] = target
    return plan


def _check_client_calls(reader: ReaderNode, protos: ProtoSet, report: Problems) -> None:
    """Each RPC an outside client may call is one of the service's (the services themselves
    are checked with the wiring)."""
    for name, client in reader.clients.items():
        for index, (service_name, rpc) in enumerate(client.grants):
            if rpc is None or service_name not in (reader.service, DOCUMENTS_SERVICE):
                continue
            try:
                methods = protos.service(service_name).methods_by_name
            except ProtoError:
                continue  # reported with the reader's service
            if rpc not in methods:
                report(
                    ("nodes", reader.name, "clients", name, "call", index),
                    f"{service_name} has no RPC '{rpc}'{did_you_mean(rpc, methods)}; it has "
                    f"{', '.join(methods)}",
                )
