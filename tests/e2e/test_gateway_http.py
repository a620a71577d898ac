"""The gateway's HTTP surface: GraphQL at / and /graphql, the playground, and bad requests."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("path", ["/", "/graphql"])
def test_graphql_is_served_at_root_and_graphql(contacts, path):
    status, body, _ = contacts.http(path, json.dumps({"query": "{ __typename }"}).encode())
    assert status == 200 and json.loads(body) == {"data": {"__typename": "Query"}}


def test_playground_page_and_its_assets_are_served_locally(contacts):
    status, body, headers = contacts.http("/", method="GET", headers={"Accept": "text/html"})
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "listContacts(count: 10)" in page  # the example query comes from the SDL
    assert "//unpkg" not in page and "//cdn" not in page
    for asset in (
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ):
        assert f"/playground/static/{asset}" in page
        status, content, _ = contacts.http(f"/playground/static/{asset}", method="GET")
        assert status == 200 and len(content) > 1000, asset


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "batched requests (a JSON array of operations) are not supported"),
        (b'"text"', "must be a JSON object"),
        (b'{"query": 5}', 'no "query" string'),
        (b'{"query": "{ __typename }", "variables": [1]}', '"variables" must be a JSON object'),
    ],
)
def test_malformed_requests_get_a_graphql_error(contacts, body, message):
    status, answer, _ = contacts.http(body=body)
    assert status == 400
    assert message in json.loads(answer)["errors"][0]["message"]


@pytest.mark.parametrize(
    "query",
    [
        "{ listContacts(count: ",  # syntax error
        "{ noSuchField }",
        '{ listContacts(count: "ten") { id } }',
        "mutation { addContact { status } }",  # missing required argument
    ],
)
def test_invalid_queries_get_errors_and_the_gateway_stays_up(contacts, query):
    answer = contacts.graphql(query)
    assert answer.get("errors"), answer
    assert "Traceback" not in json.dumps(answer)
    assert contacts.data("{ __typename }") == {"__typename": "Query"}


def test_health_endpoint(contacts):
    status, body, _ = contacts.http("/health", method="GET")
    assert status == 200 and json.loads(body)["status"] == "ok"
