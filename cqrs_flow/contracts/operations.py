"""Store operations: how an RPC's request and response messages map onto the document store.

`bind` checks that an RPC's messages have the shape its operation needs and remembers which
fields to use; `validate` and the store node both go through it, so a topology that validates
is one the store can serve.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from cqrs_flow.protobuf.conversions import from_document
from cqrs_flow.protobuf.messages import INTEGER_TYPES, is_repeated, to_document, to_update
from cqrs_flow.stores.base import DocumentStore, DuplicateKey, StaleCommand

__all__ = ["BoundOperation", "ShapeError", "Stale", "bind", "command_id_of", "rfc3339_now"]

WRITE_OPS = {"insert", "update", "delete", "insert_many", "delete_many"}
READ_OPS = {"get", "list"}


class ShapeError(Exception):
    """An RPC whose messages do not fit the store operation it is mapped to."""


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


@dataclass(frozen=True)
class BoundOperation:
    op: str
    method: MethodDescriptor
    document: Descriptor
    key: str
    request_field: str  # the document, documents, key, keys or count field of the request
    response_field: str | None  # read ops: the document(s) field; write ops: unused

    @property
    def side(self) -> str:
        return "write" if self.op in WRITE_OPS else "read"

    async def run(self, request: Message, store: DocumentStore, document_class: type[Message],
                  response_class: type[Message], timestamp: str | None, list_limit: int,
                  clock: Callable[[], str] = rfc3339_now, command: str | None = None) -> Message:
        """Carry out the operation as `command` (its command id, if it has one); raises NotFound,
        DuplicateKey, InvalidRequest, or Stale for a command that must not apply to its key.
        Bulk operations leave out the keys the command must not apply to."""
        response = response_class()
        try:
            return await self._run(request, store, document_class, response, timestamp, list_limit,
                                   clock, command)
        except StaleCommand as stale:
            _fill_write_response(response, self.key, stale.key, 0)
            raise Stale(stale.key, stale.last, response) from None

    async def _run(self, request: Message, store: DocumentStore, document_class: type[Message],
                   response: Message, timestamp: str | None, list_limit: int,
                   clock: Callable[[], str], command: str | None) -> Message:
        value = getattr(request, self.request_field)
        if self.op in ("insert", "update"):
            document = to_document(value) if self.op == "insert" else to_update(value)
            key = document.get(self.key) or (str(uuid.uuid4()) if self.op == "insert" else "")
            if not key:
                raise InvalidRequest(f"{self.method.name} needs '{self.request_field}.{self.key}'")
            document[self.key] = key
            if timestamp:
                document[timestamp] = clock()
            if self.op == "insert":
                await store.insert(key, document, command)
            else:
                await store.update(key, document, command)
            _fill_write_response(response, self.key, key, 1)
        elif self.op == "delete":
            if not value:
                raise InvalidRequest(f"{self.method.name} needs '{self.request_field}'")
            await store.delete(value, command)
            _fill_write_response(response, self.key, value, 1)
        elif self.op == "insert_many":
            now = clock() if timestamp else None
            documents = {}
            for item in value:
                document = to_document(item)
                document[self.key] = document.get(self.key) or str(uuid.uuid4())
                if now:
                    document[timestamp] = now
                if document[self.key] in documents:
                    raise DuplicateKey(document[self.key])  # twice in one request: store neither
                documents[document[self.key]] = document
            _fill_write_response(response, self.key, "", await store.insert_many(documents, command))
        elif self.op == "delete_many":
            _fill_write_response(response, self.key, "", await store.delete_many(list(value), command))
        elif self.op == "get":
            if not value:
                raise InvalidRequest(f"{self.method.name} needs '{self.request_field}'")
            found = from_document(await store.get(value), document_class)
            if self.response_field is None:
                response.CopyFrom(found)
            else:
                getattr(response, self.response_field).CopyFrom(found)
        elif self.op == "list":
            if value < 0:
                raise InvalidRequest(f"{self.request_field} must not be negative")
            documents = await store.list(min(value, list_limit))
            getattr(response, self.response_field).extend(
                from_document(d, document_class) for d in documents)
        return response


def _fill_write_response(response: Message, key_name: str, key: str, count: int) -> None:
    """Write responses carry what they can: the key of the document and the number changed."""
    fields = response.DESCRIPTOR.fields_by_name
    if key and key_name in fields and fields[key_name].type == FieldDescriptor.TYPE_STRING:
        setattr(response, key_name, key)
    if "count" in fields and fields["count"].type in INTEGER_TYPES:
        response.count = count


def bind(op: str, method: MethodDescriptor, document: Descriptor, key: str) -> BoundOperation:
    """Match `method`'s messages to `op`; ShapeError says what is missing."""
    request, response = method.input_type, method.output_type
    key_field = document.fields_by_name.get(key)
    if key_field is None or key_field.type != FieldDescriptor.TYPE_STRING or is_repeated(key_field):
        raise ShapeError(f"the document {document.full_name} needs a string key field '{key}'")

    def one(fields: list[FieldDescriptor], what: str, where: Descriptor) -> str:
        if len(fields) != 1:
            found = f"found {len(fields)}" if fields else "found none"
            raise ShapeError(f"{method.name} ({op}) needs exactly one {what} in {where.full_name}; {found}")
        return fields[0].name

    def documents(where: Descriptor, repeated: bool) -> list[FieldDescriptor]:
        return [f for f in where.fields if f.message_type is not None
                and f.message_type.full_name == document.full_name and is_repeated(f) == repeated]

    doc_name = document.full_name
    if op in ("insert", "update"):
        return BoundOperation(op, method, document, key,
                              one(documents(request, False), f"{doc_name} field", request), None)
    if op == "insert_many":
        return BoundOperation(op, method, document, key,
                              one(documents(request, True), f"repeated {doc_name} field", request), None)
    if op in ("delete", "get"):
        field = request.fields_by_name.get(key)
        if field is None or field.type != FieldDescriptor.TYPE_STRING or is_repeated(field):
            raise ShapeError(f"{method.name} ({op}) needs a string field '{key}' in {request.full_name}")
        if op == "delete":
            return BoundOperation(op, method, document, key, key, None)
        if response.full_name == doc_name:
            return BoundOperation(op, method, document, key, key, None)
        return BoundOperation(op, method, document, key, key,
                              one(documents(response, False), f"{doc_name} field", response))
    if op == "delete_many":
        keys = [f for f in request.fields if is_repeated(f) and f.type == FieldDescriptor.TYPE_STRING]
        return BoundOperation(op, method, document, key, one(keys, "repeated string field", request), None)
    if op == "list":
        counts = [f for f in request.fields if f.type in INTEGER_TYPES and not is_repeated(f)]
        return BoundOperation(op, method, document, key, one(counts, "integer (count) field", request),
                              one(documents(response, True), f"repeated {doc_name} field", response))
    raise ShapeError(f"unknown store operation '{op}'")
