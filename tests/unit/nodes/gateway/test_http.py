"""The gateway's HTTP side: request ids, refusals answered by the middleware with their
status and code, failures answered without internals, CORS, the WebSocket origin check, and
no operation from a body a browser may send cross-site (not JSON) or from a GET."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tartiflette import Resolver, create_engine

from cqrs_flow.nodes.gateway.cost import Costs
from cqrs_flow.nodes.gateway.http import (
    GRAPHQL_RESPONSE,
    GraphQLHttp,
    answer_type,
    get_refusal,
    own_hosts,
    wants_html,
)
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


def get(path: str, headers: dict[str, str] | None = None):
    async def send(client):
        return await answer(await client.get(path, headers=headers or {}))

    return send


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


def test_get_answers_the_playground_only_to_a_client_asking_for_html(shipped):
    def get(accept: str | None):
        async def send(client):
            headers = {"Accept": accept} if accept else {}
            response = await client.get("/", headers=headers)
            return response.status, await response.text(), response.headers["Content-Type"]

        return send

    node = shipped.nodes["gateway"]
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = "<html>page</html>"
    assert call(node, FakeEngine(), get(browser), playground=page)[:2] == (200, page)
    for accept in (None, "application/json", "application/graphql-response+json"):
        status, text, _ = call(node, FakeEngine(), get(accept), playground=page)
        assert status == 400, accept
        assert '"query" parameter' in json.loads(text)["errors"][0]["message"]
    status, text, _ = call(node, FakeEngine(), get(browser))  # playground off
    assert status == 400 and json.loads(text)["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


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
    "path",
    [
        f"/graphql?query={MUTATION}",
        f"/?query={MUTATION}",
        '/graphql?query=query Q { hello } mutation M { addNote(text: "x") { id } }&operationName=M',
    ],
)
def test_a_get_with_a_mutation_runs_nothing_and_is_refused_405_allow_post(
    shipped, real, playground, path
):
    status, result, headers = real.call(get(path), playground=playground)
    assert status == 405 and headers["Allow"] == "POST" and real.engine.ran == []
    assert result["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in result["errors"][0]["message"]


def test_a_get_whose_operation_is_not_decided_runs_nothing(shipped):
    """Without the parsed document (no schema to read it with) a GET runs nothing."""
    engine = Recording()
    status, _, headers = call(shipped.nodes["gateway"], engine, get("/graphql?query={ a }"))
    assert status == 405 and headers["Allow"] == "POST" and engine.ran == []


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


# -- GraphQL over HTTP as clients speak it, on a real engine whose gate reads the document ----

SDL = """
type Note { id: String  text: String }
type Query { hello: String  boom: String  echo(text: String): String }
type Mutation { addNote(text: String!): Note }
type Subscription { ticks: Int }
"""
SCHEMA = "test-http-over-http"


class RealGateway:
    """A tartiflette engine (recording what it is asked to run) behind a gate with costs."""

    def __init__(self, node, tartiflette) -> None:
        self.node = node
        self.tartiflette = tartiflette
        self.ran: list[str] = []
        self.engine = self

    async def execute(self, query: str, **kwargs: Any) -> dict[str, Any]:
        self.ran.append(query)
        return await self.tartiflette.execute(query, **kwargs)

    def call(self, send, playground: str | None = None):
        self.ran.clear()
        gate = RequestGate(self.node.limits, costs=Costs.of(self.tartiflette, 100))
        http = GraphQLHttp(self.node, self, gate, playground, lambda: True, logging.getLogger())

        async def run():
            async with TestClient(TestServer(http.app())) as client:
                return await send(client)

        return asyncio.run(run())


@pytest.fixture(scope="module")
def tartiflette_engine():
    @Resolver("Query.boom", schema_name=SCHEMA)
    async def boom(parent, args, ctx, info):
        raise ValueError("boom")

    @Resolver("Query.echo", schema_name=SCHEMA)
    async def echo(parent, args, ctx, info):
        return args.get("text")

    return asyncio.run(create_engine(SDL, schema_name=SCHEMA))


@pytest.fixture
def real(shipped, tartiflette_engine):
    return RealGateway(shipped.nodes["gateway"], tartiflette_engine)


def test_a_get_runs_a_query_as_graphql_over_http_clients_send_it(real):
    """urql (GET within the URL's limit), Apollo's useGETForQueries, graphql-request's GET."""
    status, result, headers = real.call(get("/graphql?query={ hello }"))
    assert (status, result) == (200, {"data": {"hello": None}})
    assert headers["Content-Type"].startswith("application/json")
    path = (
        "/graphql?query=query Echo($t: String) { echo(text: $t) } mutation M { addNote(text: "
        '"x") { id } }&operationName=Echo&variables={"t": "hi"}'
    )
    status, result, _ = real.call(get(path))
    assert (status, result) == (200, {"data": {"echo": "hi"}})
    status, result, _ = real.call(get("/graphql?query={ hello }&variables=[1"))
    assert status == 400 and "not valid JSON" in result["errors"][0]["message"]


def test_a_get_query_meets_the_same_limits_as_a_post(shipped, real):
    deep = "{ hello " + "".join("{ hello " for _ in range(50)) + "}" * 51 + " }"
    status, result, _ = real.call(get(f"/graphql?query={deep}"))
    assert status == 400 and result["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    assert real.ran == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_subscription_over_http_is_refused_and_never_answered_null(real, method):
    text = "subscription { ticks }"
    send = (
        get(f"/graphql?query={text}")
        if method == "GET"
        else post(json.dumps({"query": text}).encode())
    )
    status, result, _ = real.call(send)
    assert status == 400 and real.ran == []
    assert result["errors"][0]["extensions"]["code"] == "SUBSCRIPTION_OVER_HTTP"
    assert "ws://" in result["errors"][0]["message"]


def test_graphql_response_json_gets_its_media_type_and_status_codes(real):
    accept = {"Accept": "application/graphql-response+json,application/json;q=0.9"}  # Apollo's
    invalid = json.dumps({"query": "{ nosuch }"}).encode()
    status, result, headers = real.call(post(invalid, accept))
    assert status == 400 and headers["Content-Type"].startswith(GRAPHQL_RESPONSE)
    assert "data" not in result and result["errors"]
    status, result, _ = real.call(post(b"{not json", accept))  # a refusal too
    assert status == 400 and "data" not in result
    field_error = json.dumps({"query": "{ hello boom }"}).encode()
    status, result, headers = real.call(post(field_error, accept))
    assert status == 200 and headers["Content-Type"].startswith(GRAPHQL_RESPONSE)
    assert result["data"] == {"hello": None, "boom": None} and result["errors"]
    # application/json, as before: 200 with "data": null
    status, result, headers = real.call(post(invalid))
    assert status == 200 and result["data"] is None and result["errors"]
    assert headers["Content-Type"].startswith("application/json")


# What Apollo Client's PersistedQueryLink sends first: the hash, no text.
APOLLO_HELLO = "query Hello {\n  hello\n}"
APQ = {
    "operationName": "Hello",
    "variables": {},
    "extensions": {
        "persistedQuery": {
            "version": 1,
            "sha256Hash": hashlib.sha256(APOLLO_HELLO.encode()).hexdigest(),
        }
    },
}


def test_an_automatic_persisted_query_gets_the_error_apollo_falls_back_on(real):
    status, result, _ = real.call(post(json.dumps(APQ).encode()))
    assert status == 200 and real.ran == []
    (error,) = result["errors"]
    assert error["message"] == "PersistedQueryNotSupported"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_SUPPORTED"
    extensions = quote(json.dumps(APQ["extensions"]))  # useGETForHashedQueries
    status, result, _ = real.call(get(f"/graphql?operationName=Hello&extensions={extensions}"))
    assert status == 200 and result["errors"][0]["message"] == "PersistedQueryNotSupported"
    # Apollo's retry: the hash and the text; the text runs
    status, result, _ = real.call(post(json.dumps({**APQ, "query": APOLLO_HELLO}).encode()))
    assert (status, result) == (200, {"data": {"hello": None}})


def test_a_batch_is_refused_with_a_code_batching_clients_understand(real):
    batch = [{"query": "{ hello }"}, {"query": "{ hello }"}]
    status, result, _ = real.call(post(json.dumps(batch).encode()))
    assert status == 400 and real.ran == []
    assert result["errors"][0]["extensions"]["code"] == "BATCHING_NOT_SUPPORTED"
    assert "per operation" in result["errors"][0]["message"]


@pytest.mark.parametrize(
    "method, kind, decided, status",
    [
        ("GET", "query", True, None),
        ("GET", None, True, None),  # the engine answers what is wrong, running nothing
        ("GET", "mutation", True, 405),
        ("GET", None, False, 405),
        ("GET", "subscription", True, 400),
        ("POST", "query", True, None),
        ("POST", "mutation", True, None),
        ("POST", None, False, None),
        ("POST", "subscription", True, 400),
    ],
)
def test_what_may_run_over_which_method(method, kind, decided, status):
    refusal = get_refusal(method, kind, decided)
    assert (refusal.status if refusal else None) == status


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/graphql-response+json", GRAPHQL_RESPONSE),
        ("application/graphql-response+json, application/json;q=0.9", GRAPHQL_RESPONSE),
        ("application/json, application/graphql-response+json;q=0.5", "application/json"),
        ("application/graphql-response+json;q=0", "application/json"),
    ],
)
def test_the_answer_type_follows_accept(accept, expected):
    assert answer_type(accept) == expected


def test_html_only_when_asked_for_by_name():
    assert wants_html("text/html,application/xhtml+xml,*/*;q=0.8")
    assert not wants_html(None) and not wants_html("*/*") and not wants_html("text/html;q=0")
