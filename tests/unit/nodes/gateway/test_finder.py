"""The Finder: what the resolvers of one turn ask goes in one Find call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from cqrs_flow.contracts.documents import EntityView
from cqrs_flow.nodes.gateway.finder import Finder
from cqrs_flow.protobuf.compiler import compile_protos

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def protos():
    return compile_protos([Path("examples/library/proto/library.proto")], ROOT)


class FakeDocuments:
    """The reader's document service: answers each query with the books it holds."""

    def __init__(self, protos: Any, books: dict[str, dict[str, Any]]) -> None:
        self.protos = protos
        self.books = books
        self.requests: list[Any] = []
        self.fail: grpc.aio.AioRpcError | None = None

    def request_class(self, rpc: str) -> Any:
        return self.protos.message_class("cqrs_flow.FindRequest")

    async def call(self, rpc: str, request: Any) -> Any:
        self.requests.append(request)
        await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        response = self.protos.message_class("cqrs_flow.FindResponse")()
        book = self.protos.message_class("library.Book")
        for query in request.queries:
            page = response.pages.add()
            keys = list(query.keys) or list(self.books)
            for key in keys:
                if key in self.books:
                    page.documents.append(book(**self.books[key]).SerializeToString())
                    page.positions.append(key.encode())
        return response


def finder_for(protos: Any, documents: FakeDocuments) -> Finder:
    view = EntityView("Book", protos.message_class("library.Book"), "id", {"id": "String"})
    return Finder(documents, {"Book": view}, lambda exc: RuntimeError(exc.details()))  # type: ignore[arg-type]


def test_lookups_and_pages_of_one_turn_go_in_one_call(protos):
    documents = FakeDocuments(
        protos, {f"b{i}": {"id": f"b{i}", "title": f"T{i}"} for i in range(5)}
    )
    finder = finder_for(protos, documents)

    async def scenario() -> list[Any]:
        async def later_lookup(key: str) -> Any:
            await asyncio.sleep(0)  # a resolver that awaits something before it asks
            return await finder.lookup("Book", key)

        query = finder.new_query("Book")
        return await asyncio.gather(
            *(finder.lookup("Book", f"b{i}") for i in range(3)),
            finder.lookup("Book", "b1"),  # asked twice: one key in the call
            finder.lookup("Book", "missing"),
            later_lookup("b4"),
            finder.page(query),
        )

    *found, page = asyncio.run(scenario())
    assert [f and f["title"] for f in found] == ["T0", "T1", "T2", "T1", None, "T4"]
    assert len(page.documents) == 5
    (request,) = documents.requests
    assert finder.calls == 1
    pages, lookups = request.queries[0], request.queries[1]
    assert not pages.keys
    assert sorted(lookups.keys) == ["b0", "b1", "b2", "b4", "missing"]


def test_asking_after_a_call_went_makes_another(protos):
    documents = FakeDocuments(protos, {"b": {"id": "b", "title": "T"}})
    finder = finder_for(protos, documents)

    async def scenario() -> None:
        assert (await finder.lookup("Book", "b"))["title"] == "T"
        assert (await finder.lookup("Book", "b"))["title"] == "T"

    asyncio.run(scenario())
    assert finder.calls == 2


def test_a_failed_call_fails_every_waiter_with_the_refusal(protos):
    documents = FakeDocuments(protos, {})

    class Unavailable(grpc.aio.AioRpcError):
        def __init__(self) -> None:
            super().__init__(grpc.StatusCode.UNAVAILABLE, None, None, "store away")

    documents.fail = Unavailable()
    finder = finder_for(protos, documents)

    async def scenario() -> list[Any]:
        return await asyncio.gather(
            finder.lookup("Book", "a"),
            finder.page(finder.new_query("Book")),
            return_exceptions=True,
        )

    errors = asyncio.run(scenario())
    assert [str(e) for e in errors] == ["store away", "store away"]


def test_the_callers_row_rules_go_into_every_query_about_their_entity(protos):
    """auth.py's rows: pages and lookups of the entity carry the conditions; others do not."""
    documents = FakeDocuments(protos, {"b1": {"id": "b1", "title": "T1"}})
    view = EntityView("Book", protos.message_class("library.Book"), "id", {"id": "String"})
    finder = Finder(
        documents,  # type: ignore[arg-type]
        {"Book": view, "Loan": view},
        lambda exc: RuntimeError(exc.details()),
        rows={"Book": [("shelf_owner", "ada"), ("year", 1990)]},
    )

    async def scenario() -> None:
        await asyncio.gather(
            finder.lookup("Book", "b1"),
            finder.page(finder.new_query("Book")),
            finder.page(finder.new_query("Loan")),
        )

    asyncio.run(scenario())
    (request,) = documents.requests
    conditions = {
        (q.entity, bool(q.keys)): [(c.field, c.op, c.values[0].WhichOneof("kind")) for c in q.where]
        for q in request.queries
    }
    rule = [("shelf_owner", "eq", "text"), ("year", "eq", "integer")]
    assert conditions == {("Book", True): rule, ("Book", False): rule, ("Loan", False): []}
