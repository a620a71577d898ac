"""loader: topology file -> checked model; defaults, and every problem at once, with path and
line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.topology import (
    Address,
    BrokerNode,
    Command,
    Endpoint,
    GatewayNode,
    Mutation,
    Query,
    ReaderNode,
    StoreNode,
    WriterNode,
    load_topology,
    parse_topology,
)

from ..helpers import ROOT, SHIPPED, line_of


def only(problems: list[Problem], path: str) -> Problem:
    found = [p for p in problems if p.path == path]
    assert len(found) == 1, f"expected one problem at {path}, got {problems}"
    return found[0]


# -- the shipped example ----------------------------------------------------------------------


def test_shipped_topology_loads(shipped):
    assert shipped.name == "contacts"
    assert shipped.source == SHIPPED
    assert shipped.root == ROOT
    assert shipped.protos == (Path("proto/contacts.proto"),)
    assert dict(shipped.commands) == {
        "add_contact": Command("add_contact", "CONTACT/ADD", "AddContact"),
        "update_contact": Command("update_contact", "CONTACT/UPDATE", "UpdateContact"),
        "delete_contact": Command("delete_contact", "CONTACT/DELETE", "DeleteContact"),
    }
    assert list(shipped.nodes) == ["broker", "store", "reader", "writer", "gateway"]
    assert shipped.nodes["broker"] == BrokerNode("broker", listen=Address("127.0.0.1", 1883))
    assert shipped.located is not None


def test_shipped_store(shipped):
    store = shipped.nodes["store"]
    assert isinstance(store, StoreNode)
    assert store.entities == ("Contact",)
    contact = shipped.entities["Contact"]
    assert (contact.document, contact.collection, contact.key, contact.timestamp) == (
        "contacts.Contact",
        "contacts",
        "id",
        "last_updated",
    )
    assert contact.path == ("nodes", "store")  # described by the store itself
    assert store.list_limit == 1000
    assert store.write.name == "contacts.ContactWriteService"
    assert store.write.listen == Address("127.0.0.1", 50051)
    assert dict(store.write.rpcs) == {
        "AddContact": "insert",
        "UpdateContact": "update",
        "DeleteContact": "delete",
        "AddContacts": "insert_many",
        "DeleteContacts": "delete_many",
    }
    assert store.read.name == "contacts.ContactReadService"
    assert store.read.listen == Address("127.0.0.1", 50052)
    assert dict(store.read.rpcs) == {"GetContact": "get", "ListContacts": "list"}
    assert store.service("write") is store.write and store.service("read") is store.read


def test_shipped_reader_writer_gateway(shipped):
    reader, writer, gateway = (shipped.nodes[n] for n in ("reader", "writer", "gateway"))
    assert isinstance(reader, ReaderNode)
    assert reader.store == Endpoint("store", "read")
    assert reader.listen == Address("127.0.0.1", 50053)
    assert dict(reader.rpcs) == {}
    assert isinstance(writer, WriterNode)
    assert writer.store == Endpoint("store", "write")
    assert writer.commands == ("add_contact", "update_contact", "delete_contact")
    assert writer.delay == 3.0
    assert isinstance(gateway, GatewayNode)
    assert gateway.schema == Path("schema/contacts.graphql")
    assert gateway.url == "http://127.0.0.1:8080/graphql"
    assert gateway.playground is True
    assert gateway.queries["contact"] == Query("contact", "GetContact")
    assert gateway.mutations["addContact"] == Mutation(
        "addContact", "add_contact", generate={"contact.id": "uuid"}, message="Queued to add"
    )
    assert gateway.mutations["updateContact"].exists == "GetContact"
    assert gateway.mutations["deleteContact"].not_found == "{entity} {id} not found"


def test_parse_and_load_agree(shipped, shipped_text):
    assert parse_topology(shipped_text, SHIPPED) == shipped


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_are_filled_in(edit, parse):
    topology = parse(
        edit(
            ("name: contacts\n", ""),
            ("    kind: broker\n    listen: 127.0.0.1:1883\n", "    kind: broker\n"),
            ("    collection: contacts\n    key: id\n    timestamp: last_updated\n", ""),
            ("    delay: 3s\n", ""),
            (
                "      addContact:\n        command: add_contact\n        generate: {contact.id: "
                "uuid}\n"
                "        message: Queued to add\n",
                "      addContact: {command: add_contact, generate: {contact.id: uuid}}\n",
            ),
        )
    )
    assert topology.name == "cqrs-flow"
    assert topology.ready_timeout == 30.0
    assert topology.stop_timeout == 5.0
    assert topology.nodes["broker"].listen == Address("127.0.0.1", 1883)
    store = topology.nodes["store"]
    contact = topology.entities["Contact"]
    assert (contact.collection, contact.key, contact.timestamp, store.list_limit) == (
        "store",
        "id",
        None,
        1000,
    )
    assert topology.nodes["writer"].delay == 0.0
    assert topology.nodes["gateway"].playground is True
    assert topology.nodes["gateway"].mutations["addContact"].message == "Queued"


def test_gateway_listen_default(edit, parse):
    topology = parse(edit(("    listen: 127.0.0.1:8080\n", "")))
    assert topology.nodes["gateway"].listen == Address("127.0.0.1", 8080)


def test_shorthands_of_queries_mutations_and_single_values(edit, parse):
    topology = parse(
        edit(
            ("proto: proto/contacts.proto", "proto: [proto/contacts.proto]"),
            (
                "      deleteContact:\n        command: delete_contact\n        exists: "
                "GetContact\n"
                "        message: Queued to delete\n",
                "      deleteContact: delete_contact\n",
            ),
            (
                "commands: [add_contact, update_contact, delete_contact]",
                "commands: [add_contact, update_contact]",
            ),
            (
                "  gateway:\n",
                "  writer2:\n    kind: writer\n    broker: broker\n    store: store.write\n"
                "    commands: delete_contact\n  gateway:\n",
            ),
        )
    )
    assert topology.protos == (Path("proto/contacts.proto"),)
    assert topology.nodes["gateway"].mutations["deleteContact"] == Mutation(
        "deleteContact", "delete_contact"
    )
    assert topology.nodes["writer2"].commands == ("delete_contact",)
    assert [w.name for w in topology.writers_of("delete_contact")] == ["writer2"]


@pytest.mark.parametrize(
    "written, seconds", [("3s", 3.0), ("500ms", 0.5), ("2", 2.0), ("1m", 60.0), ("0", 0.0)]
)
def test_durations_in_a_topology(edit, parse, written, seconds):
    topology = parse(
        edit(
            ("delay: 3s", f"delay: {written}"),
            (
                "name: contacts\n",
                f"name: contacts\nstop_timeout: {written}\nready_timeout: {written}\n",
            ),
        )
    )
    assert topology.nodes["writer"].delay == seconds
    assert topology.stop_timeout == seconds
    assert topology.ready_timeout == seconds


@pytest.mark.parametrize(
    "written, address",
    [
        ("127.0.0.1:80", Address("127.0.0.1", 80)),
        ("8081", Address("127.0.0.1", 8081)),
        ("'[::1]:50051'", Address("::1", 50051)),
        ("0.0.0.0:9000", Address("0.0.0.0", 9000)),
    ],
)
def test_addresses_in_a_topology(edit, parse, written, address):
    topology = parse(edit(("listen: 127.0.0.1:8080", f"listen: {written}")))
    assert topology.nodes["gateway"].listen == address


# -- problems ---------------------------------------------------------------------------------


def test_unknown_key_suggests_the_right_one(edit, problems_of):
    text = edit(("delay: 3s", "dealy: 3s"))
    with pytest.raises(
        TopologyError, match=re.escape("nodes.writer.dealy: unknown key; did you mean 'delay'?")
    ):
        parse_topology(text, SHIPPED)
    problems = problems_of(text)
    assert problems == [
        Problem(line_of(text, "dealy:"), "nodes.writer.dealy", "unknown key; did you mean 'delay'?")
    ]


def test_unknown_top_level_key(edit, problems_of):
    text = edit(("proto: proto/contacts.proto", "protos: proto/contacts.proto"))
    problems = problems_of(text)
    assert only(problems, "protos") == Problem(
        line_of(text, "protos:"), "protos", "unknown key; did you mean 'proto'?"
    )
    assert only(problems, "").message.startswith("missing required key 'proto'")


def test_missing_required_keys(edit, problems_of):
    text = edit(("    document: contacts.Contact\n", ""), ("    store: store.read\n", ""))
    problems = problems_of(text)
    store = only(problems, "nodes.store")
    assert store.line == line_of(text, "  store:")
    assert (
        store.message
        == "missing a required key: 'entities' (the entities whose documents it holds) or "
        "'document'"
    )
    reader = only(problems, "nodes.reader")
    assert reader.line == line_of(text, "  reader:")
    assert reader.message.startswith("missing required key 'store'")


def test_missing_top_level_keys(problems_of):
    problems = problems_of("name: x\n")
    assert [p.message.split(" (")[0] for p in problems] == [
        "missing required key 'commands'",
        "missing required key 'nodes'",
        "missing required key 'proto'",
    ]
    assert {p.line for p in problems} == {1}


@pytest.mark.parametrize(
    "old, new, path, needle, message",
    [
        (
            "delay: 3s",
            "delay: soon",
            "nodes.writer.delay",
            "delay: soon",
            "expected a duration such as 3s, 500ms or 0, got 'soon'",
        ),
        (
            "    kind: gateway\n",
            "    kind: gateway\n    playground: 'yes'\n",
            "nodes.gateway.playground",
            "playground:",
            "expected true or false, got 'yes'",
        ),
        (
            "    timestamp: last_updated\n",
            "    timestamp: last_updated\n    list_limit: 0\n",
            "nodes.store.list_limit",
            "list_limit:",
            "expected a whole number of at least 1, got 0",
        ),
        (
            "listen: 127.0.0.1:8080",
            "listen: 127.0.0.1:99999",
            "nodes.gateway.listen",
            "99999",
            "expected host:port with a port from 1 to 65535, got '127.0.0.1:99999'",
        ),
        (
            "AddContact: insert",
            "AddContact: insrt",
            "nodes.store.write.rpcs.AddContact",
            "insrt",
            "expected a store operation (insert, update, delete, insert_many, delete_many, get, "
            "list), or '<Entity>.<operation>' such as Book.delete, got 'insrt'; did you mean "
            "'insert'?",
        ),
        (
            "store: store.read",
            "store: [store.read]",
            "nodes.reader.store",
            "[store.read]",
            "expected '<store node>.read' or '<store node>.write', got ['store.read']",
        ),
        (
            "  broker:\n    kind: broker",
            "  bad name:\n    kind: broker",
            "nodes.bad name",
            "bad name:",
            "bad name: expected a name (letters, digits, '_' or '-'), got 'bad name'",
        ),
        (
            "topic: CONTACT/ADD",
            "topic: CONTACT/#",
            "commands.add_contact.topic",
            "CONTACT/#",
            "a command topic is a topic name, not a filter: no '+' or '#' in 'CONTACT/#'",
        ),
        (
            "    read:\n",
            "    read: 5\n    unused:\n",
            "nodes.store.read",
            "read: 5",
            "expected a mapping of service, listen, rpcs, tls, got 5",
        ),
    ],
)
def test_wrong_types(edit, problems_of, old, new, path, needle, message):
    text = edit((old, new))
    problems = problems_of(text)
    found = [p for p in problems if p.path == path]
    assert [p.message for p in found] == [message], problems
    assert found[0].line == line_of(text, needle)


def test_unknown_node_kind_suggests_the_right_one(edit, problems_of):
    text = edit(("kind: writer", "kind: writter"))
    problems = problems_of(text)
    kind = only(problems, "nodes.writer.kind")
    assert kind.line == line_of(text, "kind: writter")
    assert kind.message == (
        "unknown kind 'writter'; did you mean 'writer'?; "
        "expected one of broker, store, reader, writer, gateway, projection"
    )


def test_missing_node_kind(edit, problems_of):
    text = edit(("  broker:\n    kind: broker\n", "  broker:\n    kinds: broker\n"))
    problems = problems_of(text)
    assert only(problems, "nodes.broker").message.startswith(
        "missing kind; expected one of broker, store"
    )


def test_all_problems_are_reported_at_once_sorted_by_line(edit):
    text = edit(
        ("topic: CONTACT/ADD", "topic: CONTACT/#"),
        ("    document: contacts.Contact\n", ""),
        ("delay: 3s", "dealy: 3s"),
        ("listen: 127.0.0.1:8080", "listen: 127.0.0.1:99999"),
        (
            "        message: Queued to delete\n",
            "        message: Queued to delete\n    playground: maybe\n",
        ),
    )
    with pytest.raises(TopologyError) as exc:
        parse_topology(text, SHIPPED)
    problems = exc.value.problems
    expected = {
        "commands.add_contact.topic": line_of(text, "CONTACT/#"),
        "nodes.store": line_of(text, "  store:"),
        "nodes.writer.dealy": line_of(text, "dealy:"),
        "nodes.gateway.listen": line_of(text, "99999"),
        "nodes.gateway.playground": line_of(text, "playground: maybe"),
    }
    assert {p.path: p.line for p in problems} == expected
    assert [p.line for p in problems] == sorted(expected.values())
    message = str(exc.value)
    assert message.splitlines()[0] == f"{SHIPPED}: 5 problems"
    for path, line in expected.items():
        assert f"{SHIPPED}:{line}: {path}: " in message


def test_unreadable_file(tmp_path):
    with pytest.raises(TopologyError, match="cannot read topology"):
        load_topology(tmp_path / "missing.yaml")


def test_a_yaml_error_comes_with_its_line(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: x\nnodes: [\n")
    with pytest.raises(TopologyError, match="not valid YAML") as exc:
        load_topology(path)
    assert exc.value.problems[0].line is not None
    assert exc.value.source == str(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(problems_of, text):
    # Regression: this used to crash the loader with KeyError 'name'.
    problems = problems_of(text)
    assert problems and problems[0].message.startswith("expected a mapping")


@pytest.mark.parametrize("kind", ["[broker]", "{a: 1}"])
def test_non_scalar_kind_is_a_problem(edit, problems_of, kind):
    # Regression: this used to crash the checker with TypeError (unhashable type).
    problems = problems_of(edit(("kind: broker", f"kind: {kind}")))
    assert "unknown kind" in only(problems, "nodes.broker.kind").message


def test_misspelled_kind_does_not_claim_the_node_is_missing(edit, problems_of):
    # Regression: the node used to be dropped, so each reference to it said
    # "no node named 'broker'".
    problems = problems_of(edit(("kind: broker", "kind: brokr")))
    assert "unknown kind 'brokr'" in only(problems, "nodes.broker.kind").message
    assert not [p for p in problems if "no node named 'broker'" in p.message], problems
