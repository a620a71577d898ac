"""The document service on a store's read side: a FindRequest's queries on the backends of the
entities they name, their pages encoded back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.stores.base import NotIndexed
from cqrs_flow.stores.documents import UnknownEntity, answer_find
from cqrs_flow.stores.find import Indexes
from cqrs_flow.stores.memory import MemoryStore
from cqrs_flow.stores.operations import InvalidRequest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def protos():
    return compile_protos([Path("examples/library/proto/library.proto")], ROOT)


def backends() -> dict[str, MemoryStore]:
    books = MemoryStore("books", indexes=Indexes("id", ("year",)))
    authors = MemoryStore("authors", indexes=Indexes("id", ("name",)))

    async def fill() -> None:
        for i in range(30):
            await books.insert(f"b{i}", {"id": f"b{i}", "title": f"T{i}", "year": 1990 + i % 3})
        await authors.insert("a", {"id": "a", "name": "Ann"})

    asyncio.run(fill())
    return {"Book": books, "Author": authors}


def ask(protos: Any, stores: dict, *queries: dict, most: int = 10) -> Any:
    request = protos.message_class("cqrs_flow.FindRequest")(queries=list(queries))
    response = protos.message_class("cqrs_flow.FindResponse")()
    classes = {"Book": "library.Book", "Author": "library.Author"}
    document = lambda entity: protos.message_class(classes[entity])  # noqa: E731
    return asyncio.run(answer_find(request, response, stores, document, most))


def test_each_query_gets_its_page_in_order_the_documents_encoded(protos):
    stores = backends()
    response = ask(
        protos,
        stores,
        {
            "entity": "Book",
            "where": [{"field": "year", "op": "eq", "values": [{"integer": 1991}]}],
            "first": 3,
            "total": True,
        },
        {"entity": "Author", "keys": ["a", "nobody"]},
        {"entity": "Book", "order_by": "year", "descending": True, "last": 2},
    )
    filtered, by_key, ordered = response.pages
    book = protos.message_class("library.Book")
    assert [book.FromString(d).title for d in filtered.documents] == ["T1", "T4", "T7"]
    assert filtered.total == 10 and filtered.has_next and not filtered.has_previous
    assert len(filtered.positions) == 3
    author = protos.message_class("library.Author")
    assert [author.FromString(d).name for d in by_key.documents] == ["Ann"]
    assert [book.FromString(d).year for d in ordered.documents] == [1990, 1990]


def test_a_page_holds_at_most_the_store_limit_and_a_query_without_first_or_last_gets_that(protos):
    stores = backends()
    capped, default = ask(
        protos, stores, {"entity": "Book", "first": 1000}, {"entity": "Book"}, most=7
    ).pages
    assert len(capped.documents) == 7 and capped.has_next
    assert len(default.documents) == 7 and default.has_next


@pytest.mark.parametrize(
    "query, error, message",
    [
        (
            {"entity": "Shelf"},
            UnknownEntity,
            "this store holds no entity 'Shelf'; it holds Book, Author",
        ),
        (
            {
                "entity": "Book",
                "where": [{"field": "year", "op": "like", "values": [{"text": "x"}]}],
            },
            InvalidRequest,
            "unknown condition 'like' on 'year'",
        ),
        (
            {"entity": "Book", "where": [{"field": "year", "op": "eq", "values": []}]},
            InvalidRequest,
            "'eq' on 'year' takes one value",
        ),
        (
            {"entity": "Book", "where": [{"field": "year", "op": "eq", "values": [{}]}]},
            InvalidRequest,
            "a condition's value is empty",
        ),
        ({"entity": "Book", "first": -1}, InvalidRequest, "'first' must not be negative"),
        (
            {
                "entity": "Book",
                "where": [{"field": "title", "op": "eq", "values": [{"text": "T"}]}],
            },
            NotIndexed,
            "'title' is not indexed",
        ),
    ],
)
def test_a_query_that_cannot_be_asked_is_refused_saying_why(protos, query, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        ask(protos, backends(), query)
