"""Several unary calls of one service in one gRPC call (cqrs_flow.Commands, commands.proto).

A writer applies each command with a call to its store's write service; under load, the gRPC
round trip of each call (its HTTP/2 stream, metadata, the caller check, a task on each side)
cost the writer and the store more than applying the command. `CallBatcher` (the caller's side)
gathers the calls made while one is in flight into one `Apply`, and `batch_handler` (the
server's side) runs each call of a batch through the handler its own call would have had, side
by side as that many calls would run, and answers one status per call. What a call does is
unchanged (its checks, its transaction, the codes it ends with); only the round trip is shared.
The caller puts no two calls whose order matters in one batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from cqrs_flow.transport.rpc import Handler, ServiceClient

__all__ = ["MAX_CALLS", "CallBatcher", "batch_handler"]

MAX_CALLS = 64  # calls in one batch at most
_CODES = {code.value[0]: code for code in grpc.StatusCode}
# What a server without cqrs_flow.Commands answers an Apply: UNIMPLEMENTED, or, where its caller
# check does not know the service yet (an older version), PERMISSION_DENIED. Either way each call
# goes on its own, and gets what its own call gets (the same refusal, if that is what it is).
_NOT_OFFERED = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED)


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _OneCall:
    """What a handler sees of its call inside a batch: the batch's caller, and an `abort` that
    ends this call alone."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._code: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code = code
        raise _Aborted(code, details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def auth_context(self) -> Any:
        return self._context.auth_context()


def batch_handler(
    handlers: Mapping[str, Handler],
    request_classes: Mapping[str, type[Message]],
    results_class: type[Message],
    log: logging.Logger,
) -> Handler:
    """The `Apply` of cqrs_flow.Commands over `handlers` (RPC name -> the handler of its own
    call, given the request decoded as `request_classes` says). The calls of a batch run side by
    side, as that many calls of their own would: the caller sends no two calls in one batch
    whose order matters (a writer, no two commands on one key). The caller check is the
    service's (the server checks it before this runs); a call to an RPC not in `handlers` or
    whose request does not decode ends alone, with the code its own call would get."""

    async def one(call: Any, result: Any, context: Any) -> None:
        handle = handlers.get(call.rpc)
        if handle is None:
            result.code = grpc.StatusCode.UNIMPLEMENTED.value[0]
            result.details = f"no RPC {call.rpc[:100]!r} here"
            return
        request_class = request_classes[call.rpc]
        try:
            message = request_class.FromString(call.request)
        except (DecodeError, RecursionError, ValueError):
            result.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            result.details = (
                f"the request is not a valid {request_class.DESCRIPTOR.full_name} "
                f"({len(call.request)} bytes)"
            )
            return
        try:
            await handle(message, _OneCall(context))  # type: ignore[arg-type]
        except _Aborted as aborted:
            result.code, result.details = aborted.code.value[0], aborted.details
        except Exception as exc:  # what gRPC answers UNKNOWN for a call of its own
            log.exception("%s in a batch failed", call.rpc)
            result.code = grpc.StatusCode.UNKNOWN.value[0]
            result.details = f"{type(exc).__name__}: {exc}"[:300]

    async def apply(request: Any, context: Any) -> Message:
        answer: Any = results_class()
        calls = [(call, answer.results.add()) for call in request.calls]
        if len(calls) == 1:
            await one(*calls[0], context)
        else:
            await asyncio.gather(*(one(call, result, context) for call, result in calls))
        return answer  # type: ignore[no-any-return]

    return apply


class CallBatcher:
    """Calls of `service`'s RPCs through `commands` (a client of cqrs_flow.Commands on the same
    server), several to one `Apply`.

    `call(rpc, request)` returns once the call is done, or raises grpc.aio.AioRpcError with the
    code and details its own call would have ended with. A call made while `in_flight` batches
    are out waits for one to come back, with every call made meanwhile: under load, batches
    grow (up to MAX_CALLS); one call at a time goes alone, without waiting for company. A
    failure of the whole batch (the server unavailable, a deadline) is each call's failure. A
    server that does not serve cqrs_flow.Commands, or does not let this caller call it (an
    older version: UNIMPLEMENTED, PERMISSION_DENIED), gets each call on its own from then on."""

    def __init__(self, service: ServiceClient, commands: ServiceClient, in_flight: int = 2) -> None:
        self._service = service
        self._commands = commands
        self._slots = asyncio.Semaphore(in_flight)
        self._pending: list[tuple[str, Message, asyncio.Future[None]]] = []
        self._waiting = False  # a sender is waiting for a slot: it takes what is pending then
        self._senders: set[asyncio.Task[None]] = set()
        self.alone = False  # the server has no cqrs_flow.Commands: each call on its own
        self.batches = 0  # Apply calls made (for tests and the bench)

    async def call(self, rpc: str, request: Message) -> None:
        if self.alone:
            await self._service.call(rpc, request)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rpc, request, future))
        if not self._waiting:
            self._start_sender()
        await future

    def _start_sender(self) -> None:
        """A sender for what is pending, which waits for a slot (one waits at a time)."""
        self._waiting = True
        sender = asyncio.ensure_future(self._send())
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

    async def _send(self) -> None:
        async with self._slots:
            batch, self._pending = self._pending[:MAX_CALLS], self._pending[MAX_CALLS:]
            self._waiting = False
            if self._pending:  # more than one batch takes: the next sender waits its turn
                self._start_sender()
            live = [(rpc, request, f) for rpc, request, f in batch if not f.done()]
            if live:
                await self._apply(live)

    async def _apply(self, batch: list[tuple[str, Message, asyncio.Future[None]]]) -> None:
        request: Any = self._commands.request_class("Apply")()
        for rpc, message, _ in batch:
            request.calls.add(rpc=rpc, request=message.SerializeToString())
        try:
            self.batches += 1
            answer: Any = await self._commands.call("Apply", request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _NOT_OFFERED and not self.alone:
                self.alone = True
                await asyncio.gather(*(self._alone(*call) for call in batch))
                return
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException as exc:  # cancelled (the writer stops), or a bug: so is each call
            for _, _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            raise
        for (_, _, future), result in zip(batch, answer.results, strict=False):
            if future.done():
                continue
            if result.code == 0:
                future.set_result(None)
            else:
                code = _CODES.get(result.code, grpc.StatusCode.UNKNOWN)
                future.set_exception(_error(code, result.details))
        for _, _, future in batch[len(answer.results) :]:  # a server that answered too few
            if not future.done():
                future.set_exception(_error(grpc.StatusCode.UNKNOWN, "no result for the call"))

    async def _alone(self, rpc: str, request: Message, future: asyncio.Future[None]) -> None:
        try:
            await self._service.call(rpc, request)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(None)

    async def close(self) -> None:
        """Cancel the batches still out (their calls are cancelled with them)."""
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)
