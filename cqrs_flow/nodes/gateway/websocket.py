"""GraphQL over WebSocket with the graphql-transport-ws protocol (the `graphql-ws` library's),
served from aiohttp for a tartiflette engine: subscriptions, and queries and mutations too.

One connection: connection_init -> connection_ack, then any number of `subscribe` messages by id,
each answered with `next` payloads and a `complete`; `complete` from the client stops one;
ping/pong. Protocol violations close the socket with the protocol's 44xx codes. A connection
with no operation running for limits.websocket_idle is closed (1000, "Idle ..."), pings or
not: an idle socket holds a place of limits.websockets and of the caller's
limits.websockets_per_caller (http.py counts them) that others may need.

The gateway's limits hold here as for HTTP: a message larger than limits.body_bytes closes the
socket (1009); an operation over a limit (its cost, the caller's rate) is answered with an
`error` message; queries and mutations count towards limits.in_flight and the caller's
limits.per_caller_in_flight, run within limits.timeout, and an answer larger than
limits.response_bytes is replaced by an error.

Who calls: connection_init's payload carries the token (`{"Authorization": "Bearer <JWT>"}`;
the upgrade's Authorization header serves a client that cannot send a payload). A token that is
refused (or none, where the gateway needs one) closes the socket with 4403; a valid one makes
the connection's caller (auth.py) for every operation on it, and the socket is closed (4403)
when the token expires. The socket counts towards limits.websockets_per_caller under the
client's address until then, and under the caller's subject from connection_init on: a caller
with as many open already gets the socket closed with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from cqrs_flow.nodes.gateway.auth import GatewayAuth, bearer, token_of_init
from cqrs_flow.nodes.gateway.limits import RequestGate, SocketPlace, TooManyRequests
from cqrs_flow.nodes.gateway.refusals import Refused, error_entry, internal, with_request_id
from cqrs_flow.plugins import CALLER
from cqrs_flow.telemetry import current

__all__ = ["PROTOCOL", "serve_websocket"]

PROTOCOL = "graphql-transport-ws"
INIT_TIMEOUT = 10.0
MAX_SUBSCRIPTIONS = 100  # per connection

log = logging.getLogger("cqrs_flow.gateway")


async def serve_websocket(
    request: web.Request,
    engine: Any,
    gate: RequestGate,
    request_id: str,
    place: SocketPlace,
    auth: GatewayAuth | None = None,
) -> web.WebSocketResponse:
    """Answer one WebSocket, which holds `place` among its caller's: operations run on
    `engine` within `gate`'s limits."""
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,), heartbeat=30.0, max_msg_size=gate.limits.body_bytes
    )
    ws.headers["X-Request-Id"] = request_id
    await ws.prepare(request)
    if ws.ws_protocol != PROTOCOL:
        await ws.close(code=4406, message=b"Subprotocol not acceptable")
        return ws
    metrics = current().metrics
    metrics.websockets_opened.inc()
    metrics.websockets.inc()
    try:
        connection = _Connection(ws, engine, {"request": request}, gate, request_id, place)
        connection.auth = auth or GatewayAuth()
        await connection.run()
    finally:
        metrics.websockets.dec()
    return ws


class _Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        engine: Any,
        context: dict[str, Any],
        gate: RequestGate,
        request_id: str,
        place: SocketPlace,
    ) -> None:
        self.ws = ws
        self.place = place
        self.caller = place.caller  # the key per-caller limits count its operations by
        self.engine = engine
        self.context = context
        self.gate = gate
        self.request_id = request_id
        self.acknowledged = False
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.closing: asyncio.Task[bool] | None = None  # a close on a timeout (init or idle)
        self.idle_timer: asyncio.TimerHandle | None = None
        self.auth = GatewayAuth()
        self.expiry: asyncio.TimerHandle | None = None  # closes the socket when the token expires

    async def run(self) -> None:
        init_timer = asyncio.get_running_loop().call_later(INIT_TIMEOUT, self._init_timeout)
        self._watch_idle()
        try:
            async for message in self.ws:
                if message.type != WSMsgType.TEXT:
                    continue
                await self._handle(message.data)
        finally:
            init_timer.cancel()
            for timer in (self.idle_timer, self.expiry):
                if timer is not None:
                    timer.cancel()
            for task in self.operations.values():
                task.cancel()
            await asyncio.gather(*self.operations.values(), return_exceptions=True)

    def _init_timeout(self) -> None:
        if not self.acknowledged and not self.ws.closed and self.closing is None:
            self.closing = asyncio.ensure_future(
                self.ws.close(code=4408, message=b"Connection initialisation timeout")
            )

    def _watch_idle(self) -> None:
        """Run the idle clock while no operation runs; stop it while one does."""
        if self.operations:
            if self.idle_timer is not None:
                self.idle_timer.cancel()
                self.idle_timer = None
        elif self.idle_timer is None and not self.ws.closed:
            self.idle_timer = asyncio.get_running_loop().call_later(
                self.gate.limits.websocket_idle, self._idle_timeout
            )

    def _idle_timeout(self) -> None:
        self.idle_timer = None
        if not self.operations and not self.ws.closed and self.closing is None:
            idle = self.gate.limits.websocket_idle
            reason = f"Idle: no operation for {idle:g}s (limits.websocket_idle)"
            self.closing = asyncio.ensure_future(
                self.ws.close(code=1000, message=reason.encode()[:120])
            )

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, TypeError, KeyError, RecursionError):
            await self.ws.close(code=4400, message=b"Invalid message")
            return
        if kind == "connection_init":
            if self.acknowledged:
                await self.ws.close(code=4429, message=b"Too many initialisation requests")
                return
            if not await self._identify(message.get("payload")):
                return
            self.acknowledged = True
            await self.ws.send_json({"type": "connection_ack"})
        elif kind == "ping":
            await self.ws.send_json({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            task = self.operations.pop(str(message.get("id")), None)
            if task is not None:
                task.cancel()
            self._watch_idle()
        else:
            await self.ws.close(code=4400, message=f"Unknown message type {kind!r}".encode()[:120])

    async def _identify(self, payload: Any) -> bool:
        """Make the connection's caller from connection_init's token (auth.py); close the
        socket (4403) and say False if it is refused. Runs in the connection's task, so the
        operations it starts inherit the caller."""
        try:
            header = self.context["request"].headers.get("Authorization")
            token = token_of_init(payload) or (bearer(header) if self.auth.enabled else None)
            self.caller = await self.auth.identify(token, self.caller, self.gate)
        except Refused as refused:
            await self.ws.close(code=4403, message=f"Forbidden: {refused.message}".encode()[:120])
            return False
        try:
            self.place.move(self.caller)  # counted under who calls from now on
        except TooManyRequests as refused:
            log.warning("request %s: websocket refused: %s", self.request_id, refused.message)
            reason = "Too many connections of this caller (limits.websockets_per_caller)"
            await self.ws.close(code=1013, message=reason.encode())
            return False
        who = CALLER.get()
        if who is not None and who.expires is not None and self.auth.plan is not None:
            left = who.expires + self.auth.plan.auth.leeway - time.time()
            self.expiry = asyncio.get_running_loop().call_later(max(left, 0), self._expired)
        return True

    def _expired(self) -> None:
        if not self.ws.closed and self.closing is None:
            self.closing = asyncio.ensure_future(
                self.ws.close(code=4403, message=b"Forbidden: the token has expired")
            )

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.ws.close(code=4401, message=b"Unauthorized")
            return
        operation_id, payload = message.get("id"), message.get("payload")
        if (
            not isinstance(operation_id, str)
            or not isinstance(payload, dict)
            or not isinstance(payload.get("query"), str)
            or not isinstance(payload.get("variables") or {}, dict)
            or not isinstance(payload.get("operationName") or "", str)
        ):
            await self.ws.close(code=4400, message=b"Invalid subscribe message")
            return
        if operation_id in self.operations:
            await self.ws.close(
                code=4409, message=f"Subscriber for {operation_id} already exists".encode()[:120]
            )
            return
        if len(self.operations) >= MAX_SUBSCRIPTIONS:
            await self._refuse(
                operation_id,
                Refused(f"at most {MAX_SUBSCRIPTIONS} operations at once", "LIMIT_EXCEEDED"),
            )
            return
        # An empty name or variables ("", [], {}) are none.
        payload = {
            "query": payload["query"],
            "variables": payload.get("variables") or None,
            "operationName": payload.get("operationName") or None,
        }
        try:
            self.gate.pace(self.caller)
            cost = self.gate.check(payload["query"], payload["variables"], payload["operationName"])
            self.auth.authorize(
                self.gate, payload["query"], payload["operationName"], payload["variables"]
            )
        except Refused as refused:
            await self._refuse(operation_id, refused)
            return
        self.operations[operation_id] = asyncio.ensure_future(
            self._operate(operation_id, payload, cost)
        )
        self._watch_idle()

    async def _operate(self, operation_id: str, payload: dict[str, Any], cost: int) -> None:
        query, variables, name = payload["query"], payload["variables"], payload["operationName"]
        try:
            # Decided on the parsed document: `{ subscription: __typename }` is a query. None:
            # the document does not validate (or names no operation it has).
            kind = self.gate.operation_type(query, name)
            if kind == "subscription":
                async for result in self.engine.subscribe(
                    query, operation_name=name, variables=variables, context=self.context
                ):
                    if result.get("data") is None and result.get("errors"):
                        await self._send(
                            operation_id,
                            "error",
                            with_request_id(result, self.request_id)["errors"],
                        )
                        return
                    await self._send(operation_id, "next", with_request_id(result, self.request_id))
            else:
                result = await self.gate.run(
                    self.caller,
                    cost,
                    lambda: self.engine.execute(
                        query, operation_name=name, variables=variables, context=self.context
                    ),
                )
                if kind is None and result.get("data") is None and result.get("errors"):
                    # nothing ran: the protocol's `error`, as for a subscription
                    errors = with_request_id(result, self.request_id)["errors"]
                    await self._send(operation_id, "error", errors)
                    return
                message = json.dumps(
                    {
                        "id": operation_id,
                        "type": "next",
                        "payload": with_request_id(result, self.request_id),
                    }
                )
                self.gate.check_answer(message)
                if not self.ws.closed:
                    await self.ws.send_str(message)
            await self._send(operation_id, "complete")
        except asyncio.CancelledError:
            raise
        except Refused as refused:  # Busy, TooManyRequests, OperationTimeout, too large
            await self._refuse(operation_id, refused)
        except Exception:
            log.exception("request %s: operation %r failed", self.request_id, operation_id[:100])
            await self._refuse(operation_id, internal(self.request_id))
        finally:
            self.operations.pop(operation_id, None)
            self._watch_idle()

    async def _refuse(self, operation_id: str, refused: Refused) -> None:
        await self._send(operation_id, "error", [error_entry(refused, self.request_id)])

    async def _send(self, operation_id: str, kind: str, payload: Any = None) -> None:
        if self.ws.closed:
            return
        message: dict[str, Any] = {"id": operation_id, "type": kind}
        if payload is not None:
            message["payload"] = payload
        await self.ws.send_json(message)
