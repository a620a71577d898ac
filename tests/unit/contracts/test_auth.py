"""A gateway's end-user rules checked against the topology and its schema (validate): every name
with its key path, line and did-you-mean; row rules on indexed fields only; no query or mutation
that would get around a row rule; keys that fit the algorithms."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.errors import TopologyError
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.problems import Problems

from ..helpers import line_of
from .support import at

ROOT = Path(__file__).resolve().parents[3]
LIBRARY = ROOT / "examples" / "library"
ROLES = "nodes.gateway.auth.roles"


@pytest.fixture
def library(tmp_path):
    """A copy of examples/library to edit: its topology file."""
    copy = tmp_path / "library"
    shutil.copytree(LIBRARY, copy)
    return copy / "topology.yaml"


def problems_of(path: Path):
    topology = load_topology(path)
    protos = compile_protos(list(topology.protos), topology.root)
    problems = Problems(topology.located)
    plan = gateway_plan(topology, topology.nodes["gateway"], protos, problems)
    return plan, problems.problems


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def test_the_library_rules_are_planned(library):
    plan, problems = problems_of(library)
    assert problems == []
    roles = plan.auth.roles
    assert roles["visitor"].queries == {"authors", "author", "books", "book"}
    assert roles["visitor"].hidden == {"Book": frozenset({"loans"})}
    assert [(r.field, r.claim, r.kind) for r in roles["member"].rows["Loan"]] == [
        ("member", "sub", "String")
    ]
    assert roles["member"].values == {
        "lendBook": {"member": "sub"},
        "updateLoan": {"member": "sub"},
    }
    assert (roles["member"].depth, roles["member"].cost) == (6, 2000)
    assert roles["librarian"].queries is None and roles["librarian"].mutations is None
    assert roles["member"].may_run("query", "commandStatus")  # a caller's own commands


def test_unknown_names_are_reported_at_their_key_path_and_line_with_a_did_you_mean(library):
    edit(library, "anonymous: visitor", "anonymous: visiter")
    edit(library, "queries: [authors, author, books, book, loans, loan]", "queries: [loans, laon]")
    edit(library, "mutations: [lendBook, updateLoan]", "mutations: [lendBook, updateLon]")
    edit(library, "shelf, updated_at]", "shelf, updated]")
    edit(library, "lendBook: {member: sub}", "lendBok: {member: sub}")
    edit(library, "updateLoan: {member: sub}", "updateLoan: {memb: sub}")
    edit(library, "Loan: {rows: {member: sub}}", "Lone: {rows: {member: sub}}")
    _, problems = problems_of(library)
    text = library.read_text()
    (anonymous,) = [p for p in problems if p.path == "nodes.gateway.auth.anonymous"]
    assert anonymous.line == line_of(text, "anonymous: visiter")
    assert "no role named 'visiter'" in anonymous.message
    assert "did you mean 'visitor'?" in anonymous.message
    assert at(problems, f"{ROLES}.member.queries[1]") == [
        "no query named 'laon' on this gateway (queries: author, authors, book, books, loan, "
        "loans, member, memberLoans); did you mean 'loan'?"
    ]
    assert "did you mean 'updateLoan'?" in at(problems, f"{ROLES}.member.mutations[1]")[0]
    assert (
        "did you mean 'updated_at'?" in at(problems, f"{ROLES}.visitor.entities.Book.fields[10]")[0]
    )
    assert at(problems, f"{ROLES}.member.values.lendBok") == [
        "no mutation named 'lendBok' on this gateway; did you mean 'lendBook'?"
    ]
    (argument,) = at(problems, f"{ROLES}.member.values.updateLoan.memb")
    assert "updateLoan has no argument 'memb'" in argument and "did you mean 'member'?" in argument
    (entity,) = at(problems, f"{ROLES}.member.entities.Lone")
    assert "no entity named 'Lone'" in entity and "did you mean 'Loan'?" in entity


def test_a_row_rule_needs_an_indexed_field(library):
    edit(library, "Loan: {rows: {member: sub}}", "Loan: {rows: {member: sub, membr: sub}}")
    edit(library, "indexes: [book_id, member, due, returned]", "indexes: [book_id, due, returned]")
    _, problems = problems_of(library)
    (member,) = at(problems, f"{ROLES}.member.entities.Loan.rows.member")
    assert "must be indexed" in member and "add it to entities.Loan.indexes" in member
    (typo,) = at(problems, f"{ROLES}.member.entities.Loan.rows.membr")
    assert "Loan's documents have no field 'membr'; did you mean 'member'?" in typo


def test_a_mutation_by_key_without_exists_would_get_around_a_row_rule(library):
    edit(
        library,
        'updateLoan: {command: update_loan, exists: Loan, message: "Queued to update {id}"}',
        'updateLoan: {command: update_loan, message: "Queued to update {id}"}',
    )
    edit(
        library,
        "mutations: [lendBook, updateLoan]",
        "mutations: [lendBook, updateLoan, removeLoan]",
    )
    _, problems = problems_of(library)
    (problem,) = at(problems, f"{ROLES}.member.entities.Loan.rows")
    assert "may run updateLoan, which changes Loan documents by key (update)" in problem
    assert "add exists: Loan to the mutation" in problem  # removeLoan has exists: Loan: fine


def test_a_query_answered_by_a_reader_rpc_would_get_around_a_row_rule(library):
    edit(library, "Loan: {rows: {member: sub}}", "Book: {rows: {title: sub}}")
    edit(library, "      book: {get: Book}\n", "      book: {rpc: GetBook}\n")
    _, problems = problems_of(library)
    (problem,) = at(problems, f"{ROLES}.member.entities.Book.rows")
    assert "may run book, which the reader RPC GetBook answers" in problem


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        ("algorithms: [ES256]", "algorithms: [ES256, HS256]", "algorithms", "HS256 needs a shared"),
        (
            "algorithms: [ES256]",
            "algorithms: [HS256]\n      secret: {env: LIBRARY_JWT_SECRET}",
            "jwks",
            "the JWKS is never used",
        ),
        (
            "algorithms: [ES256]",
            "algorithms: [ES256]\n      secret: {env: LIBRARY_JWT_SECRET}",
            "secret",
            "used only for HS256",
        ),
        ("jwks: {file: keys/jwks.json}", "jwks: {file: keys/missing.json}", "jwks.file", "missing"),
    ],
)
def test_the_keys_fit_the_algorithms(library, old, new, path, words):
    edit(library, old, new)
    _, problems = problems_of(library)
    assert any(words in m for m in at(problems, f"nodes.gateway.auth.{path}")), problems


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("jwks: {file: keys/jwks.json}", "jwks: {url: 'http://auth.example/jwks'}", "https://"),
        (
            "jwks: {file: keys/jwks.json}",
            "jwks: {uri: 'https://a.example/j'}",
            "did you mean 'url'",
        ),
        ("algorithms: [ES256]", "algorithms: [none]", "expected one of RS256, ES256, EdDSA, HS256"),
        ("role_claim: role", "role_claim: 'a b'", "the name of a token claim"),
        ("      audience: library\n", "", "missing required key 'audience'"),
        ("queries: '*'", "queries: ['books!']", "GraphQL field names"),
    ],
)
def test_the_auth_section_is_checked_as_it_is_read(library, old, new, words):
    edit(library, old, new)
    with pytest.raises(TopologyError) as raised:
        load_topology(library)
    assert words in str(raised.value)
