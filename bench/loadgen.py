"""In-process closed-loop load: N concurrent clients, each sending its next request when the
previous one is answered, for a number of requests or a duration. Used for GraphQL over HTTP
(aiohttp client sessions) and for the raw gRPC and tartiflette floors alike."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import percentile


@dataclass
class LoadResult:
    clients: int
    ok: int = 0
    failed: int = 0
    started: float = 0.0  # time.monotonic()
    ended: float = 0.0  # when the last answer arrived
    latencies: list[float] = field(default_factory=list)  # of successful requests, seconds
    failures: list[str] = field(default_factory=list)  # the first few reasons

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 1e-9)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    def fail(self, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < 5:
            self.failures.append(reason)


async def closed_loop(
    request: Callable[[int], Awaitable[Any]],
    clients: int,
    *,
    count: int | None = None,
    duration: float | None = None,
    drain: float = 30.0,
    timeout: float = 300.0,
    check: Callable[[Any], str | None] = lambda answer: None,
) -> LoadResult:
    """Run `request(i)` from `clients` concurrent loops until `count` requests were sent or
    `duration` seconds have passed; requests still open then get `drain` seconds to finish
    (with a `count`, everything gets `timeout` seconds).
    `check(answer)` returns a reason when an answer is a failure."""
    assert count is not None or duration is not None
    result = LoadResult(clients)
    next_index = 0
    result.started = time.monotonic()
    deadline = result.started + duration if duration is not None else float("inf")

    async def client() -> None:
        nonlocal next_index
        while time.monotonic() < deadline and (count is None or next_index < count):
            index = next_index
            next_index += 1
            began = time.monotonic()
            try:
                answer = await request(index)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result.fail(f"{type(exc).__name__}: {exc}"[:200])
                continue
            finished = time.monotonic()
            reason = check(answer)
            if reason:
                result.fail(reason[:200])
            else:
                result.ok += 1
                result.latencies.append(finished - began)
            result.ended = max(result.ended, finished)

    tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
    limit = duration + drain if duration is not None else timeout
    _, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if pending:
        result.fail(
            f"{len(pending)} client(s) still waiting for an answer after the drain time; cancelled"
        )
        result.failed += len(pending) - 1
    if not result.ended:
        result.ended = time.monotonic()
    return result


class GraphQL:
    """POSTs GraphQL requests to a gateway from one aiohttp client session."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=clients + 4, force_close=False),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = json.dumps({"query": query, "variables": variables})
        async with self.session.post(
            self.url, data=body, headers={"content-type": "application/json"}
        ) as r:
            text = await r.text()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {text[:200]}")
            return json.loads(text)

    async def close(self) -> None:
        await self.session.close()


def graphql_errors(answer: Any) -> str | None:
    if not isinstance(answer, dict) or answer.get("errors"):
        errors = answer.get("errors") if isinstance(answer, dict) else answer
        return f"GraphQL errors: {str(errors)[:160]}"
    return None
