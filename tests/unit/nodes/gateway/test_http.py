"""The gateway's HTTP side: request ids, refusals answered by the middleware with their
status and code, failures answered without internals, CORS, the WebSocket origin check, and
no operation from a body a browser may send cross-site (not JSON) or from a GET."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cqrs_flow.nodes.gateway.http import GraphQLHttp, own_hosts
from cqrs_flow.nodes.gateway.limits import RequestGate
from cqrs_flow.topology.model import Address


class FakeEngine:
    """Answers every operation with `result`, or raises `failure`."""

    def __init__(self, result: Any = None, failure: Exception | None = None) -> None:
        self.result = result or {"data": {"__typename": "Query"}}
        self.failure = failure

    async def execute(self, query: str, **kwargs: Any) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        return self.result


def call(node, engine, send, playground: str | None = None):
    """Run `send(client)` against the gateway's HTTP app for `node`."""
    http = GraphQLHttp(
        node, engine, RequestGate(node.limits), playground, lambda: True, logging.getLogger()
    )

    async def run():
        async with TestClient(TestServer(http.app())) as client:
            return await send(client)

    return asyncio.run(run())


async def answer(response) -> tuple[int, dict[str, Any], Any]:
    return response.status, await response.json(), response.headers


def post(body: bytes, headers: dict[str, str] | None = None):
    headers = {"Content-Type": "application/json", **(headers or {})}

    async def send(client):
        return await answer(await client.post("/graphql", data=body, headers=headers))

    return send


def test_an_answer_carries_its_request_id_a_client_may_choose(shipped):
    node = shipped.nodes["gateway"]
    body = json.dumps({"query": "{ __typename }"}).encode()
    status, result, headers = call(node, FakeEngine(), post(body, {"X-Request-Id": "mine-1"}))
    assert status == 200 and result == {"data": {"__typename": "Query"}}
    assert headers["X-Request-Id"] == "mine-1"
    _, _, headers = call(node, FakeEngine(), post(body, {"X-Request-Id": "not mine"}))
    assert len(headers["X-Request-Id"]) == 16


def test_a_malformed_request_is_refused_with_400_and_a_code(shipped):
    status, result, headers = call(shipped.nodes["gateway"], FakeEngine(), post(b"{not json"))
    assert status == 400
    assert result["errors"] == [
        {
            "message": "request body is not valid JSON",
            "extensions": {"code": "BAD_REQUEST", "request_id": headers["X-Request-Id"]},
        }
    ]


def test_a_body_over_limits_body_bytes_is_refused_with_413(shipped):
    node = shipped.nodes["gateway"]
    node = dataclasses.replace(node, limits=dataclasses.replace(node.limits, body_bytes=100))
    status, result, _ = call(node, FakeEngine(), post(b'{"query": "' + b"x" * 200 + b'"}'))
    assert status == 413 and "limits.body_bytes" in result["errors"][0]["message"]
    assert result["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


def test_an_answer_over_limits_response_bytes_is_replaced_by_an_error(shipped):
    node = shipped.nodes["gateway"]
    node = dataclasses.replace(node, limits=dataclasses.replace(node.limits, response_bytes=50))
    big = FakeEngine({"data": {"text": "x" * 100}})
    status, result, _ = call(node, big, post(b'{"query": "{ text }"}'))
    assert status == 400 and "limits.response_bytes" in result["errors"][0]["message"]
    assert result["errors"][0]["extensions"]["code"] == "RESPONSE_TOO_LARGE"


def test_a_failure_is_answered_500_with_the_request_id_only(shipped):
    broken = FakeEngine(failure=RuntimeError("internal detail"))
    status, result, headers = call(shipped.nodes["gateway"], broken, post(b'{"query": "{ a }"}'))
    message = result["errors"][0]["message"]
    assert status == 500 and "internal detail" not in message
    assert headers["X-Request-Id"] in message
    assert result["errors"][0]["extensions"]["code"] == "INTERNAL"


def test_get_answers_the_playground_or_asks_for_post(shipped):
    async def get(client):
        response = await client.get("/")
        return response.status, await response.text(), response.headers.get("Allow")

    node = shipped.nodes["gateway"]
    assert call(node, FakeEngine(), get, playground="<html>page</html>") == (
        200,
        "<html>page</html>",
        None,
    )
    status, text, allow = call(node, FakeEngine(), get)
    assert status == 405 and allow == "POST"
    assert json.loads(text)["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


class Recording(FakeEngine):
    """A FakeEngine that remembers the operations it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[str] = []

    async def execute(self, query: str, **kwargs: Any) -> dict[str, Any]:
        self.ran.append(query)
        return await super().execute(query, **kwargs)


MUTATION = 'mutation { addNote(text: "csrf") { id } }'


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what fetch(no-cors), sendBeacon and a text/plain form send
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",  # not a media type of GraphQL over HTTP: JSON only
        "application/graphql-response+json",  # a type of answers, not of requests
        "application/jsonp",
        "application/json, text/plain",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        None,  # aiohttp's test client sends application/octet-stream for bytes
    ],
)
def test_a_post_that_is_not_json_in_utf8_is_refused_415_and_runs_nothing(shipped, content_type):
    engine = Recording()

    async def send(client):
        headers = {} if content_type is None else {"Content-Type": content_type}
        body = json.dumps({"query": MUTATION}).encode()
        return await answer(await client.post("/graphql", data=body, headers=headers))

    status, result, headers = call(shipped.nodes["gateway"], engine, send)
    assert status == 415 and engine.ran == [], (status, result)
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "application/json" in error["message"] or "UTF-8" in error["message"]
    assert headers["Server"] == "cqrs-flow"


def test_a_post_without_a_content_type_is_refused_415(shipped):
    async def send(client):
        # aiohttp's client adds a Content-Type to a body: skip_auto_headers does not apply to it
        # when data is bytes, so send the request line by hand
        reader, writer = await asyncio.open_connection(client.host, client.port)
        body = json.dumps({"query": MUTATION}).encode()
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = await reader.read()
        writer.close()
        return received

    engine = Recording()
    received = call(shipped.nodes["gateway"], engine, send)
    assert received.startswith(b"HTTP/1.1 415 "), received[:200]
    assert b"no Content-Type" in received and engine.ran == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
def test_a_json_post_runs(shipped, content_type):
    engine = Recording()
    status, result, _ = call(
        shipped.nodes["gateway"],
        engine,
        post(
            json.dumps({"query": "{ __typename }"}).encode(),
            # a GraphQL-over-HTTP client asks for the newer answer type first
            {
                "Content-Type": content_type,
                "Accept": "application/graphql-response+json, application/json",
            },
        ),
    )
    assert status == 200 and engine.ran == ["{ __typename }"], result


@pytest.mark.parametrize("playground", [None, "<html>page</html>"])
@pytest.mark.parametrize(
    "path", [f"/graphql?query={MUTATION}", f"/?query={MUTATION}", "/graphql?query={ a }"]
)
def test_a_get_with_a_query_runs_nothing_and_is_refused_405_allow_post(shipped, playground, path):
    engine = Recording()

    async def get(client):
        return await answer(await client.get(path))

    status, result, headers = call(shipped.nodes["gateway"], engine, get, playground=playground)
    assert status == 405 and headers["Allow"] == "POST" and engine.ran == []
    assert result["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in result["errors"][0]["message"]


def test_a_websocket_from_an_origin_not_listed_is_refused_with_403(shipped):
    async def upgrade(client):
        return await answer(
            await client.get(
                "/graphql",
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Origin": "https://elsewhere.example",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            )
        )

    status, result, _ = call(shipped.nodes["gateway"], FakeEngine(), upgrade)
    assert status == 403 and "cors.origins" in result["errors"][0]["message"]
    assert result["errors"][0]["extensions"]["code"] == "ORIGIN_REFUSED"


def test_an_allowed_origin_gets_cors_headers_and_its_preflight_answered(shipped):
    node = dataclasses.replace(shipped.nodes["gateway"], cors_origins=("https://app.example",))

    async def preflight(client):
        origin = {"Origin": "https://app.example"}
        options = await client.options("/graphql", headers=origin)
        posted = await client.post("/graphql", json={"query": "{ a }"}, headers=origin)
        return options.status, dict(options.headers), dict(posted.headers)

    status, options, posted = call(node, FakeEngine(), preflight)
    assert status == 204 and "POST" in options["Access-Control-Allow-Methods"]
    assert posted["Access-Control-Allow-Origin"] == "https://app.example"
    assert posted["Access-Control-Expose-Headers"] == "X-Request-Id"


def test_a_host_the_gateway_does_not_have_is_refused_with_421(shipped):
    node = dataclasses.replace(shipped.nodes["gateway"], hosts=("api.example.com",))

    def status_for(host: str) -> int:
        return call(node, FakeEngine(), post(b'{"query": "{ a }"}', {"Host": host}))[0]

    for host in ("evil.example", "evil.example:8080", "localhost.evil.example", "api.example"):
        assert status_for(host) == 421, host
    for host in ("127.0.0.1:8080", "localhost", "LocalHost.:1", "[::1]:8080", "192.0.2.1"):
        assert status_for(host) == 200, host
    for host in ("api.example.com", "API.Example.Com:443", "api.example.com."):
        assert status_for(host) == 200, host


@pytest.mark.parametrize(
    "listen, expected",
    [
        (Address("127.0.0.1", 8080), {"localhost"}),
        (Address("0.0.0.0", 8080), {"localhost"}),  # IP addresses are always served
        (Address("gateway.internal", 8080), {"localhost", "gateway.internal"}),
    ],
)
def test_the_hosts_a_gateway_answers_for(shipped, listen, expected):
    node = dataclasses.replace(shipped.nodes["gateway"], listen=listen, hosts=("Api.Example.",))
    assert own_hosts(node) == {*expected, "api.example"}
