"""A reader's outside gRPC clients and a node's server reflection in the topology: what they
load as, and every mistake reported at its key path and line, with a did-you-mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_flow.contracts.check import check_contracts
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.topology import load_topology, parse_topology
from cqrs_flow.topology.model import GrpcClient, SecretSource

from ..helpers import SHIPPED, line_of

READER_LINE = "    plugins: [plugins.contacts.ReverseName]   # answers ReverseName\n"

CLIENTS = """\
    clients:
      crm-sync:
        call: [contacts.ContactReader/GetContact, cqrs_flow.Documents]
        token: {env: CRM_SYNC_TOKEN}
      reports:
        call: contacts.ContactReader
        token: {file: secrets/reports-token}
"""


def with_reader(edit, text: str) -> str:
    return edit((READER_LINE, READER_LINE + text))


def test_clients_and_reflection_load(edit, parse):
    topology = parse(with_reader(edit, CLIENTS + "    reflection: false\n"))
    reader = topology.nodes["reader"]
    assert reader.clients["crm-sync"] == GrpcClient(
        "crm-sync",
        ("contacts.ContactReader/GetContact", "cqrs_flow.Documents"),
        SecretSource(env="CRM_SYNC_TOKEN"),
    )
    assert reader.clients["reports"].call == ("contacts.ContactReader",)
    assert reader.clients["reports"].token == SecretSource(file=Path("secrets/reports-token"))
    assert reader.reflection is False and not reader.serves_reflection
    crm = reader.clients["crm-sync"]
    assert crm.may_call("contacts.ContactReader", "GetContact")
    assert not crm.may_call("contacts.ContactReader", "ListContacts")
    assert crm.may_call("cqrs_flow.Documents", "Find")
    assert reader.clients["reports"].may_call("contacts.ContactReader", "ListContacts")
    # Who may call the reader at all: the gateway, and the clients for the services they name.
    assert topology.callers_of("reader") == {
        "contacts.ContactReader": {"gateway", "crm-sync", "reports"},
        "cqrs_flow.Documents": {"gateway", "crm-sync"},
        "cqrs_flow.Changes": {"gateway"},  # the change log: live subscriptions
    }


@pytest.mark.parametrize(
    "listen, setting, served",
    [
        ("127.0.0.1:50053", None, True),
        ("localhost:50053", None, True),
        ("0.0.0.0:50053", None, False),
        ("10.1.2.3:50053", None, False),
        ("0.0.0.0:50053", "true", True),
        ("127.0.0.1:50053", "false", False),
    ],
)
def test_reflection_is_on_by_default_only_on_loopback(edit, parse, listen, setting, served):
    text = edit(("    listen: 127.0.0.1:50053\n", f"    listen: {listen}\n"))
    if setting is not None:
        text = text.replace(READER_LINE, READER_LINE + f"    reflection: {setting}\n")
    assert parse(text).nodes["reader"].serves_reflection is served


def test_a_store_serves_reflection_on_loopback_and_can_be_told_not_to(edit, parse):
    shipped = parse(edit())
    assert shipped.nodes["store"].serves_reflection
    off = parse(edit(("    key: id\n", "    key: id\n    reflection: false\n")))
    assert not off.nodes["store"].serves_reflection
    wide = parse(edit(("      listen: 127.0.0.1:50052\n", "      listen: 0.0.0.0:50052\n")))
    assert not wide.nodes["store"].serves_reflection  # one of its listeners is beyond loopback


@pytest.mark.parametrize(
    "client, path, message",
    [
        (  # a misspelt service: did you mean
            "call: contacts.ContactReadr\n        token: {env: T}",
            "nodes.reader.clients.tool.call[0]",
            "reader serves no service 'contacts.ContactReadr'; it serves contacts.ContactReader, "
            "cqrs_flow.Documents and cqrs_flow.Changes; did you mean 'contacts.ContactReader'?",
        ),
        (  # the store's service is not the reader's to grant
            "call: [contacts.ContactReader, contacts.ContactWriteService/AddContact]\n"
            "        token: {env: T}",
            "nodes.reader.clients.tool.call[1]",
            "reader serves no service 'contacts.ContactWriteService'",
        ),
        (
            "call: 'contacts.ContactReader/Get/Contact'\n        token: {env: T}",
            "nodes.reader.clients.tool.call[0]",
            "expected 'package.Service' or 'package.Service/Rpc'",
        ),
        (  # neither credential
            "call: contacts.ContactReader",
            "nodes.reader.clients.tool",
            "missing a required key: 'token'",
        ),
        (
            "call: contacts.ContactReader\n        token: {env: T}\n        certificate: tool",
            "nodes.reader.clients.tool",
            "give only one of 'token' or 'certificate'",
        ),
        (
            "call: contacts.ContactReader\n        tokn: {env: T}",
            "nodes.reader.clients.tool.tokn",
            "did you mean 'token'?",
        ),
        (  # a token written in clear is refused and not echoed
            "call: contacts.ContactReader\n        token: s3cr3t-value",
            "nodes.reader.clients.tool.token",
            "expected {env: NAME} or {file: path}",
        ),
        (  # a certificate is only checked with mutual TLS
            "call: contacts.ContactReader\n        certificate: tool.example.com",
            "nodes.reader.clients.tool.certificate",
            "a client certificate is asked for only over TLS with client_auth",
        ),
        (
            "call: contacts.ContactReader\n        token: {file: /etc/tool-token}",
            "nodes.reader.clients.tool.token.file",
            "absolute path",
        ),
    ],
)
def test_mistakes_are_reported_at_their_key_and_line(edit, problems_of, client, path, message):
    text = with_reader(edit, f"    clients:\n      tool:\n        {client}\n")
    problems = problems_of(text)
    found = [p for p in problems if p.path == path]
    assert found and message in found[0].message, problems
    assert "s3cr3t-value" not in str(problems)
    key = path.split(".")[4].partition("[")[0] if path.count(".") > 3 else "tool"
    assert found[0].line == line_of(text, f"{key}:")


def test_a_client_may_not_take_a_nodes_name(edit, problems_of):
    text = with_reader(
        edit, "    clients:\n      gateway: {call: cqrs_flow.Documents, token: {env: T}}\n"
    )
    (problem,) = [p for p in problems_of(text) if p.path == "nodes.reader.clients.gateway"]
    assert "'gateway' is the name of a node" in problem.message


def test_an_rpc_the_service_does_not_have_is_reported_by_validate(tmp_path, edit, shipped_protos):
    text = with_reader(
        edit,
        "    clients:\n      tool:\n        call: [contacts.ContactReader/GetContct,"
        " cqrs_flow.Documents/Find, cqrs_flow.Documents/Nope]\n        token: {env: T}\n",
    )
    topology = parse_topology(text, SHIPPED)
    problems = check_contracts(topology, shipped_protos, import_plugins=False)
    messages = {p.path: p.message for p in problems}
    assert messages["nodes.reader.clients.tool.call[0]"].startswith(
        "contacts.ContactReader has no RPC 'GetContct'; did you mean 'GetContact'?"
    )
    assert "cqrs_flow.Documents has no RPC 'Nope'" in messages["nodes.reader.clients.tool.call[2]"]
    assert "nodes.reader.clients.tool.call[1]" not in messages
    assert all(p.line == line_of(text, "call: [contacts") for p in problems if "tool" in p.path)


def test_the_shipped_examples_still_load_and_check(tmp_path):
    for path in (SHIPPED, SHIPPED.parent / "examples" / "library" / "topology.yaml"):
        topology = load_topology(path)
        protos = compile_protos(list(topology.protos), topology.root, cache=tmp_path)
        assert check_contracts(topology, protos, import_plugins=False) == []
