"""Protobuf messages <-> plain data, fast: converters made once per message type.

json_format walks a message field by field through descriptors on every call; the gateway turns
every query answer into data and the store turns every document it reads into a message, so
both use converters that read the fields directly. Each gives exactly what json_format gives
(to_data, ParseDict) and leaves to json_format what it does not read directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from cqrs_flow.protobuf.messages import (
    descriptor_of,
    enum_type,
    is_repeated,
    message_type,
    to_data,
)

__all__ = ["data_converter", "from_document"]

# Field types whose value is its own plain-data form (what to_data gives for it).
_PLAIN_TYPES = {
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}


# -- documents -> messages (the store) -----------------------------------------------------------


def from_document(document: dict[str, Any], cls: type[Message]) -> Message:
    """The message of type `cls` a stored document holds; keys that are not fields are ignored.

    What json_format.ParseDict(ignore_unknown_fields=True) gives, faster for documents as
    to_document writes them (plain fields in canonical form: the store reads on every get and
    list); anything else goes through ParseDict itself, which also says what does not fit."""
    reader = _document_readers.get(cls)
    if reader is None:
        reader = _document_readers[cls] = _document_reader(descriptor_of(cls), set()) or _never
    try:
        fields = reader(document)
        if fields is not None:
            return cls(**fields)
    except (_NotPlain, ValueError, TypeError):
        pass
    return json_format.ParseDict(document, cls(), ignore_unknown_fields=True)


class _NotPlain(Exception):
    """A document value the direct path does not read: ParseDict decides."""


_DocumentReader = Callable[[Any], "dict[str, Any] | None"]
_document_readers: dict[type[Message], _DocumentReader] = {}


def _never(document: Any) -> None:
    return None


def _document_reader(descriptor: Descriptor, outer: set[str]) -> _DocumentReader | None:
    """document -> constructor keywords for `descriptor`, raising _NotPlain on a value it does not
    read directly; None for types it cannot read at all (as for data_converter)."""
    if descriptor.full_name.startswith("google.protobuf.") or descriptor.full_name in outer:
        return None
    values: dict[str, Callable[[Any], Any]] = {}
    for field in descriptor.fields:
        value: Callable[[Any], Any]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if message_type(field).GetOptions().map_entry:
                return None
            inner = _document_reader(message_type(field), outer | {descriptor.full_name})
            if inner is None:
                return None
            value = inner  # the message's constructor takes a dict of keywords for it
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = _enum_number(field)
        elif field.type in _PLAIN_TYPES or field.type == FieldDescriptor.TYPE_DOUBLE:
            value = _exactly(
                {
                    FieldDescriptor.TYPE_STRING: str,
                    FieldDescriptor.TYPE_BOOL: bool,
                    FieldDescriptor.TYPE_DOUBLE: float,
                }.get(field.type, int)
            )
        else:
            return None
        values[field.name] = _each(value) if is_repeated(field) else value
    # ParseDict also takes a field by its JSON name: such a key is left to it
    json_names = {field.json_name for field in descriptor.fields} - set(values)
    # ParseDict refuses two members of one oneof: left to it too
    oneof_of = {
        field.name: field.containing_oneof.name
        for field in descriptor.fields
        if field.containing_oneof is not None and len(field.containing_oneof.fields) > 1
    }

    def read(document: Any) -> dict[str, Any]:
        if type(document) is not dict:
            raise _NotPlain
        fields = {}
        for key, item in document.items():
            value = values.get(key)
            if value is None:
                if type(key) is not str or key in json_names or key.startswith("["):
                    raise _NotPlain
                continue  # not a field: ignored
            fields[key] = value(item)
        if oneof_of and len({oneof_of[k] for k in fields if k in oneof_of}) < sum(
            k in oneof_of for k in fields
        ):
            raise _NotPlain
        return fields

    return read


def _exactly(kind: type) -> Callable[[Any], Any]:
    def value(item: Any) -> Any:
        if type(item) is not kind:  # bool is not an int here; None and the rest: ParseDict decides
            raise _NotPlain
        return item

    return value


def _enum_number(field: FieldDescriptor) -> Callable[[Any], int]:
    numbers = {value.name: value.number for value in enum_type(field).values}

    def value(item: Any) -> int:
        if type(item) is not str or item not in numbers:
            raise _NotPlain
        return numbers[item]

    return value


def _each(value: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def values(items: Any) -> list[Any]:
        if type(items) is not list:
            raise _NotPlain
        return [value(item) for item in items]

    return values


# -- messages -> data (the gateway) --------------------------------------------------------------

_Converter = Callable[[Message], dict[str, Any]]


def data_converter(descriptor: Descriptor) -> _Converter:
    """A function equal to `to_data` (as a dict) for messages of type `descriptor`, made once.

    It reads the fields directly, several times faster than json_format walks them (the gateway
    converts every query answer). Message types with fields it does not read directly (bytes,
    float, 64-bit integers, maps, well-known types, recursive types) get `to_data` itself."""
    return _converter(descriptor, set()) or to_data


def _converter(descriptor: Descriptor, outer: set[str]) -> _Converter | None:
    if descriptor.full_name.startswith("google.protobuf.") or descriptor.full_name in outer:
        return None
    readers: list[tuple[str, bool, bool, Callable[[Any], Any] | None]] = []
    for field in descriptor.fields:
        convert: Callable[[Any], Any] | None = None
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if message_type(field).GetOptions().map_entry:
                return None
            convert = _converter(message_type(field), outer | {descriptor.full_name})
            if convert is None:
                return None
        elif field.type == FieldDescriptor.TYPE_ENUM:
            names = _enum_names(field)
            if names is None:
                return None
            convert = lambda number, names=names: names.get(number, number)  # noqa: E731
        elif field.type == FieldDescriptor.TYPE_DOUBLE:
            convert = _double
        elif field.type not in _PLAIN_TYPES:
            return None
        repeated = is_repeated(field)
        readers.append((field.name, repeated, field.has_presence and not repeated, convert))

    def data(message: Message) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, repeated, presence, convert in readers:
            if presence and not message.HasField(name):
                continue  # as to_data: a field with presence only when set
            value = getattr(message, name)
            if convert is None:
                found[name] = list(value) if repeated else value
            else:
                found[name] = [convert(v) for v in value] if repeated else convert(value)
        return found

    return data


def _enum_names(field: FieldDescriptor) -> dict[int, str] | None:
    """Number -> name, or None when json_format would not give the plain name (NullValue, values
    with options such as a JSON name of their own)."""
    enum = enum_type(field)
    if enum.full_name == "google.protobuf.NullValue" or any(
        v.GetOptions().ListFields() for v in enum.values
    ):
        return None
    names: dict[int, str] = {}
    for value in enum.values:
        names.setdefault(value.number, value.name)  # an alias: the first name, as json_format gives
    return names


def _double(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
