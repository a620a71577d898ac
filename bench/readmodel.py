"""Figure 8: contact(id) with the read model / one process against the raw one-hop floor.

`contact(id)` (random stored ids) over HTTP GraphQL at 1, 16 and 64 concurrent clients, as in
figure 3, with 100,000 contacts stored, in three topologies: the shipped one as it is (two hops,
for comparison); with `read_model: true` on the reader (the second hop, reader -> store, is
gone); and with the reader also placed in the gateway's process (`process: gateway`: the first
hop leaves the network too). The floor is one raw grpc.aio unary call answering a contact from
memory (bench/handwired.py echo, its own process), measured in the same run at the same
concurrency: what one network hop costs with nothing else done. The target (>= 0.5x) is judged
on the topology with both on; the notes give raw tartiflette's rate for the same query (figure
3's other floor): the GraphQL execution alone, which no placement of the reader removes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import (
    SHIPPED,
    Figure,
    StoreClient,
    System,
    fmt,
    free_ports,
    load_contacts,
    ms,
    prepare,
    say,
)
from bench.fig3_query import (
    CONCURRENCY,
    CONTACT,
    contact_ok,
    grpc_floor,
    measured,
    posting,
    summary,
    tartiflette_floor,
)
from bench.handwired import Role, compile_pb2
from bench.loadgen import GraphQL

TARGET_RATIO = 0.5
TOPOLOGIES = {
    "two hops (no read model)": {},
    "read model": {"nodes.reader.read_model": True},
    "read model, one process": {
        "nodes.reader.read_model": True,
        "nodes.reader.process": "gateway",
    },
}


def caught_up(system: System, timeout: float = 120.0) -> None:
    """Wait until the reader's model has every change of the store (its health says so)."""
    address = system.topology.metrics_of("reader")
    assert address is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address.target}/health/ready", timeout=5) as r:
                model = json.loads(r.read()).get("read_model") or {}
        except OSError:
            model = {}
        if model.get("answering") == "model" and model.get("lag") == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the reader's read model did not catch up with the store")


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) process `pid` has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def topology_runs(ctx, name: str, overrides: dict, contacts: int, duration: float) -> dict:
    file = prepare(SHIPPED, ctx.tmp / f"fig8-{len(name)}", overrides)
    runs: dict = {}
    with System(file) as system:
        store = StoreClient(system)
        try:
            say(f"  {name}: loading {contacts:,} contacts through the store's write service ...")
            load = await load_contacts(store, contacts, budget=60 if ctx.quick else 300)
        finally:
            await store.close()
        if overrides:
            caught_up(system)
        rng = random.Random(8)
        url = system.topology.nodes["gateway"].url
        pids = system.node_pids()
        for clients in CONCURRENCY:
            gql = GraphQL(url, clients)
            try:
                send = posting(gql, CONTACT, load.ids, rng)
                await measured(send, clients, 0.0, min(0.5, duration / 4), contact_ok)
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                result = await measured(send, clients, duration, 0.0, contact_ok)
                spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            finally:
                await gql.close()
            runs[clients] = summary(result)
            runs[clients]["cpu_ms_per_query"] = {
                name: round(seconds * 1000 / max(result.ok, 1), 3)
                for name, seconds in spent.items()
                if name in ("gateway", "reader", "store")
            }
            say(
                f"    {clients:2} clients: p50 {ms(result.p(50))}, p99 {ms(result.p(99))}, "
                f"{result.rate:,.0f} q/s"
                + (f", {result.failed} failed: {result.failures[:1]}" if result.failed else "")
            )
        runs["stored"] = load.loaded
        runs["node_warnings"] = system.trouble[:10]
    return runs


async def measure(ctx, fig: Figure, contacts: int, duration: float) -> None:
    for name, overrides in TOPOLOGIES.items():
        fig.data[name] = await topology_runs(ctx, name, overrides, contacts, duration)
    pb2 = compile_pb2(ctx.tmp / "pb2")
    if str(pb2) not in sys.path:
        sys.path.insert(0, str(pb2))
    port = free_ports(1)[0]
    say("  floor: raw grpc.aio unary calls (one hop) ...")
    echo = Role("echo", "--port", str(port), pb2=pb2).wait_ready()
    try:
        fig.data["grpc_floor"] = (await grpc_floor(port, duration))["contact"]
    finally:
        echo.stop()
    say("  and raw tartiflette execution of the query (what the gateway's GraphQL alone costs) ...")
    fig.data["tartiflette_floor"] = (await tartiflette_floor(duration))["contact"]


def run(ctx) -> Figure:
    fig = Figure(8, "contact(id) with the read model vs the raw one-hop floor")
    contacts = 5_000 if ctx.quick else 100_000
    duration = 1.0 if ctx.quick else 4.0
    asyncio.run(measure(ctx, fig, contacts, duration))
    for name in TOPOLOGIES:
        judged = name == "read model, one process"
        stored = fig.data[name]["stored"]
        for clients in CONCURRENCY:
            mine = fig.data[name][clients]
            floor = fig.data["grpc_floor"][clients]["qps"]
            ratio = mine["qps"] / floor if floor else 0.0
            note = f"p99/p50 = {mine['p99_ms'] / mine['p50_ms']:.1f}" if mine["p50_ms"] else ""
            cpu = mine.get("cpu_ms_per_query") or {}
            if cpu:
                note += "; CPU ms/query " + ", ".join(f"{n} {v:.2f}" for n, v in cpu.items())
            execution = fig.data["tartiflette_floor"][clients]["qps"]
            note += f"; raw tartiflette alone {fmt(execution)} q/s"
            if mine["failed"]:
                note += f"; {mine['failed']} failed: {mine['failures'][:1]}"
            fig.row(
                f"contact(id), {name}, {clients} client{'s' if clients > 1 else ''}, "
                f"{stored:,} stored",
                f"p50 {ms(mine['p50_ms'] / 1000)}, p99 {ms(mine['p99_ms'] / 1000)}, "
                f"{fmt(mine['qps'])} q/s",
                floor=f"grpc one hop {fmt(floor)} q/s",
                ratio=f"{ratio:.2f}",
                target=f">= {TARGET_RATIO}x floor q/s" if judged else "",
                passed=(ratio >= TARGET_RATIO and mine["failed"] == 0) if judged else None,
                note=note,
            )
    return fig
