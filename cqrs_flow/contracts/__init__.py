"""Node contracts: what each node kind needs from topology + protos + GraphQL schema.

One module per node kind (store, reader, writer, gateway) works out that kind's plan and
reports every problem it finds; `check.check_contracts` runs them all for `cqrs-flow validate`,
and a node runs its own plan at start-up, so a topology that validates is one the nodes can run.
This module holds what the kinds share: plugin classes, proto type names and the command id
field.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from cqrs_flow.plugins import Plugin, PluginError, load_plugin_class
from cqrs_flow.protobuf.messages import is_repeated
from cqrs_flow.topology.model import Node, Topology
from cqrs_flow.topology.problems import Problems

__all__ = ["command_id_misfit", "one_string", "plugin_classes", "proto_type"]


def plugin_classes(topology: Topology, node: Node, report: Problems) -> list[type[Plugin]]:
    """The plugin classes a node names, each that cannot be loaded reported at its entry."""
    classes = []
    for i, ref in enumerate(getattr(node, "plugins", ())):
        try:
            classes.append(load_plugin_class(ref, node, topology))
        except PluginError as exc:
            report(("nodes", node.name, "plugins", i), str(exc))
    return classes


def one_string(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_STRING and not is_repeated(field)


def command_id_misfit(request: Descriptor, name: str, key: str = "command_id") -> str | None:
    """Why the field `name` of `request` cannot hold a command id (with `key` "subject": the
    caller's subject); None if it can or is absent."""
    field = request.fields_by_name.get(name)
    if field is None or one_string(field):
        return None
    what = "repeated" if is_repeated(field) else f"of type {proto_type(field)}"
    holds = "the command id" if key == "command_id" else "the caller's subject"
    return (
        f"{request.full_name}.{name} is {what}, but it holds {holds}: make it a "
        f"string field, or name another field with the top-level key {key}"
    )


_PROTO_TYPE_NAMES = {
    value: key[len("TYPE_") :].lower()
    for key, value in vars(FieldDescriptor).items()
    if key.startswith("TYPE_") and isinstance(value, int)
}


def proto_type(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return _PROTO_TYPE_NAMES.get(field.type, "?")
