"""The client matrix, Node.js clients from npm (tests/clients/package-lock.json) against a
running system: Apollo Client (HttpLink with GET for queries, PersistedQueryLink, GraphQLWsLink,
a subscription sent over HTTP), urql's fetchExchange with its defaults, graphql-request (POST,
GET, batchRequests), GraphQL Code Generator with strict scalars, graphql-inspector diff and
get-graphql-schema. Each test asserts what the operation answered, and how it was sent."""

from __future__ import annotations

import graphql
import pytest
from client_matrix import CLIENTS, node_modules, run_bin, run_node, served_sdl, start_matrix
from system import wait_until

pytestmark = pytest.mark.clients

LIST = "query ListContacts { listContacts(count: 10) { id name } }"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    node_modules()  # installed first: an install does not count against the system's time
    system = start_matrix(tmp_path_factory, "node-clients")
    yield system
    system.stop()


@pytest.fixture(scope="module")
def known(matrix) -> dict:
    """A contact the store holds (added through the gateway, then applied)."""
    added = matrix.data('mutation { addContact(name: "Known") { id } }')["addContact"]
    contact = {"id": added["id"], "name": "Known"}
    wait_until(lambda: contact in matrix.data(LIST)["listContacts"], timeout=15)
    return contact


def listed(data: dict) -> list[dict]:
    """A list query's contacts without the __typename Apollo asks for."""
    return [{"id": c["id"], "name": c["name"]} for c in data["listContacts"]]


def test_apollo_http_link_runs_a_query_over_get(matrix, known):
    out = run_node("apollo.mjs", "get", matrix.gateway.url)
    assert [sent["method"] for sent in out["sent"]] == ["GET"]
    assert known in listed(out["data"])


def test_apollo_persisted_query_link_falls_back_to_the_query_text(matrix, known):
    out = run_node("apollo.mjs", "persisted", matrix.gateway.url)
    bodies = [sent["body"] for sent in out["sent"]]
    # the hash alone, answered PersistedQueryNotSupported; then the text, and from then on only
    # the text (Apollo stops hashing for this server)
    assert "query" not in bodies[0] and "persistedQuery" in bodies[0]["extensions"]
    assert all("query" in body for body in bodies[1:]) and len(bodies) == 3
    assert all("persistedQuery" not in body["extensions"] for body in bodies[1:])
    assert [known in listed(data) for data in out["data"]] == [True, True]


def test_apollo_graphql_ws_link_is_told_when_a_command_is_applied(matrix):
    out = run_node("apollo.mjs", "ws", matrix.gateway.url)
    command = out["data"]["added"]["addContact"]["command_id"]
    assert out["data"]["settled"]["commandSettled"] == {
        "__typename": "CommandStatus",
        "id": command,
        "state": "APPLIED",
    }


def test_apollo_http_link_gets_a_clear_refusal_for_a_subscription(matrix):
    out = run_node("apollo.mjs", "http-subscription", matrix.gateway.url)
    assert "data" not in out or out.get("data") is None
    (error,) = out["error"]["errors"]
    assert error["extensions"]["code"] == "SUBSCRIPTION_OVER_HTTP"
    assert "WebSocket" in error["message"]


def test_urql_with_its_defaults_runs_a_query_over_get(matrix, known):
    out = run_node("urql.mjs", matrix.gateway.url)
    assert out["error"] is None
    assert [sent["method"] for sent in out["sent"]] == ["GET"]  # within the URL length limit
    assert known in out["data"]["listContacts"]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_graphql_request_runs_a_query(matrix, known, method):
    out = run_node("graphql-request.mjs", method.lower(), matrix.gateway.url)
    assert [sent["method"] for sent in out["sent"]] == [method]
    assert known in out["data"]["listContacts"]


def test_graphql_request_batch_requests_get_the_documented_refusal(matrix):
    out = run_node("graphql-request.mjs", "batch", matrix.gateway.url)
    assert out["clientError"] and out["error"]["status"] == 400
    (error,) = out["error"]["errors"]
    assert error["extensions"]["code"] == "BATCHING_NOT_SUPPORTED"


def test_graphql_code_generator_with_strict_scalars_types_the_schema(matrix, tmp_path):
    output = tmp_path / "types.ts"
    done = run_bin(
        "graphql-codegen",
        "--config",
        "codegen.yml",
        env={"MATRIX_SCHEMA_URL": matrix.gateway.url, "MATRIX_OUTPUT": str(output)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    types = output.read_text()
    for wanted in ("export type Contact = {", "export type ContactConnection", "CommandStatus"):
        assert wanted in types
    assert "Date" not in types and "Time" not in types  # nothing the SDL does not have


def test_graphql_inspector_diff_finds_the_schema_the_sdl_says(matrix, tmp_path):
    sdl = served_sdl(matrix)
    written = (CLIENTS / "contacts.graphql").read_text()
    assert sdl.startswith(written)  # the user's file, then what cqrs-flow documents it adds
    expected = tmp_path / "expected.graphql"
    expected.write_text(sdl)
    done = run_bin("graphql-inspector", "diff", matrix.gateway.url, str(expected))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes detected" in done.stdout
    # and it would see a difference: the SDL without one of the fields
    changed = tmp_path / "changed.graphql"
    changed.write_text(sdl.replace("  listContacts(count: Int!): [Contact]\n", ""))
    done = run_bin("graphql-inspector", "diff", matrix.gateway.url, str(changed))
    assert done.returncode != 0 and "listContacts" in done.stdout, done.stdout + done.stderr


def test_get_graphql_schema_downloads_the_users_types(matrix):
    done = run_bin("get-graphql-schema", matrix.gateway.url)
    assert done.returncode == 0, done.stderr
    downloaded = graphql.build_schema(done.stdout)
    expected = graphql.build_schema(served_sdl(matrix))
    assert set(downloaded.type_map) == set(expected.type_map)
    assert graphql.print_schema(graphql.lexicographic_sort_schema(downloaded)) == (
        graphql.print_schema(graphql.lexicographic_sort_schema(expected))
    )
