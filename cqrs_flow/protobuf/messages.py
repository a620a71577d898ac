"""Protobuf messages as plain data: field paths, documents, and shape lookups by descriptor."""

from __future__ import annotations

import inspect
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = [
    "INTEGER_TYPES",
    "PathError",
    "descriptor_of",
    "enum_type",
    "find_field",
    "get_path",
    "is_repeated",
    "message_type",
    "resolve_path",
    "set_path",
    "to_data",
    "to_document",
    "to_update",
]

INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}


class PathError(Exception):
    """A field path that does not exist in a message type."""


def is_repeated(field: FieldDescriptor) -> bool:
    if hasattr(field, "is_repeated"):  # protobuf >= 5.29
        return bool(field.is_repeated)
    label = getattr(field, "label", None)  # before 5.29; gone in 7, and from its type stubs
    return bool(label == FieldDescriptor.LABEL_REPEATED)


def descriptor_of(message: Message | type[Message]) -> Descriptor:
    """The descriptor of a message (class). protobuf's type stubs also name the C
    implementation's descriptor class, which at run time is a `Descriptor` too."""
    return cast(Descriptor, message.DESCRIPTOR)


def message_type(field: FieldDescriptor) -> Descriptor:
    """The type of a message field (TypeError for a field of another type)."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """The type of an enum field (TypeError for a field of another type)."""
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def resolve_path(descriptor: Descriptor, path: str) -> list[FieldDescriptor]:
    """'contact.name' in AddContactRequest -> [contact field, name field]; PathError if absent."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for part in path.split("."):
        if current is None:
            raise PathError(f"'{fields[-1].name}' is not a message, so '{path}' goes nowhere")
        field = current.fields_by_name.get(part)
        if field is None:
            known = ", ".join(current.fields_by_name) or "none"
            raise PathError(f"{current.full_name} has no field '{part}' (fields: {known})")
        if is_repeated(field) and part != path.split(".")[-1]:
            raise PathError(
                f"'{part}' in {current.full_name} is repeated; a path cannot go through it"
            )
        fields.append(field)
        current = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    return fields


def find_field(descriptor: Descriptor, name: str) -> str | None:
    """Where a field called `name` is: at the top level, or inside the one singular message field
    that has it. Used to map GraphQL arguments and entity keys onto request messages by name."""
    if name in descriptor.fields_by_name:
        return name
    found = [
        f"{field.name}.{name}"
        for field in descriptor.fields
        if field.type == FieldDescriptor.TYPE_MESSAGE
        and not is_repeated(field)
        and name in message_type(field).fields_by_name
    ]
    return found[0] if len(found) == 1 else None


def get_path(message: Message, path: str) -> Any:
    value: Any = message
    for part in path.split("."):
        value = getattr(value, part)
    return value


def set_path(message: Message, path: str, value: Any) -> None:
    """Set a scalar, repeated or message field by path, creating the messages on the way."""
    *parents, last = path.split(".")
    target = message
    for part in parents:
        target = getattr(target, part)
    field = descriptor_of(target).fields_by_name[last]
    if is_repeated(field):
        container = getattr(target, last)
        del container[:]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                json_format.ParseDict(item, container.add())
        else:
            container.extend(_scalar(field, v) for v in value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        json_format.ParseDict(value, getattr(target, last))
    else:
        setattr(target, last, _scalar(field, value))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    """An enum value by name as its number; an integer given as a string (a GraphQL ID, a 64-bit
    integer beyond what GraphQL's Int holds) as an int. ValueError/KeyError when it is neither."""
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, str):
        return enum_type(field).values_by_name[value].number
    if field.type in INTEGER_TYPES and isinstance(value, str):
        return int(value, 10)
    return value


# protobuf >= 5.28 can leave 64-bit integers as numbers; older releases quote them as JSON does.
_UNQUOTES_INT64 = (
    "unquote_int64_if_possible" in inspect.signature(json_format.MessageToDict).parameters
)


def to_data(message: Message) -> dict[str, Any]:
    """Every field by its proto name, defaults included: enums as names, 64-bit ints as numbers
    (beyond 2**53 as strings, as protobuf gives them)."""
    if _UNQUOTES_INT64:
        return json_format.MessageToDict(
            message,
            always_print_fields_with_no_presence=True,
            preserving_proto_field_name=True,
            unquote_int64_if_possible=True,
        )
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


to_document = to_data


def to_update(message: Message) -> dict[str, Any]:
    """The fields an update sets: every field without presence, fields with presence only when set
    (so a proto3 `optional` field or a sub-message left out of an update keeps its stored value)."""
    full = to_data(message)
    return {
        field.name: full[field.name]
        for field in message.DESCRIPTOR.fields
        if field.name in full and (not field.has_presence or message.HasField(field.name))
    }
