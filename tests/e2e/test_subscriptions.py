"""GraphQL over WebSocket (graphql-transport-ws): commandSettled notifies when a command is
applied."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

PROTOCOL = "graphql-transport-ws"


async def session(system, *messages, expect: int, timeout: float = 10.0):
    """Send `messages` after connection_init; collect `expect` messages after the ack."""
    url = f"ws://{system.gateway.listen.target}/graphql"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, protocols=(PROTOCOL,)) as ws:
            assert ws.protocol == PROTOCOL
            await ws.send_json({"type": "connection_init", "payload": {}})
            assert (await ws.receive_json(timeout=timeout)) == {"type": "connection_ack"}
            for message in messages:
                await ws.send_json(message)
            return [await ws.receive_json(timeout=timeout) for _ in range(expect)]


def test_command_settled_notifies_when_the_command_is_applied(contacts):
    answer = contacts.data('mutation { addContact(name: "Notified") { id command_id } }')[
        "addContact"
    ]
    query = "subscription($id: String!) { commandSettled(id: $id) { id state key } }"
    received = asyncio.run(
        session(
            contacts,
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"id": answer["command_id"]}},
            },
            expect=2,
        )
    )
    assert received == [
        {
            "id": "1",
            "type": "next",
            "payload": {
                "data": {
                    "commandSettled": {
                        "id": answer["command_id"],
                        "state": "APPLIED",
                        "key": answer["id"],
                    }
                }
            },
        },
        {"id": "1", "type": "complete"},
    ]
    # Once notified, the contact is there to read.
    assert contacts.data(f'{{ contact(id: "{answer["id"]}") {{ name }} }}')["contact"] == {
        "name": "Notified"
    }


def test_queries_and_mutations_also_run_over_the_socket(contacts):
    received = asyncio.run(
        session(
            contacts,
            {"id": "q", "type": "subscribe", "payload": {"query": "{ __typename }"}},
            {"type": "ping"},
            expect=3,
        )
    )
    assert {"id": "q", "type": "next", "payload": {"data": {"__typename": "Query"}}} in received
    assert {"type": "pong"} in received and {"id": "q", "type": "complete"} in received


def test_an_unknown_command_settles_as_null_and_errors_are_reported(contacts):
    received = asyncio.run(
        session(
            contacts,
            {
                "id": "u",
                "type": "subscribe",
                "payload": {"query": 'subscription { commandSettled(id: "nope") { state } }'},
            },
            {"id": "e", "type": "subscribe", "payload": {"query": "subscription { noSuchField }"}},
            expect=3,
        )
    )
    assert {"id": "u", "type": "next", "payload": {"data": {"commandSettled": None}}} in received
    errors = [m for m in received if m["id"] == "e"]
    assert errors[0]["type"] == "error" and "noSuchField" in json.dumps(errors[0]["payload"])


@pytest.mark.parametrize(
    "first, code",
    [
        (
            {"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}},
            4401,
        ),  # before init
        ({"type": "bogus"}, 4400),
    ],
)
def test_protocol_violations_close_the_socket(contacts, first, code):
    async def scenario():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(
                f"ws://{contacts.gateway.listen.target}/graphql", protocols=(PROTOCOL,)
            ) as ws:
                await ws.send_str(json.dumps(first))
                message = await ws.receive(timeout=5)
                return message.type, ws.close_code

    kind, close_code = asyncio.run(scenario())
    assert kind == aiohttp.WSMsgType.CLOSE and close_code == code
    assert contacts.data("{ __typename }") == {"__typename": "Query"}
