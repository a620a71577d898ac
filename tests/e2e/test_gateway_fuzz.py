"""Property-based tests of a real gateway's HTTP endpoint: whatever arrives, the answer is a
GraphQL answer (never a 500, a stack trace or a hang) and the gateway stays up.

Budgets come from the hypothesis profiles in tests/conftest.py (`ci` by default).
"""

from __future__ import annotations

import asyncio
import http.client
import json

import aiohttp
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from system import System, prepare

# Words of the contacts schema and of GraphQL, so that many inputs get past the parser.
_WORDS = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    "...",
    "on",
    "@include(if: $v)",
    "@skip(if: true)",
    "$v",
    "=",
    "!",
    "query",
    "mutation",
    "subscription",
    "fragment",
    "F",
    "on Query",
    "on Contact",
    "listContacts",
    "contact",
    "addContact",
    "updateContact",
    "deleteContact",
    "commandStatus",
    "id",
    "name",
    "last_updated",
    "status",
    "message",
    "command_id",
    "count:",
    "id:",
    "name:",
    "1",
    "-1",
    "0",
    "2147483648",
    "99999999999999999999",
    "1.5",
    "1e400",
    '"x"',
    '"\\u0000"',
    '"\\ud800"',
    '"""b"""',
    '"',
    "#c\n",
    "__schema",
    '__type(name: "Contact")',
    "__typename",
    "types",
    "a:",
    "null",
    "true",
    "[1, 2]",
    "{id: 1}",
    "String",
    "Int!",
    "\\",
    "\x00",
    "é",
    "\U0001f600",
]
GRAPHQLISH = st.lists(st.sampled_from(_WORDS), max_size=120).map(" ".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)

_LEAKS = (
    "Traceback",
    'File "',
    "site-packages",
    "/cqrs_flow/",
    "grpc",
    "StatusCode",
    "AioRpcError",
    "_InactiveRpcError",
    "Exception deserializing",
    "debug_error_string",
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> System:
    """The contacts system with a small body limit, so that the limit is met often."""
    system = System(
        prepare(
            "contacts_fast.yaml",
            tmp_path_factory.mktemp("fuzz"),
            **{
                "nodes.gateway.limits": {
                    "body_bytes": 2048,
                    "string_length": 100,
                    "list_length": 20,
                }
            },
        )
    ).start()
    yield system
    system.stop()


def send(
    system: System, body: bytes, content_type: str, method: str = "POST"
) -> tuple[int, bytes, dict]:
    address = system.gateway.listen
    connection = http.client.HTTPConnection(address.connect_host, address.port, timeout=15)
    try:
        connection.request(method, "/graphql", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def assert_graphql_answer(status: int, body: bytes, headers: dict) -> None:
    assert status in (200, 400, 405, 413, 415, 503), (status, body[:300])
    answer = json.loads(body)  # always JSON
    assert isinstance(answer, dict) and ("data" in answer or "errors" in answer), answer
    assert headers.get("X-Request-Id")
    for error in answer.get("errors") or ():
        assert error["extensions"]["request_id"] == headers["X-Request-Id"]
    text = body.decode("utf-8", "replace")
    for leak in _LEAKS:
        assert leak not in text, (leak, text[:500])


def _requests() -> st.SearchStrategy[tuple[bytes, str]]:
    documents = st.fixed_dictionaries(
        {"query": st.one_of(GRAPHQLISH, st.text(max_size=300))},
        optional={
            "variables": st.one_of(JSON, st.dictionaries(st.just("v"), JSON, max_size=1)),
            "operationName": st.one_of(st.none(), st.text(max_size=10), st.integers()),
        },
    )
    as_json = documents.map(lambda d: (json.dumps(d).encode(), "application/json"))
    raw = st.tuples(
        st.binary(max_size=3000),
        st.sampled_from(
            [
                "application/json",
                "application/graphql",
                "text/plain",
                "application/graphql; charset=nope",
                "application/json; charset=utf-16",
                "multipart/form-data; boundary=x",
            ]
        ),
    )
    return st.one_of(as_json, raw)


@given(request=_requests())
@example(request=(b"[" * 1000 + b"]" * 1000, "application/json"))
@example(request=(json.dumps({"query": "{" * 10_000}).encode(), "application/json"))
@example(request=(b"\xff\xfe{", "application/graphql"))
@example(request=(b"{ __typename }", "application/graphql; charset=nope"))
@example(
    request=(
        json.dumps({"query": "{ listContacts(count: 2147483648) { id } }"}).encode(),
        "application/json",
    )
)
@example(
    request=(
        json.dumps(
            {
                "query": "query($v: Int) { listContacts(count: $v) { id } }",
                "variables": {"v": 1e400},
            }
        )
        .encode()
        .replace(b"Infinity", b"1e400"),
        "application/json",
    )
)
def test_any_request_gets_a_graphql_answer(gateway, request: tuple[bytes, str]) -> None:
    body, content_type = request
    assert_graphql_answer(*send(gateway, body, content_type))


_WS_TYPES = [
    "connection_init",
    "subscribe",
    "complete",
    "ping",
    "pong",
    "next",
    "error",
    "other",
    None,
    5,
]


def _ws_messages() -> st.SearchStrategy[list[str]]:
    payload = st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"query": st.one_of(GRAPHQLISH, st.text(max_size=100))},
            optional={"variables": JSON, "operationName": JSON},
        ),
    )
    message = st.fixed_dictionaries(
        {"type": st.sampled_from(_WS_TYPES)},
        optional={"id": st.one_of(st.text(max_size=5), st.integers()), "payload": payload},
    )
    text = st.one_of(
        message.map(json.dumps),
        st.text(max_size=50),
        st.just("[" * 5000 + "]" * 5000),
        st.just(json.dumps({"type": "ping", "pad": "x" * 3000})),
    )
    return st.lists(text, max_size=6)


@given(messages=_ws_messages())
@example(messages=["[" * 5000 + "]" * 5000])
@example(messages=[json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{" * 5000}})])
@example(
    messages=[
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": "{ __typename }", "variables": [1]},
            }
        )
    ]
)
def test_any_websocket_conversation_ends_in_protocol_terms(gateway, messages: list[str]) -> None:
    """Whatever a client sends, it gets protocol messages or a close with the protocol's codes
    (44xx) or 1009 (too big); never an internal error (1011), a failure in the gateway's log or a
    hang. (A client still sending when the server closes may see 1006 instead: the close frame
    races its writes. The gateway's log says whether the server failed.)"""

    async def converse(messages: list[str]) -> None:
        url = f"ws://{gateway.gateway.listen.target}/graphql"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url, protocols=("graphql-transport-ws",)) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
                try:
                    for text in messages + [json.dumps({"type": "ping"})]:
                        await ws.send_str(text)
                except (aiohttp.ClientConnectionResetError, ConnectionResetError):
                    pass  # closed by the server meanwhile: see the close code below
                while True:
                    received = await ws.receive(timeout=15)
                    if received.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        assert ws.close_code in (4400, 4401, 4409, 4429, 1009, 1006), ws.close_code
                        return
                    answer = json.loads(received.data)
                    for leak in _LEAKS:
                        assert leak not in received.data, (leak, received.data[:300])
                    if answer == {"type": "pong"}:
                        return

    asyncio.run(converse(messages))


def test_after_all_that_the_gateway_is_up_and_logged_no_failure(gateway):
    """Runs after the property tests of this module (pytest keeps the order of a file)."""
    status, body, _ = send(gateway, b'{"query": "{ __typename }"}', "application/json")
    assert status == 200 and json.loads(body) == {"data": {"__typename": "Query"}}
    assert "Error handling request" not in gateway.output() and "Traceback" not in gateway.output()
