"""auth: per-node tokens derived from one secret, and who may call whom."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass

import grpc
import pytest

from cqrs_flow.auth import (
    ENV_CALLERS,
    ENV_SECRET,
    ENV_TOKEN,
    CallerCheck,
    Credentials,
    credentials_from_env,
    derive_token,
    launch_environment,
    new_secret,
)
from cqrs_flow.errors import NodeError

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
    assert shipped.callers_of("store") == {"contacts.ContactWriteService": {"writer"},
                                           "contacts.ContactReadService": {"reader"}}
    assert shipped.callers_of("reader") == {"contacts.ContactReader": {"gateway"}}
    for node in ("broker", "writer", "gateway"):
        assert shipped.callers_of(node) == {}


def test_callers_of_with_more_writers_and_readers(edit, parse):
    topology = parse(edit(("  gateway:\n", "  writer2:\n    kind: writer\n    broker: broker\n"
                                           "    store: store.write\n    commands: [add_contact]\n"
                                           "  reader2:\n    kind: reader\n    service: contacts.ContactReader\n"
                                           "    listen: 127.0.0.1:50054\n    store: store.read\n"
                                           "  gateway:\n")))
    assert topology.callers_of("store") == {"contacts.ContactWriteService": {"writer", "writer2"},
                                            "contacts.ContactReadService": {"reader", "reader2"}}
    assert topology.callers_of("reader2") == {"contacts.ContactReader": set()}


def test_launch_environment_of_the_store_holds_exactly_writer_and_reader(shipped):
    env = launch_environment(shipped, "store", SECRET)
    assert env[ENV_TOKEN] == derive_token(SECRET, "store")
    assert json.loads(env[ENV_CALLERS]) == {"writer": digest(derive_token(SECRET, "writer")),
                                            "reader": digest(derive_token(SECRET, "reader"))}


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
    assert dict(credentials.callers) == {"writer": digest(derive_token(SECRET, "writer")),
                                         "reader": digest(derive_token(SECRET, "reader"))}
    assert credentials.metadata == (("x-cqrs-flow-node", "store"), ("x-cqrs-flow-token", credentials.token))


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


# -- the server interceptor -------------------------------------------------------------------

@dataclass
class CallDetails:
    method: str
    invocation_metadata: tuple


ALLOWED = object()


def intercept(shipped, node: str, method: str, caller: str | None, token: str | None):
    check = CallerCheck(shipped.callers_of(node), credentials_from_env(shipped, node, {ENV_SECRET: SECRET}))
    metadata = []
    if caller is not None:
        metadata.append(("x-cqrs-flow-node", caller))
    if token is not None:
        metadata.append(("x-cqrs-flow-token", token))

    async def continuation(details):
        return ALLOWED

    return asyncio.run(check.intercept_service(continuation, CallDetails(method, tuple(metadata))))


def test_wired_caller_is_let_through(shipped):
    assert intercept(shipped, "store", "/contacts.ContactWriteService/AddContact",
                     "writer", derive_token(SECRET, "writer")) is ALLOWED
    assert intercept(shipped, "store", "/contacts.ContactReadService/GetContact",
                     "reader", derive_token(SECRET, "reader")) is ALLOWED
    assert intercept(shipped, "reader", "/contacts.ContactReader/GetContact",
                     "gateway", derive_token(SECRET, "gateway")) is ALLOWED


class AbortingContext:
    """Records what a denying handler aborts with."""

    def __init__(self) -> None:
        self.aborted: tuple | None = None

    async def abort(self, code, details):
        self.aborted = (code, details)
        raise RuntimeError("aborted")


def denial(handler) -> tuple:
    assert handler is not ALLOWED
    context = AbortingContext()
    with pytest.raises(RuntimeError, match="aborted"):
        asyncio.run(handler.unary_unary(b"", context))
    return context.aborted


NOT_WIRED = "node '{caller}' may not call {service}: the topology does not wire it there"
NOT_KNOWN = "caller {caller!r} is not a node of this system or its credentials are wrong"


@pytest.mark.parametrize("node, method, caller, token, message", [
    # a writer may not read the store, a reader may not write it
    ("store", "/contacts.ContactReadService/GetContact", "writer", derive_token(SECRET, "writer"),
     NOT_WIRED.format(caller="writer", service="contacts.ContactReadService")),
    ("store", "/contacts.ContactWriteService/AddContact", "reader", derive_token(SECRET, "reader"),
     NOT_WIRED.format(caller="reader", service="contacts.ContactWriteService")),
    # the gateway may not skip the reader: the store does not even know it
    ("store", "/contacts.ContactReadService/GetContact", "gateway", derive_token(SECRET, "gateway"),
     NOT_KNOWN.format(caller="gateway")),
    # wrong token, no token, anonymous
    ("store", "/contacts.ContactWriteService/AddContact", "writer", derive_token(SECRET, "reader"),
     NOT_KNOWN.format(caller="writer")),
    ("store", "/contacts.ContactWriteService/AddContact", "writer", None, NOT_KNOWN.format(caller="writer")),
    ("reader", "/contacts.ContactReader/GetContact", None, None, NOT_KNOWN.format(caller="(anonymous)")),
])
def test_other_callers_are_denied(shipped, node, method, caller, token, message):
    handler = intercept(shipped, node, method, caller, token)
    assert denial(handler) == (grpc.StatusCode.PERMISSION_DENIED, message)


def test_health_checks_need_no_credentials(shipped):
    assert intercept(shipped, "store", "/grpc.health.v1.Health/Check", None, None) is ALLOWED
