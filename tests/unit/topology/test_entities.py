"""entities: the wiring of entities without the protos (which store holds each, relations, the
entities a gateway names), each problem at its key path and line, with a did-you-mean."""

from __future__ import annotations

import pytest

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.topology import load_topology, parse_topology
from cqrs_flow.topology.checks import check_wiring

from ..helpers import ROOT, apply_edits, line_of

LENDING = ROOT / "tests" / "topologies" / "lending.yaml"

# A second store holding Loan, for the checks across stores.
ARCHIVE = """\
  archive:
    kind: store
    entities: [Loan]
    write: {service: lending.WriteService, listen: 127.0.0.1:50094, rpcs: {AddLoan: insert}}
    read: {service: lending.ReadService, listen: 127.0.0.1:50095, rpcs: {}}

  reader:
"""


@pytest.fixture(scope="module")
def lending_text() -> str:
    return LENDING.read_text(encoding="utf-8")


def problems(text: str) -> list[Problem]:
    with pytest.raises(TopologyError) as exc:
        parse_topology(text, LENDING)
    return exc.value.problems


def at(found: list[Problem], path: str) -> list[tuple[int | None, str]]:
    return [(p.line, p.message) for p in found if p.path == path]


def test_the_lending_topology_has_no_wiring_problems():
    topology = load_topology(LENDING)
    assert check_wiring(topology) == []
    assert list(topology.entities) == ["Author", "Book", "Loan"]
    assert topology.nodes["store"].entities == ("Author", "Book", "Loan")


def test_a_store_naming_an_unknown_entity(lending_text):
    text = apply_edits(
        lending_text, [("entities: [Author, Book, Loan]", "entities: [Author, Bok]")]
    )
    found = problems(text)
    line = line_of(text, "entities: [Author, Bok]")
    assert at(found, "nodes.store.entities[1]") == [
        (line, "no entity named 'Bok'; did you mean 'Book'?")
    ]
    assert at(found, "entities.Book") == [
        (
            line_of(text, "  Book:"),
            "entity 'Book' is held by no store: add it to the 'entities' of store 'store'",
        )
    ]
    assert at(found, "entities.Loan")  # held by no store either


def test_an_unknown_entity_without_a_close_name_lists_them(lending_text):
    text = apply_edits(lending_text, [("[Author, Book, Loan]", "[Author, Book, Loan, Shelf]")])
    assert at(problems(text), "nodes.store.entities[3]") == [
        (line_of(text, "Shelf]"), "no entity named 'Shelf'; entities: Author, Book, Loan")
    ]


def test_an_entity_listed_twice_by_a_store(lending_text):
    text = apply_edits(lending_text, [("[Author, Book, Loan]", "[Author, Book, Loan, Book]")])
    assert [m for _, m in at(problems(text), "nodes.store.entities[3]")] == [
        "'Book' is listed twice"
    ]


def test_an_entity_held_by_two_stores(lending_text):
    text = apply_edits(lending_text, [("  reader:\n", ARCHIVE.replace("[Loan]", "[Loan, Book]"))])
    found = problems(text)
    assert at(found, "nodes.archive.entities[0]") == [
        (
            line_of(text, "entities: [Loan, Book]"),
            "entity 'Loan' is held by store 'store' already; an entity's documents are kept "
            "by one store (a reader reads one store, and so a gateway finds each entity in "
            "one place)",
        )
    ]
    assert [p.path for p in found if "already" in p.message] == [
        "nodes.archive.entities[0]",
        "nodes.archive.entities[1]",
    ]


def test_a_relation_to_an_unknown_entity(lending_text):
    text = apply_edits(lending_text, [("books: {entity: Book,", "books: {entity: Boook,")])
    assert at(problems(text), "entities.Author.relations.books.entity") == [
        (line_of(text, "entity: Boook"), "no entity named 'Boook'; did you mean 'Book'?")
    ]


def test_a_relation_needs_exactly_one_of_key_and_by(lending_text):
    text = apply_edits(
        lending_text,
        [
            ("author: {entity: Author, key: author_id}", "author: {entity: Author}"),
            ("book: {entity: Book, key: book_id}", "book: {entity: Book, key: book_id, by: id}"),
        ],
    )
    found = problems(text)
    assert at(found, "entities.Book.relations.author") == [
        (
            line_of(text, "author: {entity: Author}"),
            "missing 'key' or 'by': key: <field> leads to one Author (the field of Book's "
            "documents that holds its key), by: <field> to many (the field of their documents "
            "that holds Book's key)",
        )
    ]
    assert at(found, "entities.Loan.relations.book") == [
        (
            line_of(text, "by: id}"),
            "give only one of 'key' (to one: the field of Loan's documents that holds the "
            "related key) or 'by' (to many: the field of the related documents that holds "
            "Loan's key)",
        )
    ]


def test_a_relation_across_stores_cannot_be_followed(lending_text):
    text = apply_edits(
        lending_text,
        [("[Author, Book, Loan]", "[Author, Book]"), ("  reader:\n", ARCHIVE)],
    )
    found = problems(text)
    assert at(found, "entities.Book.relations.loans.entity") == [
        (
            line_of(text, "loans: {entity: Loan"),
            "Loan is held by store 'archive' and Book by store 'store': a gateway follows a "
            "relation through its one reader, which reads one store; keep both entities in "
            "one store",
        )
    ]
    assert at(found, "entities.Loan.relations.book.entity")
    # ... and the gateway, whose reader reads 'store', cannot list Loan
    assert at(found, "nodes.gateway.queries.loans.list") == [
        (
            line_of(text, "loans: {list: Loan}"),
            "gateway 'gateway' cannot reach Loan: its reader 'reader' reads store 'store', "
            "which holds Author, Book, and Loan is in store 'archive'",
        )
    ]


def test_list_and_get_queries_and_exists_name_entities(lending_text):
    text = apply_edits(
        lending_text,
        [
            ("books: {list: Book}", "books: {list: Books}"),
            ("author: {get: Author}", "author: {get: Writer}"),
        ],
    )
    found = problems(text)
    assert at(found, "nodes.gateway.queries.books.list") == [
        (line_of(text, "{list: Books}"), "no entity named 'Books'; did you mean 'Book'?")
    ]
    assert at(found, "nodes.gateway.queries.author.get") == [
        (line_of(text, "{get: Writer}"), "no entity named 'Writer'; entities: Author, Book, Loan")
    ]


def test_subscriptions_name_entities_the_reader_reaches(lending_text):
    text = apply_edits(
        lending_text,
        [
            ("[Author, Book, Loan]", "[Author, Book]"),
            ("  reader:\n", ARCHIVE),
            ("loans: {list: Loan}", "loan_count: {list: Book}"),
            (
                "    mutations:\n",
                "    subscriptions:\n      bookChanged: {changed: Bok}\n"
                "      loansChanged: {changes: Loan}\n    mutations:\n",
            ),
        ],
    )
    found = problems(text)
    assert at(found, "nodes.gateway.subscriptions.bookChanged.changed") == [
        (line_of(text, "{changed: Bok}"), "no entity named 'Bok'; did you mean 'Book'?")
    ]
    assert [m for _, m in at(found, "nodes.gateway.subscriptions.loansChanged.changes")] == [
        "gateway 'gateway' cannot reach Loan: its reader 'reader' reads store 'store', which "
        "holds Author, Book, and Loan is in store 'archive'"
    ]


def test_a_subscription_follows_one_document_or_a_list(lending_text):
    text = apply_edits(
        lending_text,
        [
            (
                "    mutations:\n",
                "    subscriptions:\n      a: {changed: Book, changes: Book}\n"
                "      b: {chnged: Book}\n    mutations:\n",
            ),
        ],
    )
    found = problems(text)
    assert at(found, "nodes.gateway.subscriptions.a") == [
        (line_of(text, "a: {changed"), "give only one of 'changed' or 'changes'")
    ]
    assert [m for _, m in at(found, "nodes.gateway.subscriptions.b.chnged")] == [
        "unknown key; did you mean 'changed'?"
    ]


def test_exists_naming_an_entity_the_reader_cannot_reach(lending_text):
    text = apply_edits(
        lending_text,
        [
            ("[Author, Book, Loan]", "[Author, Book]"),
            ("  reader:\n", ARCHIVE),
            ("loans: {list: Loan}", "loan_count: {list: Book}"),
            ("addLoan: {command: add_loan,", "addLoan: {command: add_loan, exists: Loan,"),
        ],
    )
    found = problems(text)
    assert [m for _, m in at(found, "nodes.gateway.mutations.addLoan.exists")] == [
        "gateway 'gateway' cannot reach Loan: its reader 'reader' reads store 'store', which "
        "holds Author, Book, and Loan is in store 'archive'"
    ]


def test_exists_naming_a_reader_rpc_is_left_to_the_contracts(lending_text):
    text = apply_edits(
        lending_text,
        [
            (
                "removeAuthor: {command: remove_author, exists: Author}",
                "removeAuthor: {command: remove_author, exists: GetAuthor}",
            )
        ],
    )
    assert check_wiring(parse_topology(text, LENDING)) == []


def test_two_entities_with_one_collection_in_a_store(lending_text):
    text = apply_edits(lending_text, [("collection: loans", "collection: books")])
    assert at(problems(text), "entities.Loan.collection") == [
        (
            line_of(text, "collection: books", 2),
            "collection 'books' is Book's too, in store 'store'; give Loan a collection of its "
            "own (collection: ...)",
        )
    ]


def test_the_default_collection_counts_too(lending_text):
    text = apply_edits(
        lending_text,
        [("    collection: authors\n", ""), ("collection: books", "collection: author")],
    )
    assert [m for _, m in at(problems(text), "entities.Book.collection")] == [
        "collection 'author' is Author's too, in store 'store'; give Book a collection of its "
        "own (collection: ...)"
    ]


def test_an_index_listed_twice(lending_text):
    text = apply_edits(lending_text, [("indexes: [book_id, member]", "indexes: [member, member]")])
    assert at(problems(text), "entities.Loan.indexes[1]") == [
        (line_of(text, "[member, member]"), "'member' is listed twice")
    ]


def test_a_store_of_one_entity_still_describes_it_itself(edit, parse):
    topology = parse(edit(("collection: contacts", "collection: people")))
    assert topology.entities["Contact"].collection == "people"
    assert check_wiring(topology) == []
