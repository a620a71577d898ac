"""Store operations: how an RPC's request and response messages map onto the document store.

`bind` checks that an RPC's messages have the shape its operation needs and remembers which
fields to use; `validate` and the store node both go through it, so a topology that validates
is one the store can serve. Carrying an operation out is cqrs_flow.stores.operations' job.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from cqrs_flow.protobuf.messages import INTEGER_TYPES, is_repeated
from cqrs_flow.topology.spec import READ_OPS, WRITE_OPS

__all__ = ["READ_OPS", "WRITE_OPS", "BoundOperation", "ShapeError", "bind"]


class ShapeError(Exception):
    """An RPC whose messages do not fit the store operation it is mapped to."""


@dataclass(frozen=True)
class BoundOperation:
    op: str
    method: MethodDescriptor
    document: Descriptor
    key: str
    request_field: str  # the document, documents, key, keys or count field of the request
    response_field: str | None  # read ops: the document(s) field; write ops: unused
    entity: str = ""  # the name of the entity whose documents it is about

    @property
    def side(self) -> str:
        return "write" if self.op in WRITE_OPS else "read"


def bind(
    op: str, method: MethodDescriptor, document: Descriptor, key: str, entity: str = ""
) -> BoundOperation:
    """Match `method`'s messages to `op` on `entity`'s documents; ShapeError says what is
    missing."""
    bound = _bind(op, method, document, key)
    return replace(bound, entity=entity or document.name)


def _bind(op: str, method: MethodDescriptor, document: Descriptor, key: str) -> BoundOperation:
    request, response = method.input_type, method.output_type
    key_field = document.fields_by_name.get(key)
    if key_field is None or key_field.type != FieldDescriptor.TYPE_STRING or is_repeated(key_field):
        raise ShapeError(f"the document {document.full_name} needs a string key field '{key}'")

    def one(fields: list[FieldDescriptor], what: str, where: Descriptor) -> str:
        if len(fields) != 1:
            found = f"found {len(fields)}" if fields else "found none"
            raise ShapeError(
                f"{method.name} ({op}) needs exactly one {what} in {where.full_name}; {found}"
            )
        return fields[0].name

    def documents(where: Descriptor, repeated: bool) -> list[FieldDescriptor]:
        return [
            f
            for f in where.fields
            if f.message_type is not None
            and f.message_type.full_name == document.full_name
            and is_repeated(f) == repeated
        ]

    doc_name = document.full_name
    if op in ("insert", "update", "insert_many"):
        many = op == "insert_many"
        what = f"repeated {doc_name} field" if many else f"{doc_name} field"
        return BoundOperation(
            op, method, document, key, one(documents(request, many), what, request), None
        )
    if op in ("delete", "get"):
        field = request.fields_by_name.get(key)
        if field is None or field.type != FieldDescriptor.TYPE_STRING or is_repeated(field):
            raise ShapeError(
                f"{method.name} ({op}) needs a string field '{key}' in {request.full_name}"
            )
        if op == "delete" or response.full_name == doc_name:  # get: the document itself
            return BoundOperation(op, method, document, key, key, None)
        return BoundOperation(
            op,
            method,
            document,
            key,
            key,
            one(documents(response, False), f"{doc_name} field", response),
        )
    if op == "delete_many":
        keys = [
            f for f in request.fields if is_repeated(f) and f.type == FieldDescriptor.TYPE_STRING
        ]
        return BoundOperation(
            op, method, document, key, one(keys, "repeated string field", request), None
        )
    if op == "list":
        counts = [f for f in request.fields if f.type in INTEGER_TYPES and not is_repeated(f)]
        return BoundOperation(
            op,
            method,
            document,
            key,
            one(counts, "integer (count) field", request),
            one(documents(response, True), f"repeated {doc_name} field", response),
        )
    raise ShapeError(f"unknown store operation '{op}'")
