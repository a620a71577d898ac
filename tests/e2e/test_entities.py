"""Several entities in one system (examples/library: authors, books and loans in one store, one
reader, one gateway) against a real `cqrs-flow up`: relations both ways, resolved with one store
call per level of a query; Relay paging that reaches every document, forward and backward, and
skips or repeats none while documents come and go; filters and order on the indexes; cursors
that refuse tampering and other lists."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from system import System, prepare, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "library"

ADD_AUTHOR = (
    "mutation($name: String!, $born: Int) { addAuthor(name: $name, born: $born) { status id } }"
)
ADD_BOOKS = "mutation($books: [BookInput!]!) { addBooks(books: $books) { status message } }"
REMOVE_BOOK = "mutation($id: String!) { removeBook(id: $id) { status message } }"
LEND = (
    "mutation($book: String!, $member: String!, $due: String!)"
    " { lendBook(book_id: $book, member: $member, due: $due) { status id } }"
)
PAGE = """
query($first: Int, $after: String, $last: Int, $before: String, $where: BookWhere,
      $orderBy: BookOrder) {
  books(first: $first, after: $after, last: $last, before: $before, where: $where,
        orderBy: $orderBy) {
    totalCount
    edges { cursor node { id title year } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


@pytest.fixture(scope="module", params=["memory", "durable"])
def library(request, tmp_path_factory) -> System:
    """The library example with free ports and a short write delay, its store in memory (as
    shipped) or durable (SQLite, `data:`); the store logs each call of the document service
    (DEBUG), which the batching test counts."""
    durable = {"nodes.store.data": "store-data"} if request.param == "durable" else {}
    topology = prepare(
        "library.yaml",
        tmp_path_factory.mktemp("entities"),
        source=EXAMPLE / "topology.yaml",
        stop_timeout="3s",
        **{"nodes.writer.delay": "100ms", "nodes.gateway.auth": None, **durable},
    )
    system = System(topology, env={"CQRS_FLOW_LOG_LEVEL": "DEBUG"}).start()
    yield system
    system.stop()


def add_author(system: System, name: str, born: int = 0) -> str:
    answer = system.data(ADD_AUTHOR, {"name": name, "born": born})["addAuthor"]
    assert answer["status"] == "OK", answer
    return answer["id"]


def add_books(system: System, books: list[dict]) -> list[str]:
    """Add books in one command (ids given here) and wait until all are there."""
    items = [{"id": str(uuid.uuid4()), "year": 2000, **b} for b in books]
    answer = system.data(ADD_BOOKS, {"books": items})["addBooks"]
    assert answer["status"] == "OK", answer
    ids = [b["id"] for b in items]
    wait_until(lambda: all(found(system, "book", i) for i in ids))
    return ids


def settled(system: System, quiet: float = 0.5) -> int:
    """How many lines the system has printed, once it has printed none for `quiet` seconds (the
    nodes' lines reach the test through `up`, a little after the calls that log them)."""
    count, since = len(system.lines), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        if len(system.lines) != count:
            count, since = len(system.lines), time.monotonic()
    return count


def found(system: System, what: str, key: str) -> dict | None:
    return system.data(f'{{ {what}(id: "{key}") {{ id }} }}')[what]


def page(system: System, **variables) -> dict:
    return system.data(PAGE, variables)["books"]


def titles(connection: dict) -> list[str]:
    return [edge["node"]["title"] for edge in connection["edges"]]


def walk(system: System, where: dict, size: int, backward: bool = False, between=None) -> list:
    """Every book `where` matches, page by page of `size` (from the end with `backward`);
    `between(n)` runs after the n-th page."""
    seen: list[str] = []
    cursor = None
    for n in range(1000):
        if backward:
            connection = page(system, last=size, before=cursor, where=where)
            seen[:0] = titles(connection)
            more, cursor = (
                connection["pageInfo"]["hasPreviousPage"],
                connection["pageInfo"]["startCursor"],
            )
        else:
            connection = page(system, first=size, after=cursor, where=where)
            seen += titles(connection)
            more, cursor = (
                connection["pageInfo"]["hasNextPage"],
                connection["pageInfo"]["endCursor"],
            )
        if not more:
            return seen
        if between is not None:
            between(n)
    raise AssertionError("paging did not end")


# -- relations --------------------------------------------------------------------------------


def test_relations_resolve_both_ways(library):
    pratchett = add_author(library, "Terry Pratchett", 1948)
    wait_until(lambda: found(library, "author", pratchett))
    mort, guards = add_books(
        library,
        [
            {"title": "Mort", "author_id": pratchett, "year": 1987},
            {"title": "Guards! Guards!", "author_id": pratchett, "year": 1989},
        ],
    )
    lent = library.data(LEND, {"book": mort, "member": "ada", "due": "2027-01-31"})["lendBook"]
    assert lent["status"] == "OK", lent
    wait_until(lambda: found(library, "loan", lent["id"]))

    book = library.data(
        f'{{ book(id: "{mort}") {{ title author {{ name born }}'
        " loans { totalCount nodes { member due returned book { title } } } } }"
    )["book"]
    assert book == {
        "title": "Mort",
        "author": {"name": "Terry Pratchett", "born": 1948},
        "loans": {
            "totalCount": 1,
            "nodes": [
                {"member": "ada", "due": "2027-01-31", "returned": False, "book": {"title": "Mort"}}
            ],
        },
    }
    author = library.data(
        f'{{ author(id: "{pratchett}") {{ books(orderBy: {{field: year, direction: DESC}})'
        " { totalCount nodes { title author { name } } } } }"
    )["author"]
    assert author["books"] == {
        "totalCount": 2,
        "nodes": [
            {"title": "Guards! Guards!", "author": {"name": "Terry Pratchett"}},
            {"title": "Mort", "author": {"name": "Terry Pratchett"}},
        ],
    }
    assert guards


def test_a_nested_query_costs_one_store_call_per_level(library):
    """50 books, each with its author, and each author's first 5 books: 3 calls of the store's
    document service (books; their authors; the authors' books), not 1 + 50 + 50."""
    authors = [add_author(library, f"nested author {i}") for i in range(10)]
    wait_until(lambda: all(found(library, "author", a) for a in authors))
    add_books(
        library,
        [{"title": f"nested {i:02}", "author_id": authors[i % 10], "year": i} for i in range(50)],
    )
    query = """{
      books(first: 50, where: {title: {prefix: "nested "}}) {
        nodes { title author { name books(first: 5) { totalCount nodes { title } } } }
      }
    }"""
    before = settled(library)  # the lines of the calls before this query are all in
    nodes = library.data(query)["books"]["nodes"]
    settled(library)
    calls = [line for line in library.lines[before:] if re.search(r"store .* find: \d+ quer", line)]
    assert len(calls) == 3, calls
    assert [n["title"] for n in nodes] == [f"nested {i:02}" for i in range(50)]
    for i, node in enumerate(nodes):
        assert node["author"]["name"] == f"nested author {i % 10}"
        books = node["author"]["books"]
        assert books["totalCount"] == 5
        assert [b["title"] for b in books["nodes"]] == [
            f"nested {j:02}" for j in range(i % 10, 50, 10)
        ]


def test_a_dangling_to_one_relation_is_null(library):
    gone = add_author(library, "Soon gone")
    wait_until(lambda: found(library, "author", gone))
    (book,) = add_books(library, [{"title": "Orphan", "author_id": gone}])
    answer = library.data(f'mutation {{ removeAuthor(id: "{gone}") {{ status }} }}')
    assert answer["removeAuthor"]["status"] == "OK"
    wait_until(lambda: not found(library, "author", gone))
    assert library.data(f'{{ book(id: "{book}") {{ title author {{ name }} }} }}') == {
        "book": {"title": "Orphan", "author": None}
    }


def test_a_dangling_non_null_relation_is_a_clear_error_not_a_500(tmp_path):
    copy = tmp_path / "library"
    shutil.copytree(EXAMPLE, copy)
    schema = copy / "schema" / "library.graphql"
    schema.write_text(schema.read_text().replace("  book: Book\n", "  book: Book!\n"))
    system = System(
        prepare(
            "library.yaml",
            tmp_path,
            source=copy / "topology.yaml",
            stop_timeout="3s",
            **{"nodes.writer.delay": "50ms", "nodes.gateway.auth": None},
        )
    ).start()
    try:
        lent = system.data(LEND, {"book": "no-such-book", "member": "bob", "due": "2027-02-01"})
        wait_until(lambda: found(system, "loan", lent["lendBook"]["id"]))
        answer = system.graphql(
            f'{{ loan(id: "{lent["lendBook"]["id"]}") {{ member book {{ title }} }} }}'
        )
        assert answer["data"] == {"loan": None}
        (error,) = answer["errors"]
        assert error["extensions"]["code"] == "DANGLING_RELATION", error
        assert "book (Book no-such-book) does not exist" in error["message"], error
    finally:
        system.stop()


# -- paging -----------------------------------------------------------------------------------


def test_paging_reaches_every_document_forward_and_backward(library):
    wanted = [f"every {i:02}" for i in range(45)]
    add_books(library, [{"title": t} for t in wanted])
    where = {"title": {"prefix": "every "}}
    assert walk(library, where, 10) == wanted
    assert walk(library, where, 7, backward=True) == wanted
    first = page(library, first=10, where=where)
    assert first["totalCount"] == 45
    assert first["pageInfo"]["hasPreviousPage"] is False and first["pageInfo"]["hasNextPage"]
    after = page(library, first=10, after=first["pageInfo"]["endCursor"], where=where)
    assert titles(after) == wanted[10:20] and after["pageInfo"]["hasPreviousPage"] is True
    last = page(library, last=5, where=where)
    assert titles(last) == wanted[40:] and last["pageInfo"]["hasNextPage"] is False
    assert page(library, first=0, where=where)["edges"] == []


def test_paging_is_stable_while_documents_come_and_go(library):
    """Books added and removed between pages: every book there the whole time is seen exactly
    once (keyset cursors, not offsets)."""
    ids = add_books(library, [{"title": f"stable {i:02}"} for i in range(40)])
    title_of = {i: f"stable {n:02}" for n, i in enumerate(ids)}
    removed: set[str] = set()

    def churn(n: int) -> None:
        # remove one book already seen and one not yet seen; add two new ones
        for victim in (ids[n], ids[-1 - n]):
            answer = library.data(REMOVE_BOOK, {"id": victim})["removeBook"]
            assert answer["status"] == "OK", answer
            removed.add(victim)
        add_books(library, [{"title": f"stable new {n}-{k}"} for k in range(2)])
        wait_until(lambda: not any(found(library, "book", v) for v in (ids[n], ids[-1 - n])))

    seen = walk(library, {"title": {"prefix": "stable "}}, 6, between=churn)
    throughout = [title_of[i] for i in ids if i not in removed]
    assert len(seen) == len(set(seen)), "a book was seen twice"
    assert [t for t in seen if t in throughout] == throughout  # all, once, in order


def test_filters_and_order_on_indexes(library):
    author = add_author(library, "Filter author")
    wait_until(lambda: found(library, "author", author))
    add_books(
        library,
        [
            {"title": "filter a", "year": 1950, "genre": "HISTORY", "available": True},
            {"title": "filter b", "year": 1960, "genre": "FICTION", "available": False},
            {"title": "filter c", "year": 1970, "genre": "FICTION", "author_id": author},
            {"title": "filter d", "year": 1980, "genre": "SCIENCE", "available": False},
        ],
    )

    def matching(where: dict, **more) -> list[str]:
        return titles(page(library, where={"title": {"prefix": "filter "}, **where}, **more))

    assert matching({"year": {"eq": 1960}}) == ["filter b"]
    assert matching({"year": {"gt": 1950, "lte": 1970}}) == ["filter b", "filter c"]
    assert matching({"year": {"in": [1950, 1980, 2050]}}) == ["filter a", "filter d"]
    assert matching({"genre": {"eq": "FICTION"}}) == ["filter b", "filter c"]
    assert matching({"genre": {"in": ["HISTORY", "SCIENCE"]}}) == ["filter a", "filter d"]
    assert matching({"available": {"eq": False}}) == ["filter b", "filter d"]
    assert matching({"author_id": {"eq": author}}) == ["filter c"]
    assert matching({"title": {"prefix": "filter c"}}) == ["filter c"]
    assert matching({}, orderBy={"field": "year", "direction": "DESC"}) == [
        "filter d",
        "filter c",
        "filter b",
        "filter a",
    ]
    by_year = page(
        library, first=2, where={"title": {"prefix": "filter "}}, orderBy={"field": "year"}
    )
    assert titles(by_year) == ["filter a", "filter b"]
    rest = page(
        library,
        first=2,
        after=by_year["pageInfo"]["endCursor"],
        where={"title": {"prefix": "filter "}},
        orderBy={"field": "year"},
    )
    assert titles(rest) == ["filter c", "filter d"]


def test_a_filter_or_order_on_a_field_that_is_not_indexed_is_refused_naming_the_indexed(library):
    for query in (
        "{ books(where: {rating: {eq: 1.0}}) { totalCount } }",
        "{ books(orderBy: {field: rating}) { totalCount } }",
    ):
        answer = library.graphql(query)
        assert answer["data"] is None
        (error,) = answer["errors"]
        assert "id, title, author_id, year, genre, available" in error["message"], error
        assert "'rating' is not one of them" in error["message"], error


# -- cursors ----------------------------------------------------------------------------------


def test_cursors_refuse_tampering_and_other_lists(library):
    add_books(library, [{"title": f"cursor {i}"} for i in range(3)])
    where = {"title": {"prefix": "cursor "}}
    cursor = page(library, first=1, where=where)["pageInfo"]["endCursor"]
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    for bad in (tampered, "not a cursor", "", cursor * 3):
        answer = library.graphql(PAGE, {"first": 1, "after": bad, "where": where})
        assert answer["data"] is None, bad
        (error,) = answer["errors"]
        assert error["extensions"]["code"] == "INVALID_CURSOR", error
        assert "not a cursor this API gave" in error["message"], error
    ordered = library.graphql(PAGE, {"first": 1, "after": cursor, "orderBy": {"field": "year"}})
    (error,) = ordered["errors"]
    assert error["extensions"]["code"] == "INVALID_CURSOR"
    assert "in insertion order; this list is of Book ordered by year ASC" in error["message"]
    add_author(library, "Cursor author")
    wait_until(
        lambda: library.data("{ authors(first: 1) { totalCount } }")["authors"]["totalCount"]
    )
    author_cursor = library.data("{ authors(first: 1) { pageInfo { endCursor } } }")["authors"][
        "pageInfo"
    ]["endCursor"]
    foreign = library.graphql(PAGE, {"first": 1, "after": author_cursor})
    (error,) = foreign["errors"]
    assert "a cursor of a list of Author" in error["message"], error


def test_a_page_larger_than_the_limit_is_refused(library):
    answer = library.graphql("{ books(first: 100000) { totalCount } }")
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED", error
    assert "limits.list_count" in error["message"]


def test_get_and_exists_by_entity(library):
    assert library.data('{ author(id: "no-such-author") { name } }') == {"author": None}
    answer = library.data(
        'mutation { updateAuthor(id: "no-such-author", name: "x") { status message } }'
    )
    assert answer["updateAuthor"] == {
        "status": "ERROR",
        "message": "author no-such-author not found",
    }
    empty = library.graphql('{ author(id: "") { name } }')
    assert [e["message"] for e in empty["errors"]] == ["argument 'id' must not be empty"]


def test_a_graphql_client_pages_through_a_connection_with_variables(library):
    """What a Relay-style client does: the gql library, one query document, `after` from the
    last page's endCursor, until hasNextPage is false."""
    gql = pytest.importorskip("gql")
    from gql.transport.aiohttp import AIOHTTPTransport

    wanted = [f"client {i:02}" for i in range(23)]
    add_books(library, [{"title": t} for t in wanted])
    url = f"http://{library.gateway.listen.target}/graphql"

    async def walk_with_gql() -> list[str]:
        seen: list[str] = []
        async with gql.Client(transport=AIOHTTPTransport(url=url)) as session:
            variables = {"first": 5, "where": {"title": {"prefix": "client "}}}
            while True:
                request = gql.GraphQLRequest(PAGE, variable_values=variables)
                books = (await session.execute(request))["books"]
                seen += titles(books)
                assert books["totalCount"] == 23
                if not books["pageInfo"]["hasNextPage"]:
                    return seen
                variables["after"] = books["pageInfo"]["endCursor"]

    assert asyncio.run(walk_with_gql()) == wanted


def test_every_author_and_loan_mutation_and_query(library):
    author = add_author(library, "Ursula K. Le Guin", 1929)
    wait_until(lambda: found(library, "author", author))
    answer = library.data(
        f'mutation {{ updateAuthor(id: "{author}", name: "Ursula Le Guin", born: 1929)'
        " { status message id } }"
    )["updateAuthor"]
    assert answer == {"status": "OK", "message": f"Queued to update {author}", "id": author}
    wait_until(
        lambda: (
            library.data(f'{{ author(id: "{author}") {{ name }} }}')["author"]["name"]
            == "Ursula Le Guin"
        )
    )
    (book,) = add_books(library, [{"title": "The Dispossessed", "author_id": author}])
    loan = library.data(LEND, {"book": book, "member": "grace", "due": "2027-03-01"})["lendBook"]
    wait_until(lambda: found(library, "loan", loan["id"]))
    returned = library.data(
        f'mutation {{ updateLoan(id: "{loan["id"]}", book_id: "{book}", member: "grace",'
        ' due: "2027-03-01", returned: true) { status } }'
    )["updateLoan"]
    assert returned["status"] == "OK"
    member_loans = (
        '{ loans(where: {member: {eq: "grace"}}) { nodes { id returned book { title } } } }'
    )
    wait_until(lambda: library.data(member_loans)["loans"]["nodes"][0]["returned"])
    assert library.data(member_loans)["loans"]["nodes"] == [
        {"id": loan["id"], "returned": True, "book": {"title": "The Dispossessed"}}
    ]
    assert library.data(f'{{ loan(id: "{loan["id"]}") {{ member due }} }}')["loan"] == {
        "member": "grace",
        "due": "2027-03-01",
    }
    removed = library.data(f'mutation {{ removeLoan(id: "{loan["id"]}") {{ status }} }}')
    assert removed["removeLoan"]["status"] == "OK"
    wait_until(lambda: not found(library, "loan", loan["id"]))
    assert library.data(member_loans)["loans"]["nodes"] == []
    assert library.data(f'{{ book(id: "{book}") {{ loans {{ totalCount }} }} }}') == {
        "book": {"loans": {"totalCount": 0}}
    }
