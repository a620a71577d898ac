"""Read-your-writes through the gateway: a request with `X-After-Command: <command id>` (the id a
mutation answered with) gets reads that reflect that command.

The gateway waits for the command to be settled (a writer's report; at most the reader's
timeout), then passes its id to the reader with every read of the request (gRPC metadata
READ_AFTER_COMMAND). A reader with a read model answers such a read from the model once it
reflects the command (or the store's log head, asked after the command was applied), and from
the store otherwise; a reader without one reads the store, which reflects every command applied.
`X-After-Position: <n>` asks for the change log up to position n (a FindResponse's or a live
subscription's position) the same way. docs/BEHAVIOUR.md says what is guaranteed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from cqrs_flow.nodes.gateway.commands import CommandBook
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.transport.rpc import CALL_METADATA, READ_AFTER_COMMAND, READ_AFTER_POSITION

__all__ = ["AFTER_COMMAND", "AFTER_POSITION", "read_your_writes"]

AFTER_COMMAND = "X-After-Command"
AFTER_POSITION = "X-After-Position"
_COMMAND_ID = re.compile(r"[0-9A-Za-z_.:-]{1,100}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def read_your_writes(
    book: CommandBook, timeout: float
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware: reads of a request naming a command (or a position) reflect it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        command = request.headers.get(AFTER_COMMAND)
        position = request.headers.get(AFTER_POSITION)
        if command is None and position is None:
            return await handler(request)
        metadata: list[tuple[str, str]] = []
        if command is not None:
            if not _COMMAND_ID.fullmatch(command):
                raise Refused(f"{AFTER_COMMAND} must be a command id a mutation answered with")
            entry = book.get(command)
            if entry is not None and entry["state"] == "QUEUED":
                try:  # the caller waits on it: until a writer reports it, at most `timeout`
                    await asyncio.wait_for(book.settled(command), timeout)
                except asyncio.TimeoutError:
                    pass  # not applied yet: the reads reflect what is, as without the header
            metadata.append((READ_AFTER_COMMAND, command))
        if position is not None:
            if not position.isdigit() or len(position) > 18:
                raise Refused(f"{AFTER_POSITION} must be a change log position (a number)")
            metadata.append((READ_AFTER_POSITION, position))
        token = CALL_METADATA.set(tuple(metadata))
        try:
            return await handler(request)
        finally:
            CALL_METADATA.reset(token)

    return middleware
