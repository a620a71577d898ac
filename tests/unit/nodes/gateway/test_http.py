"""The gateway's HTTP side: request ids, refusals answered by the middleware with their
status and code, failures answered without internals, CORS, the WebSocket origin check."""

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
    async def send(client):
        return await answer(await client.post("/graphql", data=body, headers=headers or {}))

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
        return response.status, await response.text()

    node = shipped.nodes["gateway"]
    assert call(node, FakeEngine(), get, playground="<html>page</html>") == (
        200,
        "<html>page</html>",
    )
    status, text = call(node, FakeEngine(), get)
    assert status == 405 and json.loads(text)["errors"][0]["extensions"]["code"] == (
        "METHOD_NOT_ALLOWED"
    )


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
        posted = await client.post("/graphql", data=b'{"query": "{ a }"}', headers=origin)
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
