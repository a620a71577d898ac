"""SharedEngine: a change's message is executed once for all the subscribers that asked the same
operation, and once per different one; a subscriber's own messages (its first) are its own."""

from __future__ import annotations

from typing import Any

from .fake_log import FakeLog
from .live_gateway import ONE, Gateway, book, run


def test_a_change_is_executed_once_per_operation_however_many_subscribe(library):
    other = ONE.replace("document { id title year genre }", "document { title }")

    async def scenario(gateway: Gateway, log: FakeLog) -> tuple[int, int, list[Any]]:
        log.write("Book", "b", book(library, "b", "Mort"))
        same = [gateway.subscribe(ONE, id="b") for _ in range(30)]
        different = [gateway.subscribe(other, id="b") for _ in range(10)]
        for stream in same + different:
            assert (await stream.next())["op"] == "CURRENT"
        before = gateway.engine.executions
        log.write("Book", "b", book(library, "b", "Mort", 1987))
        received = [await stream.next() for stream in same + different]
        return before, gateway.engine.executions, received

    before, after, received = run(library, scenario)
    assert before == 40  # each first message is its own
    assert after - before == 2  # the change: once for ONE, once for the other selection
    assert received[0]["document"] == {"id": "b", "title": "Mort", "year": 1987, "genre": "FICTION"}
    assert all(r == received[0] for r in received[:30])
    assert all(r["document"] == {"title": "Mort"} for r in received[30:])
