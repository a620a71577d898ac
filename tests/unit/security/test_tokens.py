"""auth: per-node tokens derived from one secret, and who may call whom."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from cqrs_flow.errors import NodeError
from cqrs_flow.security.tokens import (
    ENV_CALLERS,
    ENV_SECRET,
    ENV_TOKEN,
    CallerCheck,
    Credentials,
    credentials_from_env,
    derive_token,
    launch_environment,
    new_secret,
    outside_callers,
)
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import GrpcClient, frozen_map

from ..helpers import ROOT

SECRET = "0123456789abcdef" * 4


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_derive_token_is_deterministic_and_per_node():
    token = derive_token(SECRET, "writer")
    assert token == derive_token(SECRET, "writer")
    assert len(token) == 64 and int(token, 16) >= 0
    assert token != derive_token(SECRET, "reader")
    assert token != derive_token(SECRET + "x", "writer")
    assert token != SECRET


def test_new_secret_is_fresh_each_time():
    assert new_secret() != new_secret()
    assert len(new_secret()) == 64


def test_callers_of(shipped):
    assert shipped.callers_of("store") == {
        "contacts.ContactWriteService": {"writer"},
        "contacts.ContactReadService": {"reader"},
        "cqrs_flow.Documents": {"reader"},  # the document service is on the read side
        "cqrs_flow.Changes": {"reader"},  # and the change log
        "cqrs_flow.Projections": set(),  # on the write side: no projection writes here
        "cqrs_flow.Commands": {"writer"},  # beside it: the writer's commands, several a call
    }
    assert shipped.callers_of("reader") == {
        "contacts.ContactReader": {"gateway"},
        "cqrs_flow.Documents": {"gateway"},
        "cqrs_flow.Changes": {"gateway"},
    }
    for node in ("broker", "writer", "gateway"):
        assert shipped.callers_of(node) == {}


def test_callers_of_with_more_writers_and_readers(edit, parse):
    topology = parse(
        edit(
            (
                "  gateway:\n",
                "  writer2:\n    kind: writer\n    broker: broker\n"
                "    store: store.write\n    commands: [add_contact]\n"
                "  reader2:\n    kind: reader\n    service: contacts.ContactReader\n"
                "    listen: 127.0.0.1:50054\n    store: store.read\n"
                "  gateway:\n",
            )
        )
    )
    assert topology.callers_of("store") == {
        "contacts.ContactWriteService": {"writer", "writer2"},
        "contacts.ContactReadService": {"reader", "reader2"},
        "cqrs_flow.Documents": {"reader", "reader2"},
        "cqrs_flow.Changes": {"reader", "reader2"},
        "cqrs_flow.Projections": set(),
        "cqrs_flow.Commands": {"writer", "writer2"},
    }
    assert topology.callers_of("reader2") == {
        "contacts.ContactReader": set(),
        "cqrs_flow.Documents": set(),
        "cqrs_flow.Changes": set(),
    }


def test_a_projection_calls_the_log_it_follows_and_the_write_side_it_writes_to():
    library = load_topology(ROOT / "examples" / "library" / "topology.yaml")
    assert library.callers_of("store")["cqrs_flow.Changes"] == {"reader", "loans"}
    assert library.callers_of("reader")["cqrs_flow.Changes"] == {"gateway"}
    assert library.callers_of("store")["cqrs_flow.Projections"] == {"loans"}
    assert "loans" not in library.callers_of("store")["library.LibraryWriteService"]
    assert "loans" not in library.callers_of("store")["cqrs_flow.Documents"]
    assert library.callers_of("loans") == {}


def test_launch_environment_of_the_store_holds_exactly_writer_and_reader(shipped):
    env = launch_environment(shipped, "store", SECRET)
    assert env[ENV_TOKEN] == derive_token(SECRET, "store")
    assert json.loads(env[ENV_CALLERS]) == {
        "writer": digest(derive_token(SECRET, "writer")),
        "reader": digest(derive_token(SECRET, "reader")),
    }


def test_launch_environment_of_the_reader_holds_the_gateway(shipped):
    env = launch_environment(shipped, "reader", SECRET)
    assert env[ENV_TOKEN] == derive_token(SECRET, "reader")
    assert json.loads(env[ENV_CALLERS]) == {"gateway": digest(derive_token(SECRET, "gateway"))}


@pytest.mark.parametrize("node", ["broker", "writer", "gateway"])
def test_launch_environment_of_nodes_nobody_calls(shipped, node):
    env = launch_environment(shipped, node, SECRET)
    assert json.loads(env[ENV_CALLERS]) == {}
    assert SECRET not in env.values()  # a node gets only what derives from the secret


def test_credentials_from_the_secret(shipped):
    credentials = credentials_from_env(shipped, "store", {ENV_SECRET: SECRET})
    assert credentials.node == "store"
    assert credentials.token == derive_token(SECRET, "store")
    assert dict(credentials.callers) == {
        "writer": digest(derive_token(SECRET, "writer")),
        "reader": digest(derive_token(SECRET, "reader")),
    }
    assert credentials.metadata == (
        ("x-cqrs-flow-node", "store"),
        ("x-cqrs-flow-token", credentials.token),
    )


def test_credentials_from_token_and_callers(shipped):
    env = {ENV_TOKEN: "my-token", ENV_CALLERS: json.dumps({"gateway": "abc"})}
    credentials = credentials_from_env(shipped, "reader", env)
    assert credentials == Credentials("reader", "my-token", {"gateway": "abc"})


def test_token_takes_precedence_over_the_secret(shipped):
    env = {ENV_TOKEN: "my-token", ENV_SECRET: SECRET}
    credentials = credentials_from_env(shipped, "reader", env)
    assert credentials.token == "my-token"
    assert dict(credentials.callers) == {}


@pytest.mark.parametrize("node", ["store", "reader", "writer"])
def test_both_ways_give_the_same_credentials(shipped, node):
    by_secret = credentials_from_env(shipped, node, {ENV_SECRET: SECRET})
    by_launch = credentials_from_env(shipped, node, launch_environment(shipped, node, SECRET))
    assert by_secret == by_launch


def test_bad_callers_json(shipped):
    with pytest.raises(NodeError, match=f"{ENV_CALLERS} must be a JSON object"):
        credentials_from_env(shipped, "reader", {ENV_TOKEN: "t", ENV_CALLERS: "{nope"})


@pytest.mark.parametrize("callers", ["[]", "5", '"gateway"'])
def test_callers_must_be_a_json_object(shipped, callers):
    with pytest.raises(NodeError, match=ENV_CALLERS):
        credentials_from_env(shipped, "reader", {ENV_TOKEN: "t", ENV_CALLERS: callers})


@pytest.mark.parametrize("env", [{}, {ENV_SECRET: "", ENV_TOKEN: ""}])
def test_no_credentials_is_a_helpful_error(shipped, env):
    with pytest.raises(NodeError) as exc:
        credentials_from_env(shipped, "writer", env)
    message = str(exc.value)
    assert "node 'writer' has no credentials" in message
    assert "cqrs-flow up" in message
    assert ENV_SECRET in message


# -- the caller check ------------------------------------------------------------------------


def metadata(caller: str | None, token: str | None) -> tuple:
    found = []
    if caller is not None:
        found.append(("x-cqrs-flow-node", caller))
    if token is not None:
        found.append(("x-cqrs-flow-token", token))
    return tuple(found)


def check_of(shipped, node: str) -> CallerCheck:
    return CallerCheck(
        shipped.callers_of(node), credentials_from_env(shipped, node, {ENV_SECRET: SECRET})
    )


def refusal(shipped, node: str, method: str, caller: str | None, token: str | None) -> str | None:
    service = method.lstrip("/").partition("/")[0]
    return check_of(shipped, node).refusal(service, metadata(caller, token))


def test_wired_caller_is_let_through(shipped):
    assert (
        refusal(
            shipped,
            "store",
            "/contacts.ContactWriteService/AddContact",
            "writer",
            derive_token(SECRET, "writer"),
        )
        is None
    )
    assert (
        refusal(
            shipped,
            "store",
            "/contacts.ContactReadService/GetContact",
            "reader",
            derive_token(SECRET, "reader"),
        )
        is None
    )
    assert (
        refusal(
            shipped,
            "reader",
            "/contacts.ContactReader/GetContact",
            "gateway",
            derive_token(SECRET, "gateway"),
        )
        is None
    )


NOT_WIRED = "node '{caller}' may not call {service}: the topology does not wire it there"
NOT_KNOWN = "caller {caller!r} is not a node of this system or its credentials are wrong"

DENIALS = [
    # a writer may not read the store, a reader may not write it
    (
        "store",
        "/contacts.ContactReadService/GetContact",
        "writer",
        derive_token(SECRET, "writer"),
        NOT_WIRED.format(caller="writer", service="contacts.ContactReadService"),
    ),
    (
        "store",
        "/contacts.ContactWriteService/AddContact",
        "reader",
        derive_token(SECRET, "reader"),
        NOT_WIRED.format(caller="reader", service="contacts.ContactWriteService"),
    ),
    # the gateway may not skip the reader: the store does not even know it
    (
        "store",
        "/contacts.ContactReadService/GetContact",
        "gateway",
        derive_token(SECRET, "gateway"),
        NOT_KNOWN.format(caller="gateway"),
    ),
    # wrong token, no token, anonymous
    (
        "store",
        "/contacts.ContactWriteService/AddContact",
        "writer",
        derive_token(SECRET, "reader"),
        NOT_KNOWN.format(caller="writer"),
    ),
    (
        "store",
        "/contacts.ContactWriteService/AddContact",
        "writer",
        None,
        NOT_KNOWN.format(caller="writer"),
    ),
    (
        "reader",
        "/contacts.ContactReader/GetContact",
        None,
        None,
        NOT_KNOWN.format(caller="(anonymous)"),
    ),
    # a token without a node
    (
        "reader",
        "/contacts.ContactReader/GetContact",
        None,
        derive_token(SECRET, "gateway"),
        NOT_KNOWN.format(caller="(anonymous)"),
    ),
]


@pytest.mark.parametrize("node, method, caller, token, message", DENIALS)
def test_other_callers_are_denied(shipped, node, method, caller, token, message):
    assert refusal(shipped, node, method, caller, token) == message


def test_health_checks_need_no_credentials(shipped):
    assert refusal(shipped, "store", "/grpc.health.v1.Health/Check", None, None) is None


def test_the_last_of_repeated_keys_counts(shipped):
    check = check_of(shipped, "store")
    writer = metadata("writer", derive_token(SECRET, "writer"))
    assert check.refusal(
        "contacts.ContactReadService", (("x-cqrs-flow-node", "reader"),) + writer
    ) == NOT_WIRED.format(caller="writer", service="contacts.ContactReadService")
    assert check.refusal(
        "contacts.ContactWriteService", writer + (("x-cqrs-flow-token", "forged"),)
    ) == NOT_KNOWN.format(caller="writer")


def test_a_verified_token_is_hashed_once_and_only_that_token_passes(shipped, monkeypatch):
    import cqrs_flow.security.tokens as auth

    check = check_of(shipped, "store")
    hashed = []
    digest_of = auth.digest
    monkeypatch.setattr(auth, "digest", lambda token: hashed.append(token) or digest_of(token))
    good = metadata("writer", derive_token(SECRET, "writer"))
    for _ in range(3):
        assert check.refusal("contacts.ContactWriteService", good) is None
    assert len(hashed) == 1
    # what was verified lets nothing else through: another token, another caller, another service
    assert check.refusal(
        "contacts.ContactWriteService", metadata("writer", "forged")
    ) == NOT_KNOWN.format(caller="writer")
    assert check.refusal(
        "contacts.ContactWriteService", metadata("writer", derive_token(SECRET, "writer")[:-1])
    ) == NOT_KNOWN.format(caller="writer")
    assert check.refusal(
        "contacts.ContactWriteService", metadata("reader", derive_token(SECRET, "writer"))
    ) == NOT_KNOWN.format(caller="reader")
    assert check.refusal("contacts.ContactReadService", good) == NOT_WIRED.format(
        caller="writer", service="contacts.ContactReadService"
    )
    assert check.refusal("contacts.ContactWriteService", good) is None


def test_refused_tokens_are_not_remembered(shipped, monkeypatch):
    import cqrs_flow.security.tokens as auth

    check = check_of(shipped, "store")
    hashed = []
    digest_of = auth.digest
    monkeypatch.setattr(auth, "digest", lambda token: hashed.append(token) or digest_of(token))
    for _ in range(3):
        assert (
            check.refusal("contacts.ContactWriteService", metadata("writer", "forged")) is not None
        )
    assert len(hashed) == 3


# -- outside clients of a reader ----------------------------------------------------------------

OUTSIDE = """\
    clients:
      crm-sync:
        call: [contacts.ContactReader/GetContact, cqrs_flow.Documents]
        token: {env: CRM_SYNC_TOKEN}
"""
READER_LINE = "    plugins: [plugins.contacts.ReverseName]   # answers ReverseName\n"
CRM_TOKEN = "crm-sync-token-0123456789"


@pytest.fixture
def outside(edit, parse):
    """The shipped topology with two outside clients on its reader: one with a token, one with
    a certificate (added to the model: in a file it needs the reader's mutual TLS, and files)."""
    topology = parse(edit((READER_LINE, READER_LINE + OUTSIDE)))
    reader = topology.nodes["reader"]
    reports = GrpcClient(
        "reports", ("contacts.ContactReader/ListContacts",), certificate="reports.example.com"
    )
    clients = frozen_map({**reader.clients, "reports": reports})
    return topology.with_node(dataclasses.replace(reader, clients=clients))


def outside_check(topology) -> CallerCheck:
    env = {ENV_SECRET: SECRET, "CRM_SYNC_TOKEN": CRM_TOKEN}
    return CallerCheck(
        topology.callers_of("reader"),
        credentials_from_env(topology, "reader", env),
        outside_callers(topology, "reader", env),
    )


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


def test_outside_tokens_are_read_at_start_and_kept_as_hashes(outside, tmp_path):
    callers = outside_callers(outside, "reader", {"CRM_SYNC_TOKEN": f"  {CRM_TOKEN}\n"})
    assert callers["crm-sync"].token_digest == digest(CRM_TOKEN)
    assert callers["reports"].token_digest is None
    assert CRM_TOKEN not in repr(callers)
    with pytest.raises(
        NodeError, match=r"nodes\.reader\.clients\.crm-sync\.token .*CRM_SYNC_TOKEN"
    ):
        outside_callers(outside, "reader", {})
    assert outside_callers(outside, "store", {}) == {}


def test_outside_clients_get_no_node_token(outside):
    # Node tokens go to nodes only: an outside client proves itself with its own credential.
    callers = json.loads(launch_environment(outside, "reader", SECRET)[ENV_CALLERS])
    assert set(callers) == {"gateway"}


def test_a_bearer_token_lets_its_client_call_what_it_lists_and_nothing_else(outside):
    check = outside_check(outside)
    crm = bearer(CRM_TOKEN)
    assert check.refusal("contacts.ContactReader", crm, "GetContact") is None
    assert check.refusal("cqrs_flow.Documents", crm, "Find") is None
    assert check.refusal("contacts.ContactReader", crm, "ListContacts") == (
        "client 'crm-sync' may not call contacts.ContactReader/ListContacts: its 'call' in the "
        "topology does not list it"
    )
    for wrong in (bearer("forged"), bearer(CRM_TOKEN[:-1]), (("authorization", CRM_TOKEN),)):
        assert check.refusal("contacts.ContactReader", wrong, "GetContact") == (
            "the bearer token is not one of an outside client this node accepts"
        )
    # lower-case scheme and bytes, as some clients send them
    assert (
        check.refusal(
            "contacts.ContactReader",
            (("authorization", b"bearer " + CRM_TOKEN.encode()),),
            "GetContact",
        )
        is None
    )
    # the nodes' way in is unchanged, and an outside client's name is no node's
    assert (
        check.refusal(
            "contacts.ContactReader",
            metadata("gateway", derive_token(SECRET, "gateway")),
            "GetContact",
        )
        is None
    )
    assert check.refusal(
        "contacts.ContactReader", metadata("crm-sync", CRM_TOKEN), "GetContact"
    ) == NOT_KNOWN.format(caller="crm-sync")


def test_a_matched_bearer_token_is_hashed_once(outside, monkeypatch):
    import cqrs_flow.security.tokens as auth

    check = outside_check(outside)
    hashed = []
    digest_of = auth.digest
    monkeypatch.setattr(auth, "digest", lambda token: hashed.append(token) or digest_of(token))
    for _ in range(3):
        assert check.refusal("contacts.ContactReader", bearer(CRM_TOKEN), "GetContact") is None
    for _ in range(2):
        assert check.refusal("contacts.ContactReader", bearer("forged"), "GetContact") is not None
    assert len(hashed) == 3  # once for the good token, every time for a refused one


def test_a_client_certificate_names_its_client(outside):
    check = outside_check(outside)
    asked = []

    def peer(names: dict) -> object:
        def context() -> dict:
            asked.append(names)
            return names

        return context

    certified = peer({"x509_common_name": [b"reports.example.com"]})
    assert check.refusal("contacts.ContactReader", (), "ListContacts", certified) is None
    san = peer(
        {"x509_common_name": [b"x"], "x509_subject_alternative_name": [b"reports.example.com"]}
    )
    assert check.refusal("contacts.ContactReader", (), "ListContacts", san) is None
    assert check.refusal("contacts.ContactReader", (), "GetContact", certified) == (
        "client 'reports' may not call contacts.ContactReader/GetContact: its 'call' in the "
        "topology does not list it"
    )
    stranger = peer({"x509_common_name": [b"node"]})  # a certificate the CA signed for a node
    assert check.refusal(
        "contacts.ContactReader", (), "ListContacts", stranger
    ) == NOT_KNOWN.format(caller="(anonymous)")
    asked.clear()  # a node's call or a bearer token never asks for the certificate
    check.refusal("contacts.ContactReader", bearer(CRM_TOKEN), "GetContact", certified)
    check.refusal(
        "contacts.ContactReader",
        metadata("gateway", derive_token(SECRET, "gateway")),
        "GetContact",
        certified,
    )
    assert asked == []
