"""Read-your-writes at the gateway (nodes/gateway/consistency.py): a request naming a command
waits for it to be settled and passes its id on with every read."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from cqrs_flow.nodes.gateway.commands import CommandBook
from cqrs_flow.nodes.gateway.consistency import read_your_writes
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.transport.rpc import CALL_METADATA, READ_AFTER_COMMAND, READ_AFTER_POSITION

COMMAND = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


async def seen_metadata(request: web.Request) -> web.Response:
    return web.json_response(list(CALL_METADATA.get()))


def run(book: CommandBook, headers: dict[str, str], timeout: float = 1.0) -> list[list[str]]:
    async def main() -> list[list[str]]:
        middleware = read_your_writes(book, timeout)
        response = await middleware(
            make_mocked_request("POST", "/", headers=headers), seen_metadata
        )
        assert isinstance(response, web.Response) and response.text is not None
        return json.loads(response.text)

    return asyncio.run(main())


def test_a_request_without_the_headers_passes_nothing_on():
    assert run(CommandBook(), {}) == []


def test_a_queued_command_is_waited_for_then_named_to_the_reader():
    book = CommandBook()
    book.queued(COMMAND, "add_contact", "c1")

    async def main() -> tuple[list[tuple[str, str]], float]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, book.heard, json.dumps({"id": COMMAND, "state": "APPLIED"}).encode())
        began = loop.time()
        middleware = read_your_writes(book, 2.0)
        request = make_mocked_request("POST", "/", headers={"X-After-Command": COMMAND})
        response = await middleware(request, seen_metadata)
        assert isinstance(response, web.Response) and response.text is not None
        return json.loads(response.text), loop.time() - began

    seen, waited = asyncio.run(main())
    assert seen == [[READ_AFTER_COMMAND, COMMAND]]
    assert 0.04 < waited < 1.0
    assert CALL_METADATA.get() == ()  # only for that request


def test_a_command_never_reported_is_waited_for_at_most_the_timeout():
    book = CommandBook()
    book.queued(COMMAND, "add_contact", "c1")
    assert run(book, {"X-After-Command": COMMAND}, timeout=0.05) == [[READ_AFTER_COMMAND, COMMAND]]


def test_a_position_is_passed_on_and_nonsense_is_refused():
    assert run(CommandBook(), {"X-After-Position": "42"}) == [[READ_AFTER_POSITION, "42"]]
    with pytest.raises(Refused):
        run(CommandBook(), {"X-After-Position": "soon"})
    with pytest.raises(Refused):
        run(CommandBook(), {"X-After-Command": "not one\u00e9"})
