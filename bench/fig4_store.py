"""Figure 4: store scaling, keyed operations and a short list as the collection grows.

For each size (default 1,000 / 100,000 / 1,000,000 documents; --sizes to choose), a fresh
system is started, the store is filled through its write service (AddContacts with the writer's
credentials), and one client calls the store's gRPC services directly, one call at a time:
GetContact and ListContacts(10) on the read service with the reader's credentials, UpdateContact
and DeleteContact on the write service with the writer's. Each operation runs for a bounded
time. The target is flat scaling: p50 at the largest size within 2x of p50 at the smallest.

Filling is bounded too (--quick: 30 s, else 240 s per size): if the store cannot take the
documents that fast, the figure says so and measures at the size it reached.
"""

from __future__ import annotations

import asyncio
import random
import time

from bench.common import (
    SHIPPED,
    Figure,
    StoreClient,
    System,
    fmt,
    load_contacts,
    ms,
    percentile,
    prepare,
    say,
)

DEFAULT_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 20_000)
OPS = ("get", "update", "delete", "list")
LABELS = {"get": "get by id", "update": "update by id", "delete": "delete by id", "list": "list 10"}
FLAT = 2.0


async def time_ops(store: StoreClient, ids: list[str], budget: float, max_ops: int = 500) -> dict:
    rng = random.Random(11)
    pool = list(ids)
    rng.shuffle(pool)
    deletable = pool[: len(pool) // 2]  # deletes take ids nobody else uses
    readable = pool[len(pool) // 2 :] or pool
    results = {}
    for op in OPS:
        latencies: list[float] = []
        started = time.monotonic()
        while len(latencies) < max_ops and (
            time.monotonic() - started < budget or len(latencies) < 3
        ):
            if op == "get":
                request = store.request("get", id=rng.choice(readable))
            elif op == "update":
                request = store.request(
                    "update",
                    contact=store.contact(
                        id=rng.choice(readable), name=f"Renamed {len(latencies)}"
                    ),
                )
            elif op == "delete":
                if not deletable:
                    break
                request = store.request("delete", id=deletable.pop())
            else:
                request = store.request("list", count=10)
            t = time.monotonic()
            answer = await store.call(op, request)
            latencies.append(time.monotonic() - t)
            if op == "list" and len(answer.contacts) != 10:
                raise RuntimeError(f"ListContacts(10) answered {len(answer.contacts)} contacts")
        results[op] = {
            "n": len(latencies),
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "mean_ms": sum(latencies) / len(latencies) * 1000 if latencies else float("nan"),
        }
    return results


async def one_size(ctx, size: int) -> dict:
    file = prepare(SHIPPED, ctx.tmp / f"fig4-{size}")
    budget_load = 30.0 if ctx.quick else 240.0
    budget_op = 0.5 if ctx.quick else 2.0
    with System(file) as system:
        store = StoreClient(system)
        try:
            say(f"  {size:,} documents: loading ...")
            load = await load_contacts(store, size, budget=budget_load)
            say(
                f"    {load.loaded:,} loaded in {load.seconds:.1f}s ({load.rate:,.0f}/s; "
                f"{load.path})"
            )
            ops = await time_ops(store, load.ids, budget_op)
        finally:
            await store.close()
    say("    " + ", ".join(f"{LABELS[op]} p50 {ms(r['p50_ms'] / 1000)}" for op, r in ops.items()))
    return {
        "requested": size,
        "stored": load.loaded,
        "load_seconds": load.seconds,
        "load_rate": load.rate,
        "load_path": load.path,
        "load_note": load.note,
        "ops": ops,
    }


def run(ctx) -> Figure:
    fig = Figure(4, "Store scaling")
    sizes = ctx.sizes or (QUICK_SIZES if ctx.quick else DEFAULT_SIZES)
    runs = []
    for size in sizes:
        runs.append(asyncio.run(one_size(ctx, size)))
        fig.data["sizes"] = runs
    small = runs[0]
    label = " / ".join(_short(r["stored"]) for r in runs)
    shortfall = [r for r in runs if r["stored"] < r["requested"]]
    note = "; ".join(f"{r['requested']:,} requested: {r['load_note']}" for r in shortfall)
    for op in OPS:
        values = [r["ops"][op]["p50_ms"] for r in runs]
        ratio = values[-1] / values[0] if values[0] else float("inf")
        fig.row(
            f"store {LABELS[op]}, p50 at {label} documents",
            " / ".join(ms(v / 1000) for v in values),
            floor=f"{ms(values[0] / 1000)} at {_short(small['stored'])}",
            ratio=f"{ratio:.2f}",
            target=f"<= {FLAT:g}x (flat)",
            passed=len(runs) > 1 and ratio <= FLAT,
            note=note if op == "get" else "",
        )
    fig.row(
        f"  filling the store, documents/s at {label}",
        " / ".join(fmt(r["load_rate"]) for r in runs),
        note=" / ".join(sorted({r["load_path"] for r in runs})),
    )
    return fig


def _short(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"
