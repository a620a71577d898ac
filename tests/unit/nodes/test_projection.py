"""The projection node in-process, with the library's store: it follows the log, writes its read
model with each batch's position, stops at a change its handler fails on (or sets it aside), and
goes on from where the store says its read model stands."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from cqrs_flow.nodes import runtime
from cqrs_flow.nodes.projection import ProjectionService
from cqrs_flow.plugins import Plugin
from cqrs_flow.security.tokens import ENV_SECRET, credentials_from_env
from cqrs_flow.transport.rpc import ServiceClient

from .library import SECRET, Library
from .test_lifecycle import Probe, inject, start_failing

FAILING = '''
from cqrs_flow.plugins import ProjectionPlugin


class Failing(ProjectionPlugin):
    """Counts loans per member, and fails on the loan called 'bad'."""

    async def on_Loan_insert(self, event, model):
        if event.key == "bad":
            raise ValueError("no bad loans")
        row = await model.get(event.document["member"]) or {
            "member": event.document["member"], "loans": []
        }
        row["loans"].append(event.key)
        model.put(row["member"], row)
'''


async def until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def members(library: Library) -> dict[str, list[str]]:
    documents = library.client("documents", "read", "reader")
    member = library.protos.message_class("library.MemberLoans")
    try:
        request = documents.request_class("Find")(queries=[{"entity": "MemberLoans"}])
        page = (await documents.call("Find", request)).pages[0]
        return {m.member: list(m.loans) for m in map(member.FromString, page.documents)}
    finally:
        await documents.close()


async def state(library: Library):
    projections = library.client("projections", "write", "loans")
    try:
        return await projections.call("State", projections.request_class("State")())
    finally:
        await projections.close()


def failing_library(tmp_path, on_error: str = "stop") -> Library:
    (tmp_path / "failing.py").write_text(FAILING)
    return Library(
        tmp_path,
        {"nodes.loans.plugin": "failing.Failing", "nodes.loans.on_error": on_error},
    )


def test_the_projection_builds_its_read_model_from_the_log(tmp_path, proto_cache):
    library = Library(tmp_path)

    async def scenario(library):
        await library.start_store()
        writer = library.client("write", "write", "writer")
        await library.lend(writer, library.loan("l1"), library.loan("l2", member="bob"))
        await library.start_projection()  # after some changes: it starts from position 0
        await library.lend(writer, library.loan("l3"))
        assert await until(lambda: _equal(members(library), {"ada": ["l1", "l3"], "bob": ["l2"]}))
        assert (await state(library)).position == 3
        await writer.close()

    library.run(scenario)


async def _equal(found, expected) -> bool:
    return await found == expected


def test_a_handler_that_raises_stops_the_projection_at_that_change(tmp_path, proto_cache, caplog):
    library = failing_library(tmp_path)

    async def scenario(library):
        await library.start_store()
        writer = library.client("write", "write", "writer")
        await library.start_projection()
        await library.lend(writer, library.loan("l1"), library.loan("bad"), library.loan("l3"))
        await until(lambda: _equal(members(library), {"ada": ["l1"]}))
        await asyncio.sleep(0.3)  # l3 is not applied: the projection stopped before it
        assert await members(library) == {"ada": ["l1"]}
        assert (await state(library)).position == 1
        await writer.close()

    with caplog.at_level(logging.ERROR):
        library.run(scenario)
    assert (
        "projection loans stopped at change 2 (insert of Loan 'bad'): Failing.on_Loan_insert "
        "raised ValueError: no bad loans" in caplog.text
    )


def test_with_set_aside_the_change_is_kept_aside_and_the_rest_goes_on(tmp_path, proto_cache):
    library = failing_library(tmp_path, on_error="set_aside")

    async def scenario(library):
        await library.start_store()
        writer = library.client("write", "write", "writer")
        await library.start_projection()
        await library.lend(writer, library.loan("l1"), library.loan("bad"), library.loan("l3"))
        assert await until(lambda: _equal(members(library), {"ada": ["l1", "l3"]}))
        found = await state(library)
        assert (found.position, found.set_aside) == (3, 1)
        await writer.close()

    library.run(scenario)


@pytest.mark.parametrize("data", [None, "store-data"])
def test_a_restarted_projection_goes_on_from_where_its_read_model_stands(
    tmp_path, proto_cache, data
):
    library = Library(tmp_path, {"nodes.store.data": data} if data else None)

    async def scenario(library):
        await library.start_store()
        writer = library.client("write", "write", "writer")
        projection = await library.start_projection()
        await library.lend(writer, library.loan("l1"))
        await until(lambda: _equal(members(library), {"ada": ["l1"]}))
        await projection.stop()
        library.services.remove(projection)
        await library.lend(writer, library.loan("l2"))
        await library.start_projection()
        assert await until(lambda: _equal(members(library), {"ada": ["l1", "l2"]}))
        await writer.close()

    library.run(scenario)


PROJECTION_STEPS = {
    "log channel": (ServiceClient, "__init__", 1, False),
    "store channel": (ServiceClient, "__init__", 2, False),
    "plugin": (Plugin, "start", 1, False),
    "where the read model stands": (ServiceClient, "call", 1, False),
    "following": (runtime.NodeService, "spawn", 1, True),
    "ready": (runtime, "_notify_ready", 1, False),
}


@pytest.mark.parametrize("step", PROJECTION_STEPS)
def test_a_projection_that_fails_to_start_releases_what_it_opened(
    step, tmp_path, proto_cache, monkeypatch
):
    library = Library(tmp_path)

    async def scenario(library):
        await library.start_store()
        probe = Probe(monkeypatch)  # from here on: the projection's
        inject(monkeypatch, *PROJECTION_STEPS[step])
        node = library.topology.nodes["loans"]
        credentials = credentials_from_env(library.topology, "loans", {ENV_SECRET: SECRET})
        service = ProjectionService(library.topology, node, library.protos, credentials)
        await start_failing(service, ready=step == "ready")
        probe.all_released()

    library.run(scenario)


def test_a_batch_too_large_for_one_call_is_written_in_parts(tmp_path, proto_cache, monkeypatch):
    import cqrs_flow.nodes.projection as projection_node

    monkeypatch.setattr(projection_node, "APPLY_BYTES", 300)  # a few documents a call
    monkeypatch.setattr(projection_node, "READ_MOST", 2)
    library = Library(tmp_path)

    async def scenario(library):
        await library.start_store()
        writer = library.client("write", "write", "writer")
        loans = [library.loan(f"l{i}", member=f"m{i % 3}") for i in range(12)]
        await library.lend(writer, *loans)
        await library.start_projection()  # all twelve in one batch: too large, so in parts
        expected = {f"m{k}": [f"l{i}" for i in range(12) if i % 3 == k] for k in range(3)}
        assert await until(lambda: _equal(members(library), expected))
        assert (await state(library)).position == 12
        await writer.close()

    library.run(scenario)
