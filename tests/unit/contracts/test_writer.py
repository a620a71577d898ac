"""The writer's contract: what each command's request carries, its entity key."""

from __future__ import annotations

from pathlib import Path

from cqrs_flow.contracts.writer import writer_plan
from cqrs_flow.errors import Problem
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.problems import Problems

from ..helpers import line_of
from .support import DELETE_REQUEST, text_of


def test_a_command_key_must_be_one_string(contracts, make_project):
    path = make_project(
        yaml=[("rpc: DeleteContact}", "rpc: DeleteContact, key: tags}")],
        proto=[
            (
                DELETE_REQUEST,
                "message DeleteContactRequest { string id = 1; "
                "string command_id = 15; repeated string tags = 2; }",
            )
        ],
    )
    assert contracts(path) == [
        Problem(
            line_of(text_of(path), "key: tags"),
            "commands.delete_contact.key",
            "'tags' is repeated; the entity key is one string field",
        )
    ]


def test_each_command_knows_its_entity_so_orders_are_kept_per_entity_and_key():
    """Commands keep their order per entity and key (the writer's lanes): a book and an author
    with the same id never wait on each other."""
    root = Path(__file__).resolve().parents[3]
    topology = load_topology(root / "examples" / "library" / "topology.yaml")
    protos = compile_protos(list(topology.protos), topology.root)
    problems = Problems(topology.located)
    plans = writer_plan(topology, topology.nodes["writer"], protos, problems)
    assert problems.problems == []
    entities = {plan.name: (plan.entity, plan.key_path) for plan in plans.values()}
    assert entities["add_author"] == ("Author", "author.id")
    assert entities["remove_author"] == ("Author", "id")
    assert entities["update_book"] == ("Book", "book.id")
    assert entities["remove_loan"] == ("Loan", "id")
    assert entities["add_books"][0] == "Book"
