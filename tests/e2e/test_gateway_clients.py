"""GraphQL over HTTP as mainstream clients speak it, against `cqrs-flow up`: aiohttp sending
what urql, Apollo Client and graphql-request send, and the Python `gql` client over GET and
POST."""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest

LIST = "query ListContacts { listContacts(count: 10) { id name } }"
ADD = 'mutation AddContact { addContact(name: "Over GET") { status id } }'
APOLLO_ACCEPT = "application/graphql-response+json,application/json;q=0.9"


def _url(system) -> str:
    return f"http://{system.gateway.listen.target}/graphql"


async def _get(system, params: dict[str, str], accept: str = APOLLO_ACCEPT):
    async with aiohttp.ClientSession() as session:
        async with session.get(_url(system), params=params, headers={"Accept": accept}) as r:
            return r.status, await r.json(content_type=None), r.headers


async def _post(system, body, accept: str = APOLLO_ACCEPT):
    async with aiohttp.ClientSession() as session:
        async with session.post(_url(system), json=body, headers={"Accept": accept}) as r:
            return r.status, await r.json(content_type=None), r.headers


def test_a_query_over_get_is_answered_with_data_and_a_mutation_is_refused(contacts):
    before = contacts.data(LIST)["listContacts"]
    status, answer, headers = asyncio.run(_get(contacts, {"query": LIST}))
    assert status == 200 and answer == {"data": {"listContacts": before}}
    assert headers["Content-Type"].startswith("application/graphql-response+json")
    status, answer, headers = asyncio.run(_get(contacts, {"query": LIST}, "application/json"))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    both = LIST + " " + ADD
    status, answer, headers = asyncio.run(
        _get(contacts, {"query": both, "operationName": "AddContact"})
    )
    assert status == 405 and headers["Allow"] == "POST"
    assert answer["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert contacts.data(LIST)["listContacts"] == before  # nothing was added


def test_a_request_error_is_400_in_graphql_response_json(contacts):
    status, answer, _ = asyncio.run(_post(contacts, {"query": "{ noSuchField }"}))
    assert status == 400 and "data" not in answer and answer["errors"]
    status, answer, _ = asyncio.run(_post(contacts, {"query": "{ noSuchField }"}, "*/*"))
    assert status == 200 and answer["data"] is None  # application/json, as before


def test_apollo_automatic_persisted_queries_fall_back_to_the_text(contacts):
    extensions = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(LIST.encode()).hexdigest()}
    }
    hashed = {"operationName": "ListContacts", "variables": {}, "extensions": extensions}
    status, answer, _ = asyncio.run(_post(contacts, hashed))
    assert status == 200
    assert answer["errors"][0]["message"] == "PersistedQueryNotSupported"
    assert answer["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_SUPPORTED"
    status, answer, _ = asyncio.run(_post(contacts, {**hashed, "query": LIST}))
    assert status == 200 and "listContacts" in answer["data"]
    params = {"operationName": "ListContacts", "extensions": json.dumps(extensions)}
    status, answer, _ = asyncio.run(_get(contacts, params))
    assert status == 200 and answer["errors"][0]["message"] == "PersistedQueryNotSupported"


def test_a_batch_and_a_subscription_over_http_are_refused_with_their_codes(contacts):
    status, answer, _ = asyncio.run(_post(contacts, [{"query": LIST}, {"query": LIST}]))
    assert status == 400 and answer["errors"][0]["extensions"]["code"] == "BATCHING_NOT_SUPPORTED"
    subscription = 'subscription { commandSettled(id: "nope") { state } }'
    for send in (_post(contacts, {"query": subscription}), _get(contacts, {"query": subscription})):
        status, answer, _ = asyncio.run(send)
        assert status == 400, answer
        assert answer["errors"][0]["extensions"]["code"] == "SUBSCRIPTION_OVER_HTTP", answer


def test_the_gql_client_runs_a_query_over_post(contacts):
    gql = pytest.importorskip("gql")
    from gql.transport.aiohttp import AIOHTTPTransport

    async def run():
        async with gql.Client(transport=AIOHTTPTransport(url=_url(contacts))) as session:
            return await session.execute(gql.gql(LIST))

    assert asyncio.run(run()) == contacts.data(LIST)
