"""Figure 7: write throughput with 1, 2 and 4 writer replicas on Mosquitto.

examples/contacts-mosquitto's topology with `replicas: N` on its writer (MQTT shared
subscriptions spread the commands over the N processes) and `last_writer_wins` on its store, at
a write delay of 0 and of 50 ms; the same load as figure 1, on the same Mosquitto as figure 6.
There is no floor: the figure shows what replicas add on this machine (on 2 cores, where the
whole system already keeps both busy, little is to be expected; on more cores or hosts, more).
"""

from __future__ import annotations

import asyncio

from bench.common import MOSQUITTO_EXAMPLE, Figure, System, fmt, prepare, say
from bench.fig1_write import framework_writes, landing_note, params
from bench.fig6_mosquitto import mosquitto_binary, start_mosquitto, stop_mosquitto

REPLICAS = (1, 2, 4)
DELAYS = ("0s", "50ms")


def run(ctx) -> Figure:
    fig = Figure(7, "Write throughput with writer replicas on Mosquitto")
    binary = mosquitto_binary()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    count, clients = params(ctx.quick)
    count = min(count, 5000)
    process, port = start_mosquitto(ctx.tmp / "mosquitto7", binary)
    try:
        for delay in DELAYS:
            rates: dict[int, float] = {}
            for replicas in REPLICAS:
                file = prepare(
                    MOSQUITTO_EXAMPLE / "topology.yaml",
                    ctx.tmp / f"fig7-{replicas}-{delay}",
                    {
                        "nodes.broker.url": f"mqtt://127.0.0.1:{port}",
                        "nodes.writer.delay": delay,
                        "nodes.writer.replicas": replicas,
                        "nodes.store.last_writer_wins": True,
                        "nodes.store.list_limit": 10_000_000,
                    },
                )
                say(
                    f"  {replicas} replica(s), delay {delay}: {count:,} addContact mutations from "
                    f"{clients} clients ..."
                )
                with System(file) as system:
                    result = asyncio.run(framework_writes(system, count, clients))
                fig.data[f"replicas={replicas},delay={delay}"] = result
                rates[replicas] = result["rate"]
                fig.row(
                    f"writes committed/s, {replicas} replica(s), delay {delay} "
                    f"({result['committed']:,} via GraphQL)",
                    fmt(result["rate"]),
                    ratio=f"{result['rate'] / rates[1]:.2f} (vs 1 replica)" if rates.get(1) else "",
                    note=landing_note(result["sent_ok"], result["committed"]),
                )
    finally:
        stop_mosquitto(process)
    return fig
