"""Figure 2: delay overlap, 500 commands on different entities with a 3 s write delay.

500 `addContact` mutations (each a new contact, so 500 entities) are sent at once from
concurrent clients; the figure is the time from the first request to the last command applied
(the writer's "applied" lines, checked against the store's count). Applied one after another
this would take 500 x 3 s = 25 minutes; with delays waiting side by side it should take the
delay plus the time to push 500 commands through (figure 1's rate).
"""

from __future__ import annotations

import asyncio

from bench.common import SHIPPED, Figure, StoreClient, System, prepare, say, wait_committed
from bench.fig1_write import MUTATION, mutation_ok
from bench.loadgen import GraphQL, closed_loop

DELAY = 3.0
COMMANDS = 500
SLACK = 2.0  # target: delay + 2 s


async def measure(system: System, commands: int, clients: int) -> dict:
    url = system.topology.nodes["gateway"].url
    store = StoreClient(system)
    gql = GraphQL(url, clients)
    try:
        # One command first: connections are open and the writer has applied something.
        await gql.post(MUTATION, {"name": "Warm up"})
        await wait_committed(system, store, 0, 0, 1, timeout=DELAY + 20, stall=DELAY + 5)
        before_applied = system.applied
        before_stored = await store.count(10_000_000)
        load = await closed_loop(
            lambda i: gql.post(MUTATION, {"name": f"Overlap {i}"}),
            clients,
            count=commands,
            check=mutation_ok,
        )
        sent = load.ended - load.started
        stored, end, source = await wait_committed(
            system,
            store,
            before_applied,
            before_stored,
            load.ok,
            timeout=DELAY + 60,
            stall=DELAY + 10,
        )
        applied = system.applied - before_applied
        return {
            "commands": commands,
            "sent_ok": load.ok,
            "send_failed": load.failed,
            "failures": load.failures,
            "send_seconds": sent,
            "applied_lines": applied,
            "progress_from": source,
            "stored": stored,
            "seconds": end - load.started,
            "node_warnings": system.trouble[:10],
        }
    finally:
        await gql.close()
        await store.close()


def run(ctx) -> Figure:
    fig = Figure(2, "Delay overlap")
    commands = COMMANDS  # cheap even in --quick: the time is the delay
    clients = 32
    file = prepare(
        SHIPPED,
        ctx.tmp / "fig2",
        {"nodes.writer.delay": f"{DELAY:g}s", "nodes.store.list_limit": 10_000_000},
    )
    say(
        f"  {commands} addContact mutations (different entities) from {clients} clients, delay "
        f"{DELAY:g}s ..."
    )
    with System(file) as system:
        result = asyncio.run(measure(system, commands, clients))
    fig.data.update(result)
    rate = ctx.shared.get("write_rate")
    expected = DELAY + commands / rate if rate else None
    fig.data["expected_seconds"] = expected
    say(
        f"    sent in {result['send_seconds']:.2f}s; {result['stored']} in the store "
        f"{result['seconds']:.2f}s after the first request"
    )
    lost = result["sent_ok"] - result["stored"]
    note = f"{lost} answered OK but not in the store" if lost else ""
    note += (
        (
            f"{'; ' if note else ''}expected ~{expected:.1f}s = {DELAY:g}s + {commands} / "
            f"{rate:,.0f}/s (figure 1)"
        )
        if expected
        else ""
    )
    fig.row(
        f"{commands} commands, {DELAY:g}s delay: first request to last applied",
        f"{result['seconds']:.2f} s",
        floor=f"{DELAY:g} s delay (serialised: {commands * DELAY / 60:.0f} min)",
        ratio=f"{result['seconds'] / DELAY:.2f}",
        target=f"<= {DELAY + SLACK:g} s",
        passed=result["seconds"] <= DELAY + SLACK and lost == 0 and result["send_failed"] == 0,
        note=note,
    )
    return fig
