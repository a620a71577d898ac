"""`cqrs-flow init` of several related entities end to end: scaffold authors, books and loans with
the real CLI, validate the project, run it with `cqrs-flow up`, add an author, a book and a loan
over GraphQL, and follow the relations both ways, to one and through connections."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from system import System, cli, prepare, wait_until

DELAY = 0.3  # the test copy's write delay (the scaffold's own is 1s)
ENTITIES = [
    "--entity",
    "Author",
    "name:String",
    "--entity",
    "Book",
    "title:String",
    "author:Author",
    "--entity",
    "Loan",
    "book:Book",
    "member:String",
    "due:String",
]
ADD = {
    "addAuthor": "mutation($name: String!) { addAuthor(name: $name) { status message id } }",
    "addBook": "mutation($title: String!, $author_id: String!) "
    "{ addBook(title: $title, author_id: $author_id) { status message id } }",
    "addLoan": "mutation($book_id: String!, $member: String!, $due: String!) "
    "{ addLoan(book_id: $book_id, member: $member, due: $due) { status message id } }",
}
GET = "query($id: String!) {{ {entity}(id: $id) {{ id }} }}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project scaffolded by the real CLI, as a user runs it."""
    directory = tmp_path_factory.mktemp("init") / "library"
    result = subprocess.run(
        [*cli(), "init", str(directory), *ENTITIES],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"cqrs-flow up {directory / 'topology.yaml'}" in result.stdout
    return directory


@pytest.fixture(scope="module")
def library(project, tmp_path_factory) -> System:
    """The scaffolded project with free ports and a short write delay, shared by this module."""
    topology = prepare(
        "library.yaml",
        tmp_path_factory.mktemp("library-run"),
        source=project / "topology.yaml",
        **{"nodes.writer.delay": f"{int(DELAY * 1000)}ms"},
    )
    system = System(topology).start()
    yield system
    assert system.stop() == 0, system.output()


def add(system: System, mutation: str, **arguments: str) -> str:
    """Run an add mutation; the id of the document it queued, once the document is readable."""
    answer = system.data(ADD[mutation], arguments)[mutation]
    assert answer["status"] == "OK" and answer["message"] == "Queued to add", answer
    entity = mutation.removeprefix("add").lower()
    wait_until(lambda: system.data(GET.format(entity=entity), {"id": answer["id"]})[entity])
    return str(answer["id"])


def test_the_scaffold_validates_as_written(project):
    result = subprocess.run(
        [*cli(), "validate", str(project / "topology.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "valid — 5 nodes, 9 commands" in result.stdout


def test_relations_lead_both_ways(library):
    author = add(library, "addAuthor", name="Ursula K. Le Guin")
    book = add(library, "addBook", title="The Dispossessed", author_id=author)
    add(library, "addLoan", book_id=book, member="ann", due="2027-01-31")

    books = library.data("{ books { edges { node { title author { name } } } } }")["books"]
    assert {"node": {"title": "The Dispossessed", "author": {"name": "Ursula K. Le Guin"}}} in (
        books["edges"]
    )
    authors = library.data(
        "{ authors { edges { node { books { totalCount edges { node { title } } } } } } }"
    )["authors"]
    assert {
        "node": {"books": {"totalCount": 1, "edges": [{"node": {"title": "The Dispossessed"}}]}}
    } in authors["edges"]
    loans = library.data("{ loans { nodes { member book { title author { name } } } } }")
    assert {
        "member": "ann",
        "book": {"title": "The Dispossessed", "author": {"name": "Ursula K. Le Guin"}},
    } in loans["loans"]["nodes"]


def test_a_relation_to_one_is_null_when_its_key_leads_nowhere(library):
    book = add(library, "addBook", title="Anonymous", author_id="no-such-author")
    found = library.data(
        "query($id: String!) { book(id: $id) { title author { name } } }", {"id": book}
    )
    assert found["book"] == {"title": "Anonymous", "author": None}


def test_a_list_is_paged_filtered_and_ordered_on_indexes(library):
    author = add(library, "addAuthor", name="Stanisław Lem")
    for title in ("Solaris", "Fiasco", "Eden"):
        add(library, "addBook", title=title, author_id=author)
    query = """
      query($author: String!, $after: String) {
        books(where: {author_id: {eq: $author}}, orderBy: {field: title, direction: ASC},
              first: 2, after: $after) {
          totalCount
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
          edges { cursor node { title } }
        }
      }"""
    first = library.data(query, {"author": author})["books"]
    assert first["totalCount"] == 3
    assert [e["node"]["title"] for e in first["edges"]] == ["Eden", "Fiasco"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    second = library.data(query, {"author": author, "after": first["pageInfo"]["endCursor"]})
    assert [e["node"]["title"] for e in second["books"]["edges"]] == ["Solaris"]
    assert second["books"]["pageInfo"]["hasNextPage"] is False
    prefixed = library.data(
        '{ books(where: {title: {prefix: "Fi"}}) { nodes { title author { name } } } }'
    )["books"]["nodes"]
    assert prefixed == [{"title": "Fiasco", "author": {"name": "Stanisław Lem"}}]
    lem = library.data(
        "query($id: String!) { author(id: $id) { books(last: 1, orderBy: {field: title}) "
        "{ totalCount nodes { title } } } }",
        {"id": author},
    )["author"]["books"]
    assert lem == {"totalCount": 3, "nodes": [{"title": "Solaris"}]}


def test_update_and_remove_ask_whether_the_entity_exists(library):
    for field, mutation, entity in (
        ("updateBook", 'updateBook(id: "no-such-id", title: "x", author_id: "y")', "book"),
        ("removeLoan", 'removeLoan(id: "no-such-id")', "loan"),
    ):
        answer = library.data(f"mutation {{ {mutation} {{ status message id }} }}")[field]
        assert answer == {
            "status": "ERROR",
            "message": f"{entity} no-such-id not found",
            "id": None,
        }


def test_the_readme_operations_run(library, project):
    readme = (project / "README.md").read_text()
    block = re.search(r"```graphql\n(.*?)```", readme, re.S).group(1)
    operations = {
        m.group(2): m.group(1)
        for m in re.finditer(r"^((?:query|mutation) (\w+) \{.*\})$", block, re.M)
    }
    assert sorted(operations) == [
        "AddAuthor",
        "AddBook",
        "AddLoan",
        "Author",
        "Authors",
        "Books",
        "Loans",
        "RemoveAuthor",
        "UpdateAuthor",
    ]
    ids: dict[str, str] = {}

    def run(name: str) -> dict:
        text = operations[name]
        for placeholder, value in ids.items():
            text = text.replace(f"<{placeholder} id>", value)
        return library.data(text)

    for name, entity in (("AddAuthor", "author"), ("AddBook", "book"), ("AddLoan", "loan")):
        answer = next(iter(run(name).values()))
        assert answer["status"] == "OK", answer
        ids[entity] = answer["id"]
        wait_until(lambda e=entity: library.data(GET.format(entity=e), {"id": ids[e]})[e])
    assert run("Authors")["authors"]["totalCount"] >= 1
    assert any(e["node"]["author"] == {"name": "name 1"} for e in run("Books")["books"]["edges"])
    assert run("Author")["author"]["books"]["nodes"] == [{"title": "title 1"}]
    for name in ("UpdateAuthor", "RemoveAuthor"):
        assert next(iter(run(name).values()))["status"] == "OK"
