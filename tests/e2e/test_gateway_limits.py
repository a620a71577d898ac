"""The gateway under hostile input: limits, request ids, introspection switched off, CORS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import urllib.request
from functools import partial

import aiohttp
import pytest
from system import System, prepare, wait_until
from test_up_lifecycle import node_pid

PROTOCOL = "graphql-transport-ws"
APP = "https://app.example.com"
LIMITS = {
    "body_bytes": 4096,
    "tokens": 300,
    "depth": 4,
    "fields": 20,
    "aliases": 3,
    "list_count": 50,
    "list_length": 5,
    "string_length": 40,
    "in_flight": 1,
    "websockets": 1,
}


@pytest.fixture(scope="module")
def locked(tmp_path_factory) -> System:
    """The contacts system with small limits, introspection off and one allowed web origin."""
    system = System(
        prepare(
            "contacts_fast.yaml",
            tmp_path_factory.mktemp("locked"),
            **{
                "nodes.gateway.limits": LIMITS,
                "nodes.gateway.introspection": False,
                "nodes.gateway.playground": False,
                "nodes.gateway.cors": {"origins": [APP]},
                "nodes.gateway.reader_timeout": "20s",
            },
        )
    ).start()
    yield system
    system.stop()


def post(
    system: System, body: bytes | None, headers: dict[str, str] | None = None, method: str = "POST"
):
    """Status, JSON answer (None if not JSON: aiohttp's own 404 and 405 pages) and headers."""
    request = urllib.request.Request(
        f"http://{system.gateway.listen.target}/graphql",
        data=body,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _json(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read()), error.headers


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


def query(system: System, text: str, variables: dict | None = None):
    return post(system, json.dumps({"query": text, "variables": variables}).encode())


@pytest.mark.parametrize(
    "text, variables, limit",
    [
        ("{ a { b { c { d { e } } } } }", None, "limits.depth"),
        (
            "query { ...A } fragment A on Query { listContacts(count: 1) { ...B } } "
            "fragment B on Contact { id name last_updated }",
            None,
            None,
        ),  # within the limits: valid
        (" ".join(["{"] + [f"f{i}: __typename" for i in range(4)] + ["}"]), None, "limits.aliases"),
        ("{ " + "__typename " * 21 + "}", None, "limits.fields"),
        (
            "{ " + "__typename " * 2 + "#" + " x" * 400 + "\n" + "}",
            None,
            None,
        ),  # comments are not tokens
        ("{ __typename(" + "a: 1 " * 100 + ") }", None, "limits.tokens"),
        ('{ contact(id: "' + "x" * 41 + '") { id } }', None, "limits.string_length"),
        (
            "query($id: String!) { contact(id: $id) { id } }",
            {"id": "x" * 41},
            "limits.string_length",
        ),
        ("query($v: [Int]) { __typename }", {"v": list(range(6))}, "limits.list_length"),
        ("{ listContacts(count: 51) { id } }", None, "limits.list_count"),
        ("{ a(x: " + "[" * 12 + "]" * 12 + ") }", None, "limits.depth"),
    ],
)
def test_requests_over_a_limit_get_a_graphql_error_naming_it(locked, text, variables, limit):
    status, answer, headers = query(locked, text, variables)
    if limit is None:
        assert status == 200 and "errors" not in answer, answer
        return
    message = answer["errors"][0]["message"]
    assert limit in message, answer
    assert answer["errors"][0]["extensions"]["request_id"] == headers["X-Request-Id"]
    assert locked.data("{ __typename }") == {"__typename": "Query"}


def test_an_oversized_body_is_refused_with_413(locked):
    status, answer, _ = post(
        locked, json.dumps({"query": "{ __typename }", "pad": "x" * 5000}).encode()
    )
    assert status == 413 and "limits.body_bytes" in answer["errors"][0]["message"]


def test_every_answer_carries_a_request_id_and_a_client_may_choose_it(locked):
    _, _, headers = query(locked, "{ __typename }")
    assert len(headers["X-Request-Id"]) == 16
    status, answer, headers = post(locked, b"{not json", {"X-Request-Id": "my-request-7"})
    assert status == 400 and headers["X-Request-Id"] == "my-request-7"
    assert answer["errors"][0]["extensions"] == {
        "code": "BAD_REQUEST",
        "request_id": "my-request-7",
    }
    _, _, headers = post(locked, b"", {"X-Request-Id": "bad id with spaces " * 5})
    assert headers["X-Request-Id"] != "bad id with spaces " * 5


def test_introspection_and_playground_can_be_switched_off(locked, contacts):
    for text in (
        "{ __schema { queryType { name } } }",
        '{ __type(name: "Contact") { name } }',
        "query { ...S } fragment S on Query { __schema { types { name } } }",
        # behind an alias, in a fragment, or both (audit M1)
        "{ s: __schema { types { name } } }",
        '{ t: __type(name: "Contact") { fields { name } } }',
        "query { ...S } fragment S on Query { s: __schema { queryType { name } } }",
        '{ ... on Query { t : __type(name: "Contact") { name } } }',
    ):
        _, answer, _ = query(locked, text)
        assert answer["errors"][0]["message"] == "introspection is switched off on this gateway", (
            text
        )
    assert locked.data("{ t: __typename }") == {"t": "Query"}  # not introspection
    assert contacts.data("{ __schema { queryType { name } } }")  # on by default
    status, answer, _ = post(locked, None, {"Accept": "text/html"}, method="GET")
    assert status == 400  # no playground: a GET needs a query


def test_cors_answers_only_the_listed_origins(locked, contacts):
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST"}
    status, _, headers = post(locked, None, preflight, method="OPTIONS")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == APP
    _, _, headers = post(locked, json.dumps({"query": "{ __typename }"}).encode(), {"Origin": APP})
    assert headers["Access-Control-Allow-Origin"] == APP
    _, _, headers = post(
        locked, json.dumps({"query": "{ __typename }"}).encode(), {"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in headers
    # Off unless the topology lists origins.
    status, _, headers = post(contacts, None, {**preflight}, method="OPTIONS")
    assert status == 405 and "Access-Control-Allow-Origin" not in headers


def test_websocket_messages_meet_the_same_limits_and_foreign_origins_are_refused(locked):
    async def run():
        url = f"ws://{locked.gateway.listen.target}/graphql"
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(
                    url, protocols=(PROTOCOL,), headers={"Origin": "https://evil.example"}
                )
            assert refused.value.status == 403
            async with http.ws_connect(url, protocols=(PROTOCOL,), headers={"Origin": APP}) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
                await ws.send_json(
                    {
                        "id": "deep",
                        "type": "subscribe",
                        "payload": {"query": "{ a { b { c { d { e } } } } }"},
                    }
                )
                error = await ws.receive_json(timeout=10)
                assert error["type"] == "error" and "limits.depth" in error["payload"][0]["message"]
                assert (
                    error["payload"][0]["extensions"]["request_id"]
                    == ws._response.headers["X-Request-Id"]
                )
                await ws.send_str(json.dumps({"type": "ping", "pad": "x" * 5000}))
                closed = await ws.receive(timeout=10)
                assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == 1009  # message too big

    asyncio.run(run())


def test_beyond_in_flight_requests_are_refused_at_once(locked):
    """With limits.in_flight 1 and the reader stopped, a second query is answered 503 at once."""

    def hold(first: list) -> None:
        first.append(query(locked, "{ listContacts(count: 1) { id } }"))

    def answered_or_refused(first: list):
        """`first` once the held query is answered, else a 503 answer to another query, if so."""
        return first or ((r := query(locked, "{ __typename }"))[0] == 503 and r)

    reader = node_pid(locked, "reader")
    os.kill(reader, signal.SIGSTOP)
    try:
        while True:
            first: list = []
            waiting = threading.Thread(target=hold, args=(first,))
            waiting.start()
            refused = wait_until(partial(answered_or_refused, first))
            if refused is not first:
                break
            waiting.join()  # the poll took the one place before this query did: again
        status, answer, _ = refused
        assert status == 503 and "limits.in_flight" in answer["errors"][0]["message"]
        assert answer["errors"][0]["extensions"]["code"] == "BUSY"
    finally:
        os.kill(reader, signal.SIGCONT)
    waiting.join(30)
    assert first and first[0][0] == 200
    assert wait_until(lambda: query(locked, "{ __typename }")[0] == 200)


def test_beyond_websockets_connections_are_refused_at_once(locked):
    """With limits.websockets 1, a second WebSocket is answered 503 while the first is open."""

    async def run():
        url = f"ws://{locked.gateway.listen.target}/graphql"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url, protocols=(PROTOCOL,), headers={"Origin": APP}) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(url, protocols=(PROTOCOL,), headers={"Origin": APP})
                assert refused.value.status == 503
            for _ in range(
                50
            ):  # once the server has seen the first one closed, there is room again
                try:
                    ws = await http.ws_connect(url, protocols=(PROTOCOL,), headers={"Origin": APP})
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("a WebSocket was still refused after the first one closed")
            async with ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}

    asyncio.run(run())
