"""`cqrs-flow init` end to end: scaffold a project with the real CLI, run it with `cqrs-flow up`,
and drive every generated mutation and query over HTTP GraphQL, the plugin stub included."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from system import System, cli, prepare, wait_until

DELAY = 0.3  # the test copy's write delay (the scaffold's own is 1s)
FIELDS = "id title year rating available tags updated_at"
BOOK = f"query($id: String!) {{ book(id: $id) {{ {FIELDS} }} }}"
LIST = f"query($count: Int!) {{ listBooks(count: $count) {{ {FIELDS} }} }}"
ARGUMENTS = "title: $title, year: $year, rating: $rating, available: $available, tags: $tags"
VARIABLES = "$title: String!, $year: Int!, $rating: Float!, $available: Boolean!, $tags: [String!]!"
ADD = f"mutation({VARIABLES}) {{ addBook({ARGUMENTS}) {{ status message id }} }}"
UPDATE = (
    f"mutation($id: String!, {VARIABLES}) "
    f"{{ updateBook(id: $id, {ARGUMENTS}) {{ status message id }} }}"
)
DELETE = "mutation($id: String!) { deleteBook(id: $id) { status message id } }"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
DUNE = {"title": "Dune", "year": 1965, "rating": 4.25, "available": True, "tags": ["sf", "classic"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project scaffolded by the real CLI, as a user runs it."""
    directory = tmp_path_factory.mktemp("init") / "bookshop"
    result = subprocess.run(
        [
            *cli(),
            "init",
            str(directory),
            "--entity",
            "Book",
            "title:String",
            "year:Int",
            "rating:Float",
            "available:Boolean",
            "tags:[String]",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"cqrs-flow up {directory / 'topology.yaml'}" in result.stdout
    return directory


@pytest.fixture(scope="module")
def bookshop(project, tmp_path_factory) -> System:
    """The scaffolded project with free ports and a short write delay, shared by this module."""
    topology = prepare(
        "bookshop.yaml",
        tmp_path_factory.mktemp("bookshop-run"),
        source=project / "topology.yaml",
        **{"nodes.writer.delay": f"{int(DELAY * 1000)}ms"},
    )
    system = System(topology).start()
    yield system
    assert system.stop() == 0, system.output()


def book(system, book_id):
    return system.data(BOOK, {"id": book_id})["book"]


def add(system, **fields) -> dict:
    return system.data(ADD, {**DUNE, **fields})["addBook"]


def test_the_scaffold_validates_as_written(project):
    result = subprocess.run(
        [*cli(), "validate", str(project / "topology.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "valid — 5 nodes, 3 commands" in result.stdout


def test_add_then_read_every_field_after_the_delay(bookshop):
    answer = add(bookshop)
    assert answer["status"] == "OK" and answer["message"] == "Queued to add"
    book_id = answer["id"]
    uuid.UUID(book_id)
    queued_at = time.monotonic()
    assert book(bookshop, book_id) is None, "the mutation must not write the store directly"

    found = wait_until(lambda: book(bookshop, book_id))
    assert time.monotonic() - queued_at >= DELAY - 0.1, "applied before the write delay"
    assert RFC3339.match(found.pop("updated_at")), found
    assert found == {"id": book_id, **DUNE}
    listed = bookshop.data(LIST, {"count": 100})["listBooks"]
    assert next(b for b in listed if b["id"] == book_id)["title"] == "Dune"


def test_update_replaces_every_field(bookshop):
    book_id = add(bookshop)["id"]
    before = wait_until(lambda: book(bookshop, book_id))
    changed = {
        "title": "Dune Messiah",
        "year": 1969,
        "rating": 3.5,
        "available": False,
        "tags": ["sequel"],
    }
    answer = bookshop.data(UPDATE, {"id": book_id, **changed})["updateBook"]
    assert answer == {"status": "OK", "message": "Queued to update", "id": book_id}
    after = wait_until(
        lambda: (b := book(bookshop, book_id)) and b["title"] == "Dune Messiah" and b
    )
    assert {k: after[k] for k in changed} == changed
    assert datetime.fromisoformat(
        after["updated_at"].replace("Z", "+00:00")
    ) > datetime.fromisoformat(before["updated_at"].replace("Z", "+00:00"))


def test_delete_removes_the_book(bookshop):
    book_id = add(bookshop)["id"]
    wait_until(lambda: book(bookshop, book_id))
    answer = bookshop.data(DELETE, {"id": book_id})["deleteBook"]
    assert answer == {"status": "OK", "message": "Queued to delete", "id": book_id}
    wait_until(lambda: book(bookshop, book_id) is None)
    assert book_id not in {b["id"] for b in bookshop.data(LIST, {"count": 1000})["listBooks"]}


def test_update_and_delete_of_an_unknown_id_answer_error(bookshop):
    for query, variables in (
        (UPDATE, {"id": "no-such-id", **DUNE}),
        (DELETE, {"id": "no-such-id"}),
    ):
        answer = next(iter(bookshop.data(query, variables).values()))
        assert answer == {
            "status": "ERROR",
            "message": "book no-such-id not found",
            "id": None,  # refused: no id, as if nothing was created or touched
        }


def test_list_books_honours_count(bookshop):
    ids = [add(bookshop, title=f"Book {i}")["id"] for i in range(3)]
    wait_until(
        lambda: ids[-1] in {b["id"] for b in bookshop.data(LIST, {"count": 1000})["listBooks"]}
    )
    assert len(bookshop.data(LIST, {"count": 2})["listBooks"]) == 2
    assert bookshop.data(LIST, {"count": 0})["listBooks"] == []


def test_the_plugin_stub_is_loaded_and_guards_the_title(bookshop):
    bookshop.wait_for_line(r"gateway .*BookRules loaded; required fields: title")
    refused = add(bookshop, title="   ")
    assert refused["status"] == "ERROR" and refused["message"] == "title must not be empty"
    assert refused["id"] is None  # the id generated for it is not given: nothing was created
    trimmed = add(bookshop, title="  Children of Dune  ")
    assert trimmed["status"] == "OK"
    assert wait_until(lambda: book(bookshop, trimmed["id"]))["title"] == "Children of Dune"
    time.sleep(DELAY + 0.2)  # the refused command was never published, so it never lands
    titles = [b["title"] for b in bookshop.data(LIST, {"count": 1000})["listBooks"]]
    assert "   " not in titles and "" not in titles


def test_the_readme_operations_run(bookshop, project):
    block = re.search(r"```graphql\n(.*?)```", (project / "README.md").read_text(), re.S).group(1)
    operations = dict(re.findall(r"^(?:query|mutation) (\w+) (\{.*\})$", block, re.M))
    assert sorted(operations) == ["AddBook", "Book", "DeleteBook", "ListBooks", "UpdateBook"]
    added = bookshop.data("mutation " + operations["AddBook"])["addBook"]
    assert added["status"] == "OK"
    book_id = added["id"]
    shown = wait_until(
        lambda: bookshop.data("query " + operations["Book"].replace("<id>", book_id))["book"]
    )
    assert shown["title"] == "title 1" and shown["tags"] == ["tags 1", "tags 1b"]
    assert any(
        b["id"] == book_id for b in bookshop.data("query " + operations["ListBooks"])["listBooks"]
    )
    for name in ("UpdateBook", "DeleteBook"):
        answer = bookshop.data("mutation " + operations[name].replace("<id>", book_id))
        assert next(iter(answer.values()))["status"] == "OK", answer
    curl = re.search(r"-d '(.*)'", (project / "README.md").read_text()).group(1)
    assert (
        json.loads(curl)["query"] == "mutation " + operations["AddBook"]
    )  # the shell example is valid JSON
