"""Carrying out a bound store operation (cqrs_flow.contracts.operations) against a backend:
request message in, backend call, response message out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from cqrs_flow.contracts.ids import uuid4
from cqrs_flow.contracts.operations import BoundOperation
from cqrs_flow.protobuf.conversions import from_document
from cqrs_flow.protobuf.messages import INTEGER_TYPES, to_document, to_update
from cqrs_flow.stores.base import Document, DocumentStore, DuplicateKey, StaleCommand

__all__ = ["InvalidRequest", "Stale", "apply_operation", "command_id_of", "rfc3339_now"]


class InvalidRequest(Exception):
    """A request the operation cannot carry out (e.g. an update without a key)."""


class Stale(Exception):
    """A command that must not be applied to its key: the key's last command is the same one (a
    redelivery) or a newer one (see cqrs_flow.contracts.ordering). `response` answers it as done."""

    def __init__(self, key: str, last: str, response: Message) -> None:
        super().__init__(key)
        self.key, self.last, self.response = key, last, response


def command_id_of(request: Message, name: str) -> str:
    """The command id in the field `name` of `request`; "" when it has none. InvalidRequest if
    that field holds anything but one string (store_plan refuses such a field, so only a
    store run without its plan's checks gets here)."""
    value = getattr(request, name, "")
    if isinstance(value, str):
        return value
    if value:
        raise InvalidRequest(f"'{name}' must hold one string, the command id")
    return ""


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def apply_operation(
    bound: BoundOperation,
    request: Message,
    store: DocumentStore,
    document_class: type[Message],
    response_class: type[Message],
    timestamp: str | None,
    list_limit: int,
    clock: Callable[[], str] = rfc3339_now,
    command: str | None = None,
) -> Message:
    """Carry out the operation as `command` (its command id, if it has one); raises NotFound,
    DuplicateKey, InvalidRequest, or Stale for a command that must not apply to its key.
    Bulk operations leave out the keys the command must not apply to."""
    response = response_class()
    try:
        return await _run(
            bound, request, store, document_class, response, timestamp, list_limit, clock, command
        )
    except StaleCommand as stale:
        _fill_write_response(response, bound.key, stale.key, 0)
        raise Stale(stale.key, stale.last, response) from None


async def _run(
    bound: BoundOperation,
    request: Message,
    store: DocumentStore,
    document_class: type[Message],
    response: Message,
    timestamp: str | None,
    list_limit: int,
    clock: Callable[[], str],
    command: str | None,
) -> Message:
    value = getattr(request, bound.request_field)
    if bound.op in ("insert", "update"):
        document = to_document(value) if bound.op == "insert" else to_update(value)
        key = document.get(bound.key) or (uuid4() if bound.op == "insert" else "")
        if not key:
            raise InvalidRequest(f"{bound.method.name} needs '{bound.request_field}.{bound.key}'")
        document[bound.key] = key
        if timestamp:
            document[timestamp] = clock()
        if bound.op == "insert":
            await store.insert(key, document, command)
        else:
            await store.update(key, document, command)
        _fill_write_response(response, bound.key, key, 1)
    elif bound.op == "delete":
        if not value:
            raise InvalidRequest(f"{bound.method.name} needs '{bound.request_field}'")
        await store.delete(value, command)
        _fill_write_response(response, bound.key, value, 1)
    elif bound.op == "insert_many":
        stamp = {timestamp: clock()} if timestamp else {}  # one time for the whole batch
        documents: dict[str, Document] = {}
        for item in value:
            document = to_document(item)
            document[bound.key] = document.get(bound.key) or uuid4()
            document.update(stamp)
            if document[bound.key] in documents:
                raise DuplicateKey(document[bound.key])  # twice in one request: store neither
            documents[document[bound.key]] = document
        _fill_write_response(response, bound.key, "", await store.insert_many(documents, command))
    elif bound.op == "delete_many":
        _fill_write_response(response, bound.key, "", await store.delete_many(list(value), command))
    elif bound.op == "get":
        if not value:
            raise InvalidRequest(f"{bound.method.name} needs '{bound.request_field}'")
        found = from_document(await store.get(value), document_class)
        _answer_part(response, bound).CopyFrom(found)
    elif bound.op == "list":
        if value < 0:
            raise InvalidRequest(f"{bound.request_field} must not be negative")
        listed = await store.list(min(value, list_limit))
        _answer_part(response, bound).extend(from_document(d, document_class) for d in listed)
    return response


def _answer_part(response: Message, bound: BoundOperation) -> Any:
    """Where a read's answer goes: its field of the response, or the whole response."""
    return response if bound.response_field is None else getattr(response, bound.response_field)


def _fill_write_response(response: Message, key_name: str, key: str, count: int) -> None:
    """Write responses carry what they can: the key of the document and the number changed."""
    fields = response.DESCRIPTOR.fields_by_name
    if key and key_name in fields and fields[key_name].type == FieldDescriptor.TYPE_STRING:
        setattr(response, key_name, key)
    if "count" in fields and fields["count"].type in INTEGER_TYPES:
        setattr(response, "count", count)  # noqa: B010 (the field is known only at run time)
