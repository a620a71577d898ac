"""The writer's contract: what each command's request carries, its entity key."""

from __future__ import annotations

from cqrs_flow.errors import Problem

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
