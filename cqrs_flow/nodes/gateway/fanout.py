"""One execution of a subscription's message for every subscriber that asked the same.

tartiflette runs a subscription's whole selection again for each message of each subscriber:
with 100 clients following one book, each change cost 100 executions of the same selection on
the same value, which made fan-out the gateway's bottleneck (about 1.6 ms a message). Live
subscriptions hand every subscriber of a change the very same message value (live.py), so a
message's result depends only on the operation (its parsed document, operation name and
variables) and that value: `SharedEngine.subscribe` executes it once per such pair, and every
subscriber that asked the same gets that result (each error entry copied, since the WebSocket
gives each its request id). The other subscribers' messages (their first ones, commandSettled)
are values of their own, executed once each as before.

This drives tartiflette's subscription steps itself (parse and validate with the engine's
cache, `create_source_event_stream`, `execute`), as `Engine.subscribe` does, without the hooks
of schema directives, which no cqrs-flow schema has.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from tartiflette.execution.execute import create_source_event_stream, execute

from cqrs_flow.nodes.gateway.execution import Operations

__all__ = ["SharedEngine"]

RESULTS = 1024  # results kept for subscribers still to come to them


class SharedEngine:
    """A tartiflette engine whose subscriptions share the execution of equal messages; queries
    and mutations run as `Operations` runs them (execution.py)."""

    def __init__(self, engine: Any, results: int = RESULTS) -> None:
        self.engine = engine
        self.operations = Operations(engine)
        self.executions = 0  # messages executed (not counting those shared)
        self._results: OrderedDict[tuple[Any, ...], tuple[Any, asyncio.Task[Any]]] = OrderedDict()
        self._size = results

    async def execute(self, query: str, **kwargs: Any) -> Any:
        return await self.operations.execute(query, **kwargs)

    async def subscribe(
        self,
        query: str,
        operation_name: str | None = None,
        context: Any = None,
        variables: dict[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        engine = self.engine
        schema, respond = engine._schema, engine._build_response
        document, errors = engine._cached_parse_and_validate_query(query, schema)
        if errors:
            yield await respond(errors=errors)
            return
        source = await create_source_event_stream(
            schema, document, respond, None, context, variables, operation_name
        )
        if isinstance(source, dict):  # the operation could not start: its errors
            yield source
            return
        operation = (query, operation_name, json.dumps(variables, sort_keys=True))
        async for value in source:
            key = (id(value), *operation)
            held = self._results.get(key)
            if held is None or held[0] is not value:
                task = asyncio.ensure_future(
                    execute(schema, document, respond, value, context, variables, operation_name)
                )
                self.executions += 1
                # The value is kept with its result: its id is not reused while it is there.
                self._results[key] = held = (value, task)
                while len(self._results) > self._size:
                    self._results.popitem(last=False)
            # Shielded: a subscriber that goes away does not cancel the others' result.
            result = await asyncio.shield(held[1])
            if result.get("errors"):
                result = {**result, "errors": [dict(e) for e in result["errors"]]}
            yield result
