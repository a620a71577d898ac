"""README.md's "Try it" operations, as written, against the shipped topology under `cqrs-flow
up`: each in the order given, `<id>` and `<command_id>` replaced by what addContact answered, as
the README says to do in the playground; and its curl line's query."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from system import System, prepare, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def try_it() -> list[tuple[str, str]]:
    """(name, operation) of each line of the Try it block, in order."""
    section = README[README.index("## Try it") :]
    block = re.search(r"```graphql\n(.*?)```", section, re.S).group(1)
    lines = re.findall(r"^((?:query|mutation) (\w+) .*)$", block, re.M)
    return [(name, line) for line, name in lines]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> System:
    """The shipped topology with free ports and a short write delay."""
    file = prepare(
        "topology.yaml",
        tmp_path_factory.mktemp("readme"),
        source=ROOT / "topology.yaml",
        **{"nodes.writer.delay": "300ms"},
    )
    system = System(file).start()
    yield system
    assert system.stop() == 0, system.output()


def test_the_try_it_operations_run_as_written(shipped):
    operations = try_it()
    assert [name for name, _ in operations] == [
        "AddContact",
        "ListContacts",
        "Command",
        "Contact",
        "ReversedName",
        "UpdateContact",
        "DeleteContact",
    ]
    answers = {}
    ids: dict[str, str] = {}
    for name, operation in operations:
        for placeholder, value in ids.items():
            operation = operation.replace(f"<{placeholder}>", value)
        assert "<" not in operation, operation
        if name == "ListContacts":  # listed once the write delay has passed
            wait_until(
                lambda op=operation, added=ids["id"]: (
                    added in {c["id"] for c in shipped.data(op)["listContacts"]}
                )
            )
        if name == "Command":
            wait_until(lambda op=operation: shipped.data(op)["commandStatus"]["state"] == "APPLIED")
        answers[name] = shipped.data(operation)
        if name == "AddContact":
            added = answers[name]["addContact"]
            assert added["status"] == "OK" and added["message"] == "Queued to add"
            ids = {"id": added["id"], "command_id": added["command_id"]}
    assert answers["Command"]["commandStatus"] == {
        "state": "APPLIED",
        "command": "add_contact",
        "key": ids["id"],
    }
    assert answers["Contact"]["contact"]["name"] == "John HUEBR"
    assert answers["ReversedName"] == {"reversedName": "John HUEBR"[::-1]}
    assert answers["UpdateContact"]["updateContact"] == {
        "status": "OK",
        "message": "Queued to update",
    }
    assert answers["DeleteContact"]["deleteContact"] == {
        "status": "OK",
        "message": "Queued to delete",
    }


def test_the_curl_line_and_an_unknown_id(shipped):
    query = re.search(r'-d \'\{"query": "(.*)"\}\'', README).group(1).replace('\\"', '"')
    answer = shipped.data(query)["addContact"]
    assert answer["status"] == "OK" and answer["id"]
    unknown = shipped.data(
        'mutation { deleteContact(id: "no-such-id") { status message id code } }'
    )["deleteContact"]
    assert unknown == {
        "status": "ERROR",
        "message": "contact no-such-id not found",
        "id": None,
        "code": "NOT_FOUND",
    }
