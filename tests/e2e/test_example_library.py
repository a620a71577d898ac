"""examples/library against a real `cqrs-flow up`: the book mutations and queries of its API,
and every field type of library.Book (strings, a repeated string, int32, double, bool, an enum,
a nested message, the store's timestamp) round-tripping exactly through GraphQL -> MQTT ->
writer -> store -> reader -> GraphQL."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from system import System, cli, prepare, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "library"
DELAY = 0.3  # the test copy's write delay (the example's own is 1s)

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
FIELDS = "id title tags year rating available genre shelf { room row } updated_at"
BOOK = f"query($id: String!) {{ book(id: $id) {{ {FIELDS} }} }}"
BOOKS = f"query($count: Int!) {{ books(first: $count) {{ nodes {{ {FIELDS} }} }} }}"
ADD = (
    "mutation($title: String!, $tags: [String!]!, $year: Int!, $rating: Float,"
    " $available: Boolean, $genre: Genre, $shelf: ShelfInput)"
    " { addBook(title: $title, tags: $tags, year: $year,"
    " rating: $rating, available: $available, genre: $genre, shelf: $shelf) { status message id } }"
)
UPDATE = (
    "mutation($id: String!, $title: String!, $tags: [String!]!, $year: Int!, $rating: Float,"
    " $available: Boolean, $genre: Genre, $shelf: ShelfInput) { updateBook(id: $id, title: $title,"
    " tags: $tags, year: $year, rating: $rating, available: $available, genre: $genre,"
    " shelf: $shelf) { status message id } }"
)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> System:
    """The library example with free ports and a short write delay, shared by this module."""
    topology = prepare(
        "library.yaml",
        tmp_path_factory.mktemp("library"),
        source=EXAMPLE / "topology.yaml",
        stop_timeout="3s",
        # its rules (auth) are tests/e2e/test_library_auth.py's: here every caller may write
        **{"nodes.writer.delay": f"{int(DELAY * 1000)}ms", "nodes.gateway.auth": None},
    )
    system = System(topology).start()
    yield system
    system.stop()


def book(system: System, book_id: str) -> dict | None:
    return system.data(BOOK, {"id": book_id})["book"]


def listed(system: System, book_id: str) -> dict | None:
    return next(
        (b for b in system.data(BOOKS, {"count": 1000})["books"]["nodes"] if b["id"] == book_id),
        None,
    )


def stamp(book_data: dict) -> datetime:
    assert RFC3339.match(book_data["updated_at"]), book_data
    return datetime.fromisoformat(book_data["updated_at"].replace("Z", "+00:00"))


def without_stamp(book_data: dict) -> dict:
    stamp(book_data)
    return {k: v for k, v in book_data.items() if k != "updated_at"}


def add(system: System, **arguments) -> str:
    answer = system.data(ADD, arguments)["addBook"]
    assert answer["status"] == "OK", answer
    return answer["id"]


def exact(value, expected) -> bool:
    """Equal and of the same JSON type all the way down (1 == 1.0 == True in Python, not here)."""
    if type(value) is not type(expected):
        return False
    if isinstance(expected, dict):
        return value.keys() == expected.keys() and all(
            exact(value[k], expected[k]) for k in expected
        )
    if isinstance(expected, list):
        return len(value) == len(expected) and all(
            exact(v, e) for v, e in zip(value, expected, strict=True)
        )
    return value == expected


# -- validate ---------------------------------------------------------------------------------


def test_validate_accepts_the_example():
    done = subprocess.run(
        [*cli(), "validate", "examples/library/topology.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout, done.stdout


# A GraphQL schema that does not fit the protos must be refused by validate, not found out by the
# first request that needs the misfit (today each of these validates, then fails at run time).
MISFITS = {
    # an enum argument with a value library.Genre lacks: addBook(genre: POETRY) answers ERROR
    "graphql-enum-value-not-in-proto": (
        "schema",
        "  HISTORY\n}",
        "  HISTORY\n  POETRY\n}",
        "POETRY",
    ),
    # an input field library.Shelf lacks: addBook(shelf: {..., floor: 2}) is an internal error
    "input-field-not-in-message": (
        "schema",
        "input ShelfInput {\n",
        "input ShelfInput {\n  floor: Int\n",
        "floor",
    ),
    # an enum argument filling an int32 field, an input object filling a string field: every
    # addBook that passes them answers ERROR "does not fit"
    "enum-argument-to-integer-field": (
        "topology",
        "        message: Queued to add {title}\n",
        "        message: Queued to add {title}\n        arguments: {genre: book.year}\n",
        "genre",
    ),
    "input-argument-to-string-field": (
        "topology",
        "        message: Queued to add {title}\n",
        "        message: Queued to add {title}\n        arguments: {shelf: book.title}\n",
        "shelf",
    ),
    # a Float argument filling an int32 field: the gateway always gets a float, which protobuf
    # refuses for an integer field, so every addBook that passes it answers ERROR
    "float-argument-to-integer-field": (
        "topology",
        "        message: Queued to add {title}\n",
        "        message: Queued to add {title}\n        arguments: {rating: book.year}\n",
        "rating",
    ),
    # a result enum without GENRE_UNSPECIFIED: reading a book with no genre is an internal error
    "result-enum-lacks-a-proto-value": (
        "schema",
        "  GENRE_UNSPECIFIED\n  FICTION",
        "  FICTION",
        "GENRE_UNSPECIFIED",
    ),
    # a Book field named unlike any library.Book field: always null (here: an error, it is non-null)
    "result-field-not-in-message": (
        "schema",
        '  "RFC 3339 time of the last write."\n  updated_at: String!\n',
        '  "RFC 3339 time of the last write."\n  updatedAt: String!\n',
        "updatedAt",
    ),
    # a to-one relation typed by another entity than the one it leads to
    "relation-field-of-another-type": (
        "schema",
        "  author: Author\n",
        "  author: Loan\n",
        "author",
    ),
    # a to-many relation with an argument a connection does not have, or of the wrong type
    "connection-argument-misfit": (
        "schema",
        "  updated_at: String!\n  loans(first: Int, after: String,",
        "  updated_at: String!\n  loans(first: String, after: String,",
        "first",
    ),
    # a relation to an entity the schema has no type for
    "relation-to-a-type-not-shown": (
        "schema",
        "type Loan {\n",
        "type Lending {\n",
        "Loan",
    ),
    # a Book field whose type does not fit the proto field's
    "result-field-type-misfit": ("schema", "  rating: Float!\n", "  rating: Boolean!\n", "rating"),
}


@pytest.mark.parametrize("misfit", MISFITS)
def test_validate_refuses_a_schema_that_does_not_fit_the_protos(misfit, tmp_path):
    where, old, new, culprit = MISFITS[misfit]
    copy = tmp_path / "library"
    shutil.copytree(EXAMPLE, copy)
    edited = copy / ("schema/library.graphql" if where == "schema" else "topology.yaml")
    text = edited.read_text()
    assert text.count(old) == 1, f"{misfit}: the example no longer has {old!r}"
    edited.write_text(text.replace(old, new))
    done = subprocess.run(
        [*cli(), "validate", str(copy / "topology.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, f"{misfit}: validate accepted it:\n{output}"
    assert culprit in output, output


# -- addBook, book, books ---------------------------------------------------------------------


def test_add_book_round_trips_every_field_type(library):
    """Literal arguments (the parse_literal path): enum name, input object, list, Float, Boolean."""
    answer = library.data(
        'mutation { addBook(title: "Good Omens", tags: ["Terry Pratchett", "Neil Gaiman"],'
        ' year: 1990, rating: 4.35, available: false, genre: FICTION, shelf: {room: "B2", row: 7})'
        " { status message id } }"
    )["addBook"]
    assert answer["status"] == "OK" and answer["message"] == "Queued to add Good Omens", answer
    book_id = answer["id"]
    assert uuid.UUID(book_id)
    queued_at = time.monotonic()

    assert book(library, book_id) is None, "the mutation must not write the store directly"
    found = wait_until(lambda: book(library, book_id))
    assert time.monotonic() - queued_at >= DELAY * 0.8, "applied before the write delay"
    expected = {
        "id": book_id,
        "title": "Good Omens",
        "tags": ["Terry Pratchett", "Neil Gaiman"],
        "year": 1990,
        "rating": 4.35,
        "available": False,
        "genre": "FICTION",
        "shelf": {"room": "B2", "row": 7},
    }
    assert exact(without_stamp(found), expected), found
    assert exact(listed(library, book_id), found), "books must answer what book answers"


def test_add_book_with_variables_round_trips_every_field_type(library):
    """The same through variables (the coerce_input path), with values at the edges of their
    types."""
    arguments = {
        "title": "Histories",
        "tags": ["Herodotus", "A. de Sélincourt", "J. Marincola"],
        "year": -430,
        "rating": 0.30000000000000004,
        "available": True,
        "genre": "HISTORY",
        "shelf": {"room": "Réserve", "row": 2147483647},
    }
    book_id = add(library, **arguments)
    found = wait_until(lambda: book(library, book_id))
    assert exact(without_stamp(found), {"id": book_id, **arguments}), found


def test_add_book_fills_what_is_left_out_with_defaults(library):
    """Left out: rating 0.0, available true (the SDL's default), genre GENRE_UNSPECIFIED (proto3's
    zero), shelf null (a message field has presence), tags may be empty."""
    book_id = add(library, title="Anonymous pamphlet", tags=[], year=0)
    found = wait_until(lambda: book(library, book_id))
    assert exact(
        without_stamp(found),
        {
            "id": book_id,
            "title": "Anonymous pamphlet",
            "tags": [],
            "year": 0,
            "rating": 0.0,
            "available": True,
            "genre": "GENRE_UNSPECIFIED",
            "shelf": None,
        },
    ), found


def test_a_shelf_of_default_values_is_a_shelf_not_null(library):
    book_id = add(
        library, title="Ground floor", tags=["x"], year=2001, shelf={"room": "", "row": 0}
    )
    found = wait_until(lambda: book(library, book_id))
    assert exact(found["shelf"], {"room": "", "row": 0}), found


def test_book_of_an_unknown_id_is_null(library):
    assert library.data(BOOK, {"id": "no-such-book"}) == {"book": None}


def test_books_honours_first(library):
    ids = [add(library, title=f"count {i}", tags=[], year=i) for i in range(3)]
    wait_until(lambda: all(listed(library, i) for i in ids))
    assert len(library.data(BOOKS, {"count": 2})["books"]["nodes"]) == 2
    assert library.data(BOOKS, {"count": 0})["books"]["nodes"] == []
    answer = library.graphql("{ books(first: -1) { nodes { id } } }")
    assert answer["data"] is None
    assert [e["message"] for e in answer["errors"]] == ["argument 'first' must be 0 or more"]


# -- updateBook -------------------------------------------------------------------------------


def test_update_book_replaces_every_field_and_moves_the_timestamp(library):
    book_id = add(
        library,
        title="Dune",
        tags=["Frank Herbert"],
        year=1965,
        rating=4.5,
        available=True,
        genre="FICTION",
        shelf={"room": "A", "row": 3},
    )
    first = wait_until(lambda: book(library, book_id))

    changes = {
        "title": "Dune Messiah",
        "tags": ["Frank Herbert", "Brian Herbert", "Anderson"],
        "year": 1969,
        "rating": 3,
        "available": False,
        "genre": "SCIENCE",
        "shelf": {"room": "C", "row": 0},
    }
    answer = library.data(UPDATE, {"id": book_id, **changes})["updateBook"]
    assert answer == {"status": "OK", "message": f"Queued to update {book_id}", "id": book_id}
    changed = wait_until(
        lambda: (b := book(library, book_id)) and b["title"] == "Dune Messiah" and b
    )
    assert exact(without_stamp(changed), {"id": book_id, **changes, "rating": 3.0}), changed
    assert stamp(changed) > stamp(first)

    # An update replaces the fields without presence (rating, genre, ... back to their zero) and
    # keeps a message field it leaves out: the shelf stays.
    library.data(
        UPDATE, {"id": book_id, "title": "Dune Messiah", "tags": ["Frank Herbert"], "year": 1969}
    )
    again = wait_until(
        lambda: (b := book(library, book_id)) and b["tags"] == ["Frank Herbert"] and b
    )
    assert exact(
        without_stamp(again),
        {
            "id": book_id,
            "title": "Dune Messiah",
            "tags": ["Frank Herbert"],
            "year": 1969,
            "rating": 0.0,
            "available": True,
            "genre": "GENRE_UNSPECIFIED",
            "shelf": {"room": "C", "row": 0},
        },
    ), again
    assert stamp(again) > stamp(changed)


def test_updates_of_one_book_apply_in_order(library):
    book_id = add(library, title="v0", tags=[], year=0)
    wait_until(lambda: book(library, book_id))
    for i in range(1, 5):
        answer = library.data(
            UPDATE,
            {
                "id": book_id,
                "title": f"v{i}",
                "tags": [str(n) for n in range(i)],
                "year": i,
                "genre": "NON_FICTION",
            },
        )
        assert answer["updateBook"]["status"] == "OK", answer
    last = wait_until(lambda: (b := book(library, book_id)) and b["title"] == "v4" and b)
    time.sleep(DELAY * 2)  # a reordered earlier update would land after the last one
    assert exact(book(library, book_id), last)
    assert (
        last["tags"] == ["0", "1", "2", "3"]
        and last["year"] == 4
        and last["genre"] == "NON_FICTION"
    )


def test_update_and_remove_of_an_unknown_id_answer_error(library):
    update = library.data(
        'mutation { updateBook(id: "no-such-book", title: "x", tags: [], year: 1)'
        " { status message id } }"
    )["updateBook"]
    remove = library.data('mutation { removeBook(id: "no-such-book") { status message id } }')[
        "removeBook"
    ]
    for answer in (update, remove):
        assert answer == {
            "status": "ERROR",
            "message": "book no-such-book not found",
            "id": None,
        }


# -- removeBook -------------------------------------------------------------------------------


def test_remove_book(library):
    book_id = add(library, title="To remove", tags=["x"], year=1999)
    wait_until(lambda: book(library, book_id))
    answer = library.data(f'mutation {{ removeBook(id: "{book_id}") {{ status message id }} }}')[
        "removeBook"
    ]
    assert answer == {"status": "OK", "message": f"Queued to remove {book_id}", "id": book_id}
    assert book(library, book_id) is not None, "removed before the write delay"
    wait_until(lambda: book(library, book_id) is None)
    assert listed(library, book_id) is None


# -- addBooks, removeBooks (the store's insert_many and delete_many) ---------------------------


def test_add_books_and_remove_books(library):
    tag = uuid.uuid4().hex[:8]
    given_id = f"book-{tag}"
    items = [
        {
            "id": given_id,
            "title": f"Cosmos {tag}",
            "tags": ["Carl Sagan"],
            "year": 1980,
            "rating": 4.75,
            "available": False,
            "genre": "SCIENCE",
            "shelf": {"room": "S", "row": 12},
        },
        {"title": f"SPQR {tag}", "tags": ["Mary Beard"], "year": 2015, "genre": "HISTORY"},
    ]
    answer = library.data(
        "mutation($books: [BookInput!]!) { addBooks(books: $books) { status message id } }",
        {"books": items},
    )["addBooks"]
    assert answer == {"status": "OK", "message": "Queued to add books", "id": None}

    def both():
        books = {b["title"]: b for b in library.data(BOOKS, {"count": 1000})["books"]["nodes"]}
        return (
            (books.get(items[0]["title"]), books.get(items[1]["title"]))
            if all(i["title"] in books for i in items)
            else None
        )

    cosmos, spqr = wait_until(both)
    assert exact(without_stamp(cosmos), items[0]), cosmos
    assert uuid.UUID(spqr["id"]), "the store gives a book without an id one"
    assert exact(
        without_stamp(spqr),
        {"id": spqr["id"], **items[1], "rating": 0.0, "available": True, "shelf": None},
    ), spqr
    assert exact(book(library, given_id), cosmos)

    answer = library.data(
        "mutation($ids: [String!]!) { removeBooks(ids: $ids) { status message id } }",
        {"ids": [given_id, spqr["id"], "no-such-book"]},
    )["removeBooks"]
    assert answer == {"status": "OK", "message": "Queued to remove books", "id": None}
    wait_until(lambda: book(library, given_id) is None and book(library, spqr["id"]) is None)


# -- the loans projection ---------------------------------------------------------------------

MEMBERS = (
    "query($where: MemberLoansWhere) { memberLoans(first: 100, where: $where,"
    " orderBy: {field: next_due, direction: ASC}) { nodes { member on_loan loans books dues"
    " next_due } } }"
)
LEND = (
    "mutation($book: String!, $member: String!, $due: String!) {"
    " lendBook(book_id: $book, member: $member, due: $due) { status id } }"
)
RETURN = (
    "mutation($id: String!, $book: String!, $member: String!, $due: String!) {"
    " updateLoan(id: $id, book_id: $book, member: $member, due: $due, returned: true)"
    " { status } }"
)


def members(system: System, prefix: str) -> dict:
    """The MemberLoans of the members whose name starts with `prefix`."""
    rows = system.data(MEMBERS)["memberLoans"]["nodes"]
    return {r["member"]: r for r in rows if r["member"].startswith(prefix)}


def test_the_loans_projection_keeps_each_members_loans_and_survives_a_replay(library):
    prefix = f"m{uuid.uuid4().hex[:6]}-"
    ada, bob = prefix + "ada", prefix + "bob"
    lent = {}
    for book_id, member, due in [
        ("b1", ada, "2027-03-01"),
        ("b2", ada, "2027-02-01"),
        ("b3", bob, "2027-04-01"),
        ("b4", bob, "2027-01-15"),
    ]:
        lent[book_id] = library.data(LEND, {"book": book_id, "member": member, "due": due})[
            "lendBook"
        ]["id"]
    for loan in (lent["b4"], lent["b2"]):  # applied: updateLoan and removeLoan check it exists
        wait_until(lambda loan=loan: library.data(f'{{ loan(id: "{loan}") {{ id }} }}')["loan"])
    # bob gives b4 back; ada's b2 loan is removed
    assert (
        library.data(RETURN, {"id": lent["b4"], "book": "b4", "member": bob, "due": "2027-01-15"})[
            "updateLoan"
        ]["status"]
        == "OK"
    )
    library.data(f'mutation {{ removeLoan(id: "{lent["b2"]}") {{ status }} }}')
    expected = {
        ada: {"member": ada, "on_loan": 1, "loans": [lent["b1"]], "books": ["b1"],
              "dues": ["2027-03-01"], "next_due": "2027-03-01"},
        bob: {"member": bob, "on_loan": 1, "loans": [lent["b3"]], "books": ["b3"],
              "dues": ["2027-04-01"], "next_due": "2027-04-01"},
    }  # fmt: skip
    wait_until(lambda: members(library, prefix) == expected, timeout=15)
    # a read model is an entity like any other: filtered and ordered on its indexes
    late = library.data(MEMBERS, {"where": {"next_due": {"lt": "2027-03-15"}}})["memberLoans"]
    assert [r["member"] for r in late["nodes"] if r["member"].startswith(prefix)] == [ada]
    one = library.data("query($m: String!) { member(member: $m) { on_loan } }", {"m": bob})
    assert one == {"member": {"on_loan": 1}}

    done = subprocess.run(
        [*cli(), "replay", str(library.file), "loans"],
        env=library.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"replayed [\d,]+ changes into generation \d+", done.stdout), done.stdout
    assert members(library, prefix) == expected  # rebuilt from position 0, the same
    library.wait_for_line(r"store .*projection loans: generation \d+ \(member_loans_g\d+\) is live")
    # the running projection goes on into the new generation
    library.data(LEND, {"book": "b5", "member": bob, "due": "2027-01-02"})
    wait_until(lambda: members(library, prefix)[bob]["on_loan"] == 2, timeout=15)
    assert members(library, prefix)[bob]["next_due"] == "2027-01-02"


def test_replay_names_what_is_not_a_projection(library):
    done = subprocess.run(
        [*cli(), "replay", str(library.file), "writer"],
        env=library.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "'writer' is not a projection node; projections: loans" in done.stderr
