"""CPU time per query in each process, the framework's route against the same route done raw.

    python -m bench.cpu                            # contact(id) and listContacts, 16 clients
    python -m bench.cpu --requests 5000 --clients 64 --rounds 3

Throughput on a shared machine moves with whatever else runs; the CPU time a process spends
per query moves much less, so this is the figure to compare revisions with. Starts the shipped
topology (`cqrs-flow up`, 2,000 contacts loaded) and the hand-wired route of figure 3 (graphql
-> relay -> echo, bench/handwired.py), sends each the same queries from the same load
generator, and reads each process's CPU time (user + system, /proc) before and after. Rounds
alternate between the two, and the table gives the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import SHIPPED, StoreClient, System, free_ports, load_contacts, prepare, say
from bench.fig3_query import CONTACT, LIST, contact_ok, list_ok
from bench.handwired import Role, compile_pb2
from bench.loadgen import GraphQL, closed_loop

QUERIES = {"contact": (CONTACT, contact_ok), "list": (LIST, list_ok)}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def per_query(
    url: str, pids: dict[str, int], query: str, ids: list[str], requests: int, clients: int
) -> tuple[dict[str, float], float]:
    """Microseconds of CPU per query in each process, and the queries/s of the run."""
    text, check = QUERIES[query]
    rng = random.Random(3)
    gql = GraphQL(url, clients)
    try:

        def send(i: int):
            return gql.post(text, {"id": rng.choice(ids)} if query == "contact" else None)

        await closed_loop(send, clients, count=200, check=check)  # warm-up
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own = cpu_seconds(os.getpid())
        result = await closed_loop(send, clients, count=requests, check=check)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own = cpu_seconds(os.getpid()) - own
    finally:
        await gql.close()
    if result.failed:
        raise RuntimeError(f"{result.failed} queries failed: {result.failures[:1]}")
    used = {name: (after[name] - before[name]) / result.ok * 1e6 for name in pids}
    used["load generator"] = own / result.ok * 1e6
    return used, result.rate


def table(runs: dict[str, list[dict[str, float]]], rates: dict[str, list[float]]) -> str:
    lines = []
    for system, rounds in runs.items():
        names = list(rounds[0])
        medians = {n: statistics.median(r[n] for r in rounds) for n in names}
        total = sum(v for n, v in medians.items() if n != "load generator")
        parts = ", ".join(f"{n} {v:,.0f}" for n, v in medians.items())
        lines.append(
            f"  {system}: {total:,.0f} us of CPU per query in the system ({parts}); "
            f"{statistics.median(rates[system]):,.0f} q/s"
        )
    return "\n".join(lines)


async def main_async(args) -> None:
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-cpu-") as tmp:
        file = prepare(SHIPPED, Path(tmp) / "cpu")
        pb2 = compile_pb2(Path(tmp) / "pb2")
        if str(pb2) not in sys.path:
            sys.path.insert(0, str(pb2))
        with System(file) as system:
            store = StoreClient(system)
            try:
                ids = (await load_contacts(store, 2000, budget=60)).ids
            finally:
                await store.close()
            echo_port, relay_port, graphql_port = free_ports(3)
            roles = [Role("echo", "--port", str(echo_port), pb2=pb2).wait_ready()]
            try:
                roles.append(
                    Role("relay", "--port", str(relay_port), "--store", str(echo_port)).wait_ready()
                )
                roles.append(
                    Role(
                        "graphql", "--port", str(graphql_port), "--store", str(relay_port), pb2=pb2
                    ).wait_ready()
                )
                nodes = system.node_pids()
                framework = {n: nodes[n] for n in ("gateway", "reader", "store")}
                raw = {r.role: r.pid for r in roles[::-1]}
                targets = {
                    "framework": (system.topology.nodes["gateway"].url, framework),
                    "route raw": (f"http://127.0.0.1:{graphql_port}/graphql", raw),
                }
                for query in args.query.split(","):
                    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
                    rates: dict[str, list[float]] = {name: [] for name in targets}
                    for _ in range(args.rounds):
                        for name, (url, pids) in targets.items():
                            used, rate = await per_query(
                                url, pids, query, ids, args.requests, args.clients
                            )
                            runs[name].append(used)
                            rates[name].append(rate)
                    say(
                        f"{query}, {args.clients} clients, {args.requests:,} queries a round, "
                        f"median of {args.rounds} rounds:"
                    )
                    say(table(runs, rates))
            finally:
                for role in reversed(roles):
                    role.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu")
    parser.add_argument("--query", default="contact,list", help="contact, list or both")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
