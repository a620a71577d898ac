"""contracts.entities: the entities against the protos (documents, indexes, relations' fields and
keys, `exists`), as `cqrs-flow validate` reports them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cqrs_flow.contracts.check import check_contracts
from cqrs_flow.contracts.entities import check_entities
from cqrs_flow.errors import Problem
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.problems import Problems

from ..helpers import ROOT, apply_edits, line_of

LENDING = ROOT / "tests" / "topologies" / "lending.yaml"


@pytest.fixture
def lending(tmp_path, proto_cache):
    """(yaml edits, proto edits) -> (topology file, every contract problem of an edited copy
    of tests/topologies/lending.yaml)."""
    count = 0

    def make(yaml=(), proto=()) -> tuple[Path, list[Problem]]:
        nonlocal count
        count += 1
        project = tmp_path / f"lending{count}"
        shutil.copytree(LENDING.parent / "lending", project / "lending")
        topology_file = project / "lending.yaml"
        topology_file.write_text(
            apply_edits(LENDING.read_text(encoding="utf-8"), yaml), encoding="utf-8"
        )
        proto_file = project / "lending" / "lending.proto"
        proto_file.write_text(
            apply_edits(proto_file.read_text(encoding="utf-8"), proto), encoding="utf-8"
        )
        topology = load_topology(topology_file)
        protos = compile_protos(list(topology.protos), topology.root)
        return topology_file, check_contracts(topology, protos)

    return make


def at(problems: list[Problem], path: str) -> list[tuple[int | None, str]]:
    return [(p.line, p.message) for p in problems if p.path == path]


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_lending_entities_fit_their_protos(lending):
    _, problems = lending()
    # The gateway's list/get queries are the gateway contract's to plan; everything else fits.
    assert [p for p in problems if not p.path.startswith("nodes.gateway")] == []


def test_check_entities_alone_finds_nothing_in_the_lending_topology(proto_cache):
    topology = load_topology(LENDING)
    report = Problems(topology.located)
    check_entities(topology, compile_protos(list(topology.protos), topology.root), report)
    assert report.problems == []


def test_a_document_that_is_no_message(lending):
    path, problems = lending(yaml=[("document: lending.Loan", "document: lending.Lone")])
    assert at(problems, "entities.Loan.document") == [
        (
            line_of(text(path), "document: lending.Lone"),
            "no message 'lending.Lone' in the protos; did you mean 'lending.Loan'?",
        )
    ]


def test_an_index_on_a_field_the_document_lacks(lending):
    path, problems = lending(yaml=[("[title, author_id, year, genre]", "[title, titel]")])
    assert at(problems, "entities.Book.indexes[1]") == [
        (
            line_of(text(path), "indexes: [title, titel]"),
            "lending.Book has no field 'titel'; did you mean 'title'?",
        )
    ]


@pytest.mark.parametrize(
    "index, message",
    [
        ("tags", "lending.Book.tags is repeated"),
        ("cover_author", "lending.Book.cover_author is of type lending.Author"),
    ],
)
def test_an_index_on_a_field_lists_cannot_filter_on(lending, index, message):
    path, problems = lending(yaml=[("[title, author_id, year, genre]", f"[title, {index}]")])
    assert at(problems, "entities.Book.indexes[1]") == [
        (
            line_of(text(path), f"indexes: [title, {index}]"),
            f"{message}; only string, integer, float, bool and enum fields can be indexed "
            "(one value per document, for lists to filter and order on)",
        )
    ]


def test_every_scalar_kind_can_be_indexed(lending):
    _, problems = lending(
        yaml=[("[title, author_id, year, genre]", "[title, author_id, year, genre, rating, kept]")],
        proto=[
            ("  string updated_at = 8;", "  string updated_at = 8;\n  double rating = 9;"),
            ("  double rating = 9;", "  double rating = 9;\n  bool kept = 10;"),
        ],
    )
    assert [p for p in problems if p.path.startswith("entities")] == []


def test_an_index_of_a_store_of_one_entity(make_project, contracts):
    topology_file = make_project(
        yaml=[
            ("    timestamp: last_updated\n", "    timestamp: last_updated\n    indexes: [nme]\n")
        ]
    )
    problems = contracts(topology_file)
    assert [m for _, m in at(problems, "nodes.store.indexes[0]")] == [
        "contacts.Contact has no field 'nme'; did you mean 'name'?"
    ]


def test_a_to_one_relation_key_missing_or_not_a_string(lending):
    path, problems = lending(
        yaml=[
            (
                "author: {entity: Author, key: author_id}",
                "author: {entity: Author, key: writer_id}",
            ),
            ("book: {entity: Book, key: book_id}", "book: {entity: Book, key: member}"),
        ],
        proto=[("  string member = 3;", "  int64 member = 3;")],
    )
    assert at(problems, "entities.Book.relations.author.key") == [
        (line_of(text(path), "key: writer_id"), "lending.Book has no field 'writer_id'")
    ]
    assert [m for _, m in at(problems, "entities.Loan.relations.book.key")] == [
        "lending.Loan.member is of type int64; make it a string: it holds the key of Book's "
        "documents"
    ]


def test_a_to_many_relation_by_a_field_missing_not_a_string_or_not_indexed(lending):
    path, problems = lending(
        yaml=[
            ("books: {entity: Book, by: author_id}", "books: {entity: Book, by: authr_id}"),
            ("indexes: [book_id, member]", "indexes: [member]"),
        ]
    )
    assert at(problems, "entities.Author.relations.books.by") == [
        (
            line_of(text(path), "by: authr_id"),
            "lending.Book has no field 'authr_id'; did you mean 'author_id'?",
        )
    ]
    assert at(problems, "entities.Book.relations.loans.by") == [
        (
            line_of(text(path), "loans: {entity: Loan, by: book_id}"),
            "Loan is not indexed on 'book_id', and a to-many relation pages Loan's documents "
            "by that field; index it: add 'book_id' to Loan's indexes",
        )
    ]


def test_a_to_many_relation_by_a_repeated_field(lending):
    _, problems = lending(
        yaml=[("books: {entity: Book, by: author_id}", "books: {entity: Book, by: tags}")]
    )
    assert [m for _, m in at(problems, "entities.Author.relations.books.by")] == [
        "lending.Book.tags is repeated; make it a string: it holds the key of Author's documents"
    ]


def test_a_relation_named_like_a_field_of_its_document(lending):
    path, problems = lending(
        yaml=[
            ("author: {entity: Author, key: author_id}", "title: {entity: Author, key: author_id}")
        ]
    )
    assert at(problems, "entities.Book.relations.title") == [
        (
            line_of(text(path), "title: {entity: Author"),
            "lending.Book has a field 'title' already, and the relation would take its place "
            "in Book's GraphQL type; name the relation otherwise",
        )
    ]


def test_a_relation_by_a_key_that_is_not_a_string(lending):
    path, problems = lending(
        yaml=[
            (
                "  Author:\n    document: lending.Author\n",
                "  Author:\n    document: lending.Author\n    key: number\n",
            )
        ],
        proto=[("  string updated_at = 3;\n}", "  string updated_at = 3;\n  int32 number = 4;\n}")],
    )
    message = (
        "Author's key lending.Author.number is of type int32; a relation finds documents by "
        "key, which must be a string"
    )
    # to one: the key of the entity it leads to; to many: the key of its own entity
    assert at(problems, "entities.Book.relations.author.entity") == [
        (line_of(text(path), "author: {entity: Author"), message)
    ]
    assert at(problems, "entities.Author.relations.books") == [
        (line_of(text(path), "books: {entity: Book"), message)
    ]


def test_exists_naming_neither_an_entity_nor_a_reader_rpc(lending):
    path, problems = lending(yaml=[("exists: Author}", "exists: Autor}")])
    assert (
        line_of(text(path), "exists: Autor}"),
        "no entity or RPC of lending.Reader named 'Autor'; did you mean the entity 'Author' "
        "or the RPC 'GetAuthor'?",
    ) in at(problems, "nodes.gateway.mutations.removeAuthor.exists")


def test_exists_naming_something_far_from_any_entity_is_left_to_the_gateway(lending):
    _, problems = lending(yaml=[("exists: Author}", "exists: FetchIt}")])
    assert not [
        m for _, m in at(problems, "nodes.gateway.mutations.removeAuthor.exists") if "entity" in m
    ]


def test_exists_naming_a_reader_rpc_is_no_entity_problem(lending):
    _, problems = lending(yaml=[("exists: Author}", "exists: GetAuthor}")])
    assert not [
        m for _, m in at(problems, "nodes.gateway.mutations.removeAuthor.exists") if "entity" in m
    ]
