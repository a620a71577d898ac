"""The document service on a store's read side (cqrs_flow.Documents/Find): a FindRequest's queries
carried out on the backends of the entities they name, their pages encoded back.

The queries of one request that are about the same entity go to its backend in one
`find_many`, so the store answers them from one snapshot where the backend can.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import Message

from cqrs_flow.protobuf.conversions import from_document
from cqrs_flow.stores.base import Condition, DocumentStore, Find, Page
from cqrs_flow.stores.operations import InvalidRequest
from cqrs_flow.topology.spec import FILTER_OPS

__all__ = ["UnknownEntity", "answer_find", "value_of"]


class UnknownEntity(InvalidRequest):
    """A query about an entity the store does not hold."""


def value_of(value: Message) -> Any:
    """A cqrs_flow.Value as the documents hold it."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidRequest("a condition's value is empty")
    return getattr(value, kind)


def _find(query: Any, most: int) -> Find:
    """The Find a cqrs_flow.Query asks for; a page holds at most `most` documents (the store's
    list_limit), and a query asking neither first nor last gets the first `most`."""
    where = []
    for condition in query.where:
        if condition.op not in FILTER_OPS:
            raise InvalidRequest(
                f"unknown condition '{condition.op}' on '{condition.field}'; "
                f"one of {', '.join(FILTER_OPS)}"
            )
        values = tuple(value_of(v) for v in condition.values)
        if len(values) != 1 and condition.op != "in":
            raise InvalidRequest(f"'{condition.op}' on '{condition.field}' takes one value")
        where.append(Condition(condition.field, condition.op, values))
    for name in ("first", "last"):
        if query.HasField(name) and getattr(query, name) < 0:
            raise InvalidRequest(f"'{name}' must not be negative")
    first = min(query.first, most) if query.HasField("first") else None
    last = min(query.last, most) if query.HasField("last") else None
    if first is None and last is None:
        first = most
    return Find(
        keys=tuple(query.keys) if query.keys else None,
        where=tuple(where),
        order_by=query.order_by or None,
        descending=query.descending,
        first=first,
        after=query.after if query.HasField("after") else None,
        last=last,
        before=query.before if query.HasField("before") else None,
        total=query.total,
    )


async def answer_find(
    request: Any,
    response: Any,
    backends: Mapping[str, DocumentStore],
    document_class: Callable[[str], type[Message]],
    most: int,
) -> Any:
    """Fill `response` (a FindResponse) with a page per query of `request` (a FindRequest), each
    of at most `most` documents, and the change log position they were read at; InvalidRequest
    for a query that cannot be asked, what the backends raise otherwise.

    The queries of one entity are answered from one snapshot, with its position; those of
    several entities from one snapshot each, and the position is then the smallest of theirs:
    a follower going on from it may see a change the pages already show, but misses none."""
    groups: dict[str, list[tuple[int, Find]]] = {}
    for i, query in enumerate(request.queries):
        if query.entity not in backends:
            raise UnknownEntity(
                f"this store holds no entity '{query.entity}'; it holds {', '.join(backends)}"
            )
        groups.setdefault(query.entity, []).append((i, _find(query, most)))
    pages: dict[int, tuple[str, Page]] = {}
    positions = []
    for entity, finds in groups.items():
        found, position = await backends[entity].find_at([find for _, find in finds])
        positions.append(position)
        for (i, _), page in zip(finds, found, strict=True):
            pages[i] = (entity, page)
    response.log_position = min(positions, default=0)
    for i in range(len(request.queries)):
        entity, page = pages[i]
        cls = document_class(entity)
        out = response.pages.add()
        out.documents.extend(from_document(d, cls).SerializeToString() for d in page.documents)
        out.positions.extend(page.positions)
        out.has_next, out.has_previous = page.has_next, page.has_previous
        if page.total is not None:
            out.total = page.total
    return response
