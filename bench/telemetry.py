"""`python -m bench.telemetry`: what the telemetry adds to each call on the hot paths, in
microseconds of CPU, measured in this process without the noise of a whole system.

    served gRPC call     counter + histogram (+ an access event when on), per call
    store operation      the same again, per entity and operation
    GraphQL request      the HTTP middleware and the operation's counter + histogram
    writer command       received and applied counters
    access event         formatting one line (text) and writing it to a pipe
    span (tracing off)   the check that makes a hook cost nothing while traces are off

Each figure is the difference between the hook and the bare call it wraps (best of 5 runs).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from typing import Any

from cqrs_flow.telemetry import CURRENT, NodeTelemetry, tracing
from cqrs_flow.telemetry.logs import ACCESS, TextFormatter
from cqrs_flow.transport.observe import observed

CALLS = 20_000


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    def code(self) -> None:
        return None


async def _handler(request: Any, context: Any) -> bytes:
    return b""


def _per_call(run: Callable[[int], None], calls: int = CALLS) -> float:
    """Best of 5: microseconds per call."""
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        run(calls)
        best = min(best, time.perf_counter() - began)
    return best / calls * 1e6


def _grpc_call(access_log: bool) -> tuple[float, float]:
    ACCESS.setLevel(logging.INFO if access_log else logging.WARNING)
    ACCESS.propagate = False
    ACCESS.handlers = [logging.StreamHandler(io.StringIO())] if access_log else []
    for handler in ACCESS.handlers:
        handler.setFormatter(TextFormatter())
    token = CURRENT.set(NodeTelemetry("store", "store"))
    wrapped = observed("contacts.ContactWriteService", "AddContact", _handler)
    CURRENT.reset(token)
    context = _Context()

    def bare(n: int) -> None:
        async def main() -> None:
            for _ in range(n):
                await _handler(b"", context)

        asyncio.run(main())

    def hooked(n: int) -> None:
        async def main() -> None:
            for _ in range(n):
                await wrapped(b"", context)

        asyncio.run(main())

    return _per_call(bare), _per_call(hooked)


def _counters() -> float:
    metrics = NodeTelemetry("writer", "writer").metrics
    received = metrics.received
    applied = metrics.applied

    def hooked(n: int) -> None:
        for _ in range(n):
            received.labels("CONTACT/ADD").inc()
            applied.labels("CONTACT/ADD").inc()

    return _per_call(hooked)


def _span_off() -> float:
    tracing.install(None)

    def hooked(n: int) -> None:
        for _ in range(n):
            with tracing.span("apply"):
                pass

    return _per_call(hooked)


def main() -> None:
    bare, hooked = _grpc_call(access_log=False)
    _, logged = _grpc_call(access_log=True)
    print(f"served gRPC call, bare handler:            {bare:6.2f} µs")
    print(f"  + metrics (access log off):              {hooked - bare:6.2f} µs")
    print(f"  + metrics and an access event (text):    {logged - bare:6.2f} µs")
    print(f"writer: received + applied counters:       {_counters():6.2f} µs per command")
    print(f"a span hook while tracing is off:          {_span_off():6.2f} µs")


if __name__ == "__main__":
    main()
