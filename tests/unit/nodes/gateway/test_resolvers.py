"""The resolvers of the shipped gateway against a stand-in reader and broker: what the reader
answers becomes data, null or a GraphQL error with a code; a refused mutation answers ERROR
with the refusal's message and publishes nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.resolvers import Resolvers
from cqrs_flow.plugins import Rejected
from cqrs_flow.topology.problems import Problems
from cqrs_flow.transport.rpc import UNAVAILABLE_PEER

from .fakes import FakeMqtt


class FakeReader:
    """Answers every call with `answer`, or raises it when it is an exception."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.calls: list[str] = []

    async def call(self, rpc: str, request: Any) -> Any:
        self.calls.append(rpc)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Plugin:
    def __init__(self, name: str, failure: Exception | None) -> None:
        self.name, self.failure = name, failure

    async def before_publish(self, mutation: str, command: Any, arguments: Any) -> None:
        if self.failure is not None:
            raise self.failure


def rpc_error(code: grpc.StatusCode, details: str = "", peer: str | None = None) -> Exception:
    trailing = grpc.aio.Metadata((UNAVAILABLE_PEER, peer)) if peer else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details)


def run(shipped, protos, query: str, reader=None, plugins=(), connected=True):
    """Execute `query` on the shipped gateway's engine; (result, published, command book)."""
    node = shipped.nodes["gateway"]
    plan = gateway_plan(shipped, node, protos, Problems(shipped.located))
    mqtt = FakeMqtt(connected=connected)

    async def execute():
        delivery = Delivery(shipped.status_topic, mqtt, Outbox(60.0), logging.getLogger())
        resolvers = Resolvers(
            reader or FakeReader(), list(plugins), delivery, 50, logging.getLogger()
        )
        engine = await resolvers.engine(plan, "test")
        return await engine.execute(query), delivery.book

    result, book = asyncio.run(execute())
    return result, mqtt.published, book


def test_a_missing_entity_is_null_not_an_error(shipped, shipped_protos):
    reader = FakeReader(rpc_error(grpc.StatusCode.NOT_FOUND, "no contact x"))
    result, _, _ = run(
        shipped, shipped_protos, '{ contact(id: "x") { id } listContacts(count: 3) { id } }', reader
    )
    assert result == {"data": {"contact": None, "listContacts": []}}


@pytest.mark.parametrize(
    "error, message, code",
    [
        (
            rpc_error(grpc.StatusCode.UNAVAILABLE, "gone", peer="store"),
            "the store is unavailable; try again",
            "UNAVAILABLE",
        ),
        (
            rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "slow"),
            "the reader is unavailable; try again",
            "UNAVAILABLE",
        ),
        (rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad id"), "bad id", "INVALID_ARGUMENT"),
        (rpc_error(grpc.StatusCode.INTERNAL, "internal detail"), "internal error", "INTERNAL"),
        (RuntimeError("internal detail"), "internal error", "INTERNAL"),
    ],
)
def test_what_the_reader_cannot_answer_is_an_error_with_a_code(
    shipped, shipped_protos, error, message, code
):
    result, _, _ = run(shipped, shipped_protos, '{ contact(id: "x") { id } }', FakeReader(error))
    [found] = result["errors"]
    assert message in found["message"] and "internal detail" not in found["message"]
    assert found["extensions"]["code"] == code and found["path"] == ["contact"]


def test_the_stores_words_for_an_empty_key_name_the_argument(shipped, shipped_protos):
    reader = FakeReader(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "GetContact needs 'id'"))
    result, _, _ = run(shipped, shipped_protos, '{ contact(id: "") { id } }', reader)
    [found] = result["errors"]
    assert found["message"] == "argument 'id' must not be empty"
    assert found["extensions"]["code"] == "INVALID_ARGUMENT"
    result, published, _ = run(
        shipped, shipped_protos, 'mutation { deleteContact(id: "") { status message } }', reader
    )
    assert result["data"]["deleteContact"] == {
        "status": "ERROR",
        "message": "nothing was queued: argument 'id' must not be empty",
    }
    assert published == []


def test_an_argument_that_does_not_fit_is_refused_in_plain_words(shipped, shipped_protos):
    # an ID given as a string where the proto has an integer: no Python message in the answer
    from cqrs_flow.nodes.gateway.resolvers import _build

    with pytest.raises(Exception) as refused:
        _build(
            shipped_protos.class_of(
                shipped_protos.service("contacts.ContactReader")
                .methods_by_name["ListContacts"]
                .input_type
            ),
            {"count": "count"},
            {"count": "ten"},
        )
    assert str(refused.value) == (
        "argument 'count' does not fit: a value of another type or out of range"
    )
    assert "invalid literal" not in str(refused.value)


def test_a_list_query_over_limits_list_count_is_refused(shipped, shipped_protos):
    result, _, _ = run(shipped, shipped_protos, "{ listContacts(count: 51) { id } }")
    assert "limits.list_count" in result["errors"][0]["message"]
    assert result["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"


def test_an_accepted_mutation_is_published_and_booked(shipped, shipped_protos):
    result, published, book = run(
        shipped,
        shipped_protos,
        'mutation { addContact(name: "Ada") { status message id command_id } }',
    )
    answer = result["data"]["addContact"]
    assert answer["status"] == "OK" and answer["message"] == "Queued to add" and answer["id"]
    assert [topic for topic, _ in published] == ["CONTACT/ADD"]
    entry = book.get(answer["command_id"])
    assert entry["state"] == "QUEUED" and entry["key"] == answer["id"]


UPDATE = 'mutation { updateContact(id: "x", name: "y") { status message id command_id code } }'
ADD = 'mutation { addContact(name: "Ada") { status message id command_id code } }'


@pytest.mark.parametrize(
    "query, reader, plugins, connected, message, code",
    [
        (
            UPDATE,
            FakeReader(rpc_error(grpc.StatusCode.NOT_FOUND)),
            (),
            True,
            "contact x not found",
            "NOT_FOUND",
        ),
        (
            UPDATE,
            FakeReader(rpc_error(grpc.StatusCode.UNAVAILABLE, peer="store")),
            (),
            True,
            "nothing was queued: the store is unavailable; try again",
            "UNAVAILABLE",
        ),
        (
            ADD,
            None,
            [Plugin("rules", Rejected("name is taken"))],
            True,
            "name is taken",
            "REJECTED",
        ),
        (
            ADD,
            None,
            [Plugin("faulty", RuntimeError("internal detail"))],
            True,
            "plugin 'faulty' failed; nothing was queued (request -)",
            "INTERNAL",
        ),
        (
            ADD,
            None,
            (),
            False,
            "the broker is away; nothing was queued, try again later (a gateway with `data:` "
            "queues meanwhile)",
            "UNAVAILABLE",
        ),
    ],
)
def test_a_refused_mutation_answers_error_and_publishes_nothing(
    shipped, shipped_protos, query, reader, plugins, connected, message, code
):
    result, published, _ = run(shipped, shipped_protos, query, reader, plugins, connected)
    answer = next(iter(result["data"].values()))
    assert answer["status"] == "ERROR" and answer["message"] == message
    assert published == [] and "errors" not in result
    # nothing was queued: no id that looks created (an add's generated one included), no command
    assert answer["id"] is None and answer["command_id"] is None
    assert answer["code"] == code
