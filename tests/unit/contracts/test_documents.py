"""The gateway's document plans: lists, lookups and relations, the SDL added for what a schema
leaves out, and the misfits of what it writes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.problems import Problems

from .support import at

ROOT = Path(__file__).resolve().parents[3]
LIBRARY = ROOT / "examples" / "library"


@pytest.fixture
def library(tmp_path):
    """A copy of examples/library to edit: (topology file, schema file)."""
    copy = tmp_path / "library"
    shutil.copytree(LIBRARY, copy)
    return copy / "topology.yaml", copy / "schema" / "library.graphql"


def plan_of(path: Path):
    topology = load_topology(path)
    protos = compile_protos(list(topology.protos), topology.root)
    problems = Problems(topology.located)
    plan = gateway_plan(topology, topology.nodes["gateway"], protos, problems)
    return plan, problems.problems


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def test_the_library_plans_its_lists_lookups_and_relations(library):
    plan, problems = plan_of(library[0])
    assert problems == []
    connections = {(c.owner, c.field): (c.entity.name, c.by) for c in plan.documents.connections}
    assert connections == {
        ("Query", "authors"): ("Author", None),
        ("Query", "books"): ("Book", None),
        ("Query", "loans"): ("Loan", None),
        ("Query", "memberLoans"): ("MemberLoans", None),  # the loans projection's read model
        ("Author", "books"): ("Book", "author_id"),
        ("Book", "loans"): ("Loan", "book_id"),
    }
    lookups = {
        (lk.owner, lk.field): (lk.entity.name, lk.argument, lk.key_field)
        for lk in plan.documents.lookups
    }
    assert lookups == {
        ("Query", "author"): ("Author", "id", None),
        ("Query", "book"): ("Book", "id", None),
        ("Query", "loan"): ("Loan", "id", None),
        ("Query", "member"): ("MemberLoans", "member", None),
        ("Book", "author"): ("Author", None, "author_id"),
        ("Loan", "book"): ("Book", None, "book_id"),
    }
    book = plan.documents.entities["Book"]
    assert book.indexes == {
        "id": "String",
        "title": "String",
        "author_id": "String",
        "year": "Int",
        "genre": "Genre",  # the GraphQL enum the schema shows the field as
        "available": "Boolean",
    }
    assert plan.mutations["updateBook"].exists_entity is book


def test_the_types_a_schema_leaves_out_are_added_once(library):
    plan, _ = plan_of(library[0])
    extras = plan.documents.extras
    for definition in (
        "type PageInfo {",
        "enum OrderDirection {",
        "type BookConnection {\n  edges: [BookEdge!]!\n  nodes: [Book!]!\n  pageInfo: PageInfo!\n"
        "  totalCount: Int!\n}",
        "type BookEdge {\n  cursor: String!\n  node: Book!\n}",
        "enum BookOrderField {\n  id\n  title\n  author_id\n  year\n  genre\n  available\n}",
        "input BookOrder {\n  field: BookOrderField!\n  direction: OrderDirection = ASC\n}",
        "input BookWhere {\n  id: StringFilter\n  title: StringFilter\n  author_id: StringFilter\n"
        "  year: IntFilter\n  genre: GenreFilter\n  available: BooleanFilter\n}",
        "input StringFilter {\n  eq: String\n  in: [String!]\n  gt: String\n  gte: String\n"
        "  lt: String\n  lte: String\n  prefix: String\n}",
        "input IntFilter {\n  eq: Int\n  in: [Int!]\n  gt: Int\n",
        "input GenreFilter {\n  eq: Genre\n  in: [Genre!]\n}",
        "input BooleanFilter {\n  eq: Boolean\n}",
    ):
        assert extras.count(definition) == 1, definition
    assert "extend type" not in extras  # the example writes every field itself
    assert plan.schema.queries["books"].returns.text == "BookConnection!"


def test_fields_a_schema_leaves_out_are_added(library):
    topology, schema = library
    text = schema.read_text()
    text = re.sub(r'\n(  ".*"\n)?  books\(first: Int.*\n', "\n", text)  # Author's, Query's
    text = text.replace('  "null when the book has no author, or its author was removed."\n', "")
    text = text.replace("  author: Author\n", "").replace("  book(id: String!): Book\n", "")
    schema.write_text(text)
    plan, problems = plan_of(topology)
    assert problems == []
    extras = plan.documents.extras
    assert (
        "extend type Query {\n  books(first: Int, after: String, last: Int, before: String, "
        "where: BookWhere, orderBy: BookOrder): BookConnection!\n  book(id: String!): Book\n}"
    ) in extras
    assert (
        "extend type Author {\n  books(first: Int, after: String, last: Int, before: String, "
        in extras
    )
    assert "extend type Book {\n  author: Author\n}" in extras
    assert plan.schema.fields_of("Book")["author"].text == "Author"


def test_a_type_the_schema_writes_itself_is_kept_and_checked(library):
    topology, schema = library
    edit(
        schema,
        "type Query {",
        "input BookWhere { title: StringFilter  rating: FloatFilter }\n"
        "input StringFilter { eq: String }\ninput FloatFilter { eq: Float }\n\ntype Query {",
    )
    plan, problems = plan_of(topology)
    assert "input BookWhere" not in plan.documents.extras
    assert at(problems, "nodes.gateway.schema") == [
        "schema/library.graphql: input BookWhere has 'rating', which is not indexed; Book's "
        "indexed fields: id, title, author_id, year, genre, available (add it to the entity's "
        "indexes)"
    ]


@pytest.mark.parametrize(
    "old, new, path, message",
    [
        (
            "  author: Author\n",
            "  author: [Author]\n",
            "entities.Book.relations.author",
            "Book.author is [Author] in schema/library.graphql, but the relation leads to one "
            "Author: make it 'author: Author' (or Author! if every book has one)",
        ),
        (
            "  updated_at: String!\n  loans(first: Int, after: String,",
            "  updated_at: String!\n  loans(count: Int, after: String,",
            "entities.Book.relations.loans",
            "Book.loans: argument 'count' is not a connection argument (first, after, last, "
            "before, where, orderBy)",
        ),
        (
            "  book(id: String!): Book\n",
            "  book(id: String!, other: Int): Book\n",
            "nodes.gateway.queries.book",
            "Query.book: it takes 2 arguments; it takes one, the key: book(id: String!)",
        ),
        (
            "  loan(id: String!): Loan\n",
            "  loan(id: String!): [Loan]\n",
            "nodes.gateway.queries.loan",
            "Query.loan: it returns [Loan]; one Loan is Loan",
        ),
    ],
)
def test_a_written_field_that_does_not_fit_is_reported_where_it_is_declared(
    library, old, new, path, message
):
    topology, schema = library
    edit(schema, old, new)
    _, problems = plan_of(topology)
    assert message in at(problems, path), problems


# -- live subscriptions -----------------------------------------------------------------------


def test_the_library_plans_its_live_subscriptions_and_adds_what_they_need(library):
    plan, problems = plan_of(library[0])
    assert problems == []
    planned = {
        (s.owner, s.field): (s.entity.name, s.argument, sorted(s.arguments))
        for s in plan.documents.subscriptions
    }
    assert planned == {
        ("Subscription", "bookChanged"): ("Book", "id", ["after"]),
        ("Subscription", "booksChanged"): ("Book", None, ["after", "first", "where"]),
        ("Subscription", "loanChanged"): ("Loan", "id", ["after"]),
        ("Subscription", "loansChanged"): ("Loan", None, ["after", "first", "where"]),
    }
    extras = plan.documents.extras
    # The schema has no Subscription type: it is added whole, with every field.
    assert (
        "\ntype Subscription {\n  bookChanged(id: String!, after: String): BookChange!\n"
        "  booksChanged(where: BookWhere, first: Int, after: String): BookChange!\n"
        "  loanChanged(id: String!, after: String): LoanChange!\n"
        "  loansChanged(where: LoanWhere, first: Int, after: String): LoanChange!\n}"
    ) in extras
    assert extras.count("enum ChangeOp {\n  CURRENT\n  INSERT\n  UPDATE\n  DELETE\n}") == 1
    change = plan.schema.fields_of("BookChange")
    assert {name: ref.text for name, ref in change.items()} == {
        "op": "ChangeOp!",
        "position": "String!",
        "key": "String",
        "document": "Book",
        "matches": "Boolean!",
        "documents": "[Book!]",
        "has_more": "Boolean",
        "command_id": "String",
        "at": "String",
        "subject": "String",
    }


def test_subscription_fields_a_schema_writes_are_kept_and_checked(library):
    topology, schema = library
    edit(
        schema,
        "type Query {",
        "type Subscription {\n  bookChanged(key: ID!): BookChange!\n"
        "  booksChanged(where: BookWhere, first: Int!, order: BookOrder): [BookChange]\n"
        "  somethingElse: String\n}\n\ntype Query {",
    )
    plan, problems = plan_of(topology)
    books = [s for s in plan.documents.subscriptions if s.entity.name == "Book"]
    assert [(s.field, s.argument) for s in books] == [("bookChanged", "key")]
    # the schema's own fields are kept; the fields it does not write are added beside them
    assert "\ntype Subscription" not in plan.documents.extras
    assert "bookChanged" not in plan.documents.extras
    assert "extend type Subscription {\n  loanChanged(" in plan.documents.extras
    assert at(problems, "nodes.gateway.subscriptions.booksChanged") == [
        "Subscription.booksChanged: it returns [BookChange]; a subscription's messages are "
        "BookChange!",
        "Subscription.booksChanged: argument 'first' is Int!; it must be Int",
        "Subscription.booksChanged: argument 'order' is not one a subscription to Book "
        "documents takes (where, first, after)",
    ]
    assert at(problems, "nodes.gateway.subscriptions") == [
        "Subscription.somethingElse in schema/library.graphql has no mapping; add "
        "'somethingElse: {changed: <Entity>}' (one document) or 'somethingElse: {changes: "
        "<Entity>}' (a filtered list) under subscriptions"
    ]


def test_a_subscription_needs_a_subscription_type_and_a_name_of_its_own(library):
    topology, schema = library
    edit(schema, "type Query {", "schema { query: Query mutation: Mutation }\n\ntype Query {")
    _, problems = plan_of(topology)
    assert at(problems, "nodes.gateway.subscriptions.bookChanged") == [
        "the schema definition of schema/library.graphql names no subscription type; add "
        "'subscription: Subscription' to it"
    ]
    topology.write_text(
        topology.read_text().replace(
            "bookChanged: {changed: Book}", "commandSettled: {changed: Book}"
        )
    )
    schema.write_text(schema.read_text().replace("schema { query: Query mutation: Mutation }", ""))
    _, problems = plan_of(topology)
    assert at(problems, "nodes.gateway.subscriptions.commandSettled") == [
        "commandSettled is the gateway's own subscription (a command's outcome); give this one "
        "another name"
    ]


def test_a_change_type_the_schema_writes_must_be_the_one_the_gateway_answers(library):
    topology, schema = library
    edit(
        schema,
        "type Query {",
        "enum ChangeOp { INSERT UPDATE DELETE }\n"
        "type BookChange { op: ChangeOp!  position: Int!  document: Book  before: Book }\n\n"
        "type Query {",
    )
    _, problems = plan_of(topology)
    assert at(problems, "nodes.gateway.schema") == [
        "schema/library.graphql: enum ChangeOp lacks CURRENT; it is CURRENT INSERT UPDATE DELETE",
        "schema/library.graphql: BookChange.position is Int!; it is String!",
        "schema/library.graphql: type BookChange has 'before', which the gateway does not "
        "answer; its fields: op, position, key, document, matches, documents, has_more, "
        "command_id, at, subject",
    ]
