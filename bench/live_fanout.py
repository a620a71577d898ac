"""Subscription fan-out: N clients (100 by default) follow one book live (`bookChanged(id)`, each
over its own WebSocket, graphql-transport-ws) while the book changes at a steady rate; for each
change, the time from the write to the moment the last of the N clients has it.

`cqrs-flow up` of examples/library on a durable store. The changes are written through the
store's write service directly (a writer's credentials, as the writers call it): the figure is
the live path (store -> change log -> reader -> the gateway's one follow -> N subscribers), not
the command path before it. A change's time starts when its write call is made (so it includes
the commit) and ends when the last subscriber has read its message; the clients run in this
process, one asyncio loop, beside the system on the same machine.

    python bench/live_fanout.py
    python bench/live_fanout.py --subscribers 100 --changes 500 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, SECRET, System, ms, percentile, prepare, say

PROTOCOL = "graphql-transport-ws"
FOLLOW = "subscription($id: String!) { bookChanged(id: $id) { op position document { year } } }"


class Writer:
    """library.LibraryWriteService with the writer's credentials: AddBook and UpdateBook."""

    def __init__(self, system: System) -> None:
        import grpc

        from cqrs_flow.protobuf.compiler import compile_protos
        from cqrs_flow.security.tokens import Credentials, derive_token
        from cqrs_flow.topology import StoreNode, WriterNode

        topology = system.topology
        protos = compile_protos(list(topology.protos), topology.root)
        store = topology.nodes_of(StoreNode)[0]
        writer = topology.nodes_of(WriterNode)[0]
        self.channel = grpc.aio.insecure_channel(store.write.listen.target)
        self.metadata = Credentials(writer.name, derive_token(SECRET, writer.name)).metadata
        self.book = protos.message_class("library.Book")
        self.calls = {}
        for rpc in ("AddBook", "UpdateBook"):
            method = protos.method(store.write.name, rpc)
            self.calls[rpc] = (
                protos.class_of(method.input_type),
                self.channel.unary_unary(
                    f"/{store.write.name}/{rpc}",
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=protos.class_of(method.output_type).FromString,
                ),
            )

    async def write(self, rpc: str, year: int) -> None:
        request_class, call = self.calls[rpc]
        book = self.book(id="followed", title="Followed", year=year)
        await call(request_class(book=book), metadata=self.metadata, timeout=10)

    async def close(self) -> None:
        await self.channel.close()


async def subscriber(url: str, ready: asyncio.Event, arrived: dict[int, list[float]]) -> None:
    """One client: connect, subscribe, note when each year's message arrives."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=(PROTOCOL,)) as ws:
        await ws.send_json({"type": "connection_init", "payload": {}})
        assert (await ws.receive_json(timeout=30))["type"] == "connection_ack"
        subscribe = {"query": FOLLOW, "variables": {"id": "followed"}}
        await ws.send_json({"id": "1", "type": "subscribe", "payload": subscribe})
        async for message in ws:
            now = time.perf_counter()
            data = json.loads(message.data)
            if data.get("type") != "next":
                raise RuntimeError(f"subscription ended: {data}")
            change = data["payload"]["data"]["bookChanged"]
            if change["op"] == "CURRENT":
                ready.set()
                continue
            arrived.setdefault(change["document"]["year"], []).append(now)


async def measure(system: System, count: int, changes: int, rate: float) -> dict[str, Any]:
    writer = Writer(system)
    await writer.write("AddBook", 0)
    url = f"ws://{system.topology.nodes['gateway'].listen.target}/graphql"
    arrived: dict[int, list[float]] = {}
    readies = [asyncio.Event() for _ in range(count)]
    clients = [asyncio.ensure_future(subscriber(url, r, arrived)) for r in readies]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    say(f"{count} subscribers have their first message")
    written: dict[int, float] = {}
    calls: list[float] = []
    started = time.perf_counter()
    for year in range(1, changes + 1):
        due = started + (year - 1) / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        written[year] = time.perf_counter()
        await writer.write("UpdateBook", year)
        calls.append(time.perf_counter() - written[year])
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and not all(
        len(arrived.get(y, ())) >= count for y in written
    ):
        await asyncio.sleep(0.05)
    for client in clients:
        client.cancel()
    failed = [c for c in clients if c.done() and not c.cancelled() and c.exception()]
    await asyncio.gather(*clients, return_exceptions=True)
    await writer.close()
    every = [max(arrived[y]) - t for y, t in written.items() if len(arrived.get(y, ())) >= count]
    each = [a - t for y, t in written.items() for a in arrived.get(y, ())]
    return {
        "every": every,
        "each": each,
        "complete": len(every),
        "calls": calls,
        "failed": [repr(c.exception()) for c in failed],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="changes per second")
    parser.add_argument("--tmp", default=None, help="where the data directory goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        limits = max(200, args.subscribers + 10)
        topology = prepare(
            REPO / "examples" / "library" / "topology.yaml",
            Path(tmp),
            {
                "nodes.store.data": "library-data",
                "nodes.gateway.auth": None,  # every caller a librarian: no tokens to mint
                # every client is on this machine: one caller, as many connections as clients
                "nodes.gateway.limits": {"websockets": limits, "websockets_per_caller": limits},
            },
        )
        with System(topology) as system:
            result = asyncio.run(measure(system, args.subscribers, args.changes, args.rate))
    every, each = result["every"], result["each"]
    say(
        f"\n{args.subscribers} subscribers on one book, {args.changes} changes at "
        f"{args.rate:g}/s; {result['complete']} of them reached every subscriber"
    )
    say("| from the write to | p50 | p99 | max |")
    say("|---|---|---|---|")
    for name, values in (("every subscriber (the last)", every), ("each subscriber", each)):
        say(
            f"| {name} | {ms(percentile(values, 50))} | {ms(percentile(values, 99))} | "
            f"{ms(max(values) if values else float('nan'))} |"
        )
    say(
        f"| (the write call itself) | {ms(percentile(result['calls'], 50))} | "
        f"{ms(percentile(result['calls'], 99))} | {ms(max(result['calls']))} |"
    )
    if result["failed"]:
        say(f"subscriptions that failed: {result['failed'][:3]}")


if __name__ == "__main__":
    main()
