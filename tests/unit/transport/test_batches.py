"""CallBatcher: calls made while a batch is out share the next one; each call ends as its own
would (its code and details), a failed batch fails each call, an older server gets each alone."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import grpc
import pytest

from cqrs_flow.transport.batches import MAX_CALLS, CallBatcher


@dataclass
class Message:
    name: str

    def SerializeToString(self) -> bytes:  # protobuf's name
        return self.name.encode()


class Calls(list):  # type: ignore[type-arg]
    """A repeated field of CommandCall, as protobuf's `add` fills it."""

    def add(self, rpc: str, request: bytes) -> None:
        self.append(SimpleNamespace(rpc=rpc, request=request))


@dataclass
class FakeCommands:
    """cqrs_flow.Commands: answers each call with codes[name] (0 when not given)."""

    codes: dict[str, int] = field(default_factory=dict)
    fail: grpc.StatusCode | None = None
    batches: list[list[str]] = field(default_factory=list)
    gate: asyncio.Event | None = None  # a batch waits for it before it is answered

    def request_class(self, rpc: str):
        assert rpc == "Apply"
        return lambda: SimpleNamespace(calls=Calls())

    async def call(self, rpc: str, request):
        self.batches.append([c.request.decode() for c in request.calls])
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise grpc.aio.AioRpcError(self.fail, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone")
        results = [
            SimpleNamespace(code=self.codes.get(c.request.decode(), 0), details="why")
            for c in request.calls
        ]
        return SimpleNamespace(results=results)


@dataclass
class FakeService:
    called: list[str] = field(default_factory=list)

    async def call(self, rpc: str, request: Message):
        self.called.append(request.name)


async def outcome(batcher: CallBatcher, name: str) -> str:
    try:
        await batcher.call("AddContact", Message(name))
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name} {exc.details()}"
    return "OK"


def test_calls_made_together_go_in_one_batch_and_end_each_as_its_own():
    commands = FakeCommands(codes={"b": grpc.StatusCode.NOT_FOUND.value[0]})

    async def main():
        batcher = CallBatcher(FakeService(), commands)  # type: ignore[arg-type]
        return await asyncio.gather(*(outcome(batcher, n) for n in "abc"))

    assert asyncio.run(main()) == ["OK", "NOT_FOUND why", "OK"]
    assert commands.batches == [["a", "b", "c"]]


def test_calls_made_while_the_batches_are_out_share_the_next():
    commands = FakeCommands(gate=asyncio.Event())

    async def main():
        batcher = CallBatcher(FakeService(), commands, in_flight=1)  # type: ignore[arg-type]
        first = asyncio.ensure_future(outcome(batcher, "a"))
        await asyncio.sleep(0.01)  # "a" is out, alone
        rest = [asyncio.ensure_future(outcome(batcher, n)) for n in "bcd"]
        await asyncio.sleep(0.01)
        assert commands.batches == [["a"]]
        commands.gate.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == ["OK"] * 4
    assert commands.batches == [["a"], ["b", "c", "d"]]


def test_a_batch_holds_at_most_max_calls():
    commands = FakeCommands()

    async def main():
        batcher = CallBatcher(FakeService(), commands, in_flight=1)  # type: ignore[arg-type]
        await asyncio.gather(*(outcome(batcher, str(i)) for i in range(MAX_CALLS + 5)))

    asyncio.run(main())
    assert [len(b) for b in commands.batches] == [MAX_CALLS, 5]


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_failed_batch_fails_each_of_its_calls(code):
    commands = FakeCommands(fail=code)

    async def main():
        batcher = CallBatcher(FakeService(), commands)  # type: ignore[arg-type]
        return await asyncio.gather(*(outcome(batcher, n) for n in "ab"))

    assert asyncio.run(main()) == [f"{code.name} gone"] * 2


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
    ],  # its check: no such service
)
def test_a_server_without_the_batch_service_gets_each_call_alone_from_then_on(code):
    commands, service = FakeCommands(fail=code), FakeService()

    async def main():
        batcher = CallBatcher(service, commands)  # type: ignore[arg-type]
        first = await asyncio.gather(*(outcome(batcher, n) for n in "ab"))
        then = await outcome(batcher, "c")
        return first, then, batcher.alone

    assert asyncio.run(main()) == (["OK", "OK"], "OK", True)
    assert commands.batches == [["a", "b"]]
    assert service.called == ["a", "b", "c"]


def test_a_cancelled_call_is_left_out_of_a_batch_not_sent_yet():
    commands = FakeCommands(gate=asyncio.Event())

    async def main():
        batcher = CallBatcher(FakeService(), commands, in_flight=1)  # type: ignore[arg-type]
        first = asyncio.ensure_future(outcome(batcher, "a"))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(outcome(batcher, "b"))
        kept = asyncio.ensure_future(outcome(batcher, "c"))
        await asyncio.sleep(0.01)
        gone.cancel()
        commands.gate.set()
        return await asyncio.gather(first, kept)

    assert asyncio.run(main()) == ["OK", "OK"]
    assert commands.batches == [["a"], ["c"]]


def test_the_server_runs_a_batchs_calls_side_by_side_and_answers_each():
    import logging

    from cqrs_flow.transport.batches import batch_handler

    started: list[str] = []

    async def slow(request, context):
        started.append(request.name)
        await asyncio.sleep(0.05)
        if request.name == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        return request

    class Request:
        @staticmethod
        def FromString(data: bytes) -> Message:  # protobuf's name
            if data == b"\xff":
                raise ValueError("not a message")
            return Message(data.decode())

        DESCRIPTOR = SimpleNamespace(full_name="test.Request")

    class Results:
        def __init__(self) -> None:
            self.results: list[SimpleNamespace] = []

    class ResultList(list):  # type: ignore[type-arg]
        def add(self) -> SimpleNamespace:
            self.append(SimpleNamespace(code=0, details=""))
            return self[-1]

    def results():
        answer = Results()
        answer.results = ResultList()
        return answer

    handler = batch_handler({"Slow": slow}, {"Slow": Request}, results, logging.getLogger("test"))
    calls = Calls()
    for rpc, data in [("Slow", b"a"), ("Slow", b"missing"), ("Nothing", b""), ("Slow", b"\xff")]:
        calls.add(rpc, data)

    async def main():
        began = asyncio.get_running_loop().time()
        answer = await handler(SimpleNamespace(calls=calls), None)
        return answer, asyncio.get_running_loop().time() - began

    answer, seconds = asyncio.run(main())
    assert [(r.code, r.details) for r in answer.results] == [
        (0, ""),
        (grpc.StatusCode.NOT_FOUND.value[0], "no such thing"),
        (grpc.StatusCode.UNIMPLEMENTED.value[0], "no RPC 'Nothing' here"),
        (
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
            "the request is not a valid test.Request (1 bytes)",
        ),
    ]
    assert started == ["a", "missing"] and seconds < 0.09  # side by side: one wait, not two
