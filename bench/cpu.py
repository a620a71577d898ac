"""CPU time per request in each process, the framework against the same work done by hand.

    python -m bench.cpu                            # contact(id) and listContacts, 16 clients
    python -m bench.cpu --requests 5000 --clients 64 --rounds 3
    python -m bench.cpu --query add                # addContact, delay 0, 32 clients (figure 1)
    python -m bench.cpu --query add --broker mosquitto          # figure 6's system

Throughput on a shared machine moves with whatever else runs; the CPU time a process spends
per request moves much less, so this is the figure to compare revisions with. Rounds alternate
between the framework and its floor, each process's CPU time (user + system, /proc) is read
before and after a round, and the table gives the median of the rounds.

Queries: the shipped topology (`cqrs-flow up`, 2,000 contacts loaded) against the hand-wired
route of figure 3 (graphql -> relay -> echo, bench/handwired.py).

`add`: the shipped topology (or examples/contacts-mosquitto's, on a Mosquitto started here) at
a delay of 0 against figure 1's hand-wired floor (gateway -> broker -> writer -> store, the
same broker kind); a round is `--requests` mutations, and it ends once every one is in the
store, so each process's CPU for the whole command is counted. The framework's processes
include `up` itself ("launcher": it reads and prints every node's log lines); the load
generator's figure includes the thread of this process that reads `up`'s output.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import (
    MOSQUITTO_EXAMPLE,
    SHIPPED,
    StoreClient,
    System,
    free_ports,
    load_contacts,
    prepare,
    say,
)
from bench.fig1_write import MUTATION, mutation_ok
from bench.fig3_query import CONTACT, LIST, contact_ok, list_ok
from bench.handwired import COUNT_METHOD, Role, compile_pb2
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


def table(
    runs: dict[str, list[dict[str, float]]], rates: dict[str, list[float]], what: str = "query"
) -> str:
    lines = []
    for system, rounds in runs.items():
        names = list(rounds[0])
        medians = {n: statistics.median(r[n] for r in rounds) for n in names}
        total = sum(v for n, v in medians.items() if n != "load generator")
        parts = ", ".join(f"{n} {v:,.0f}" for n, v in medians.items())
        lines.append(
            f"  {system}: {total:,.0f} us of CPU per {what} in the system ({parts}); "
            f"{statistics.median(rates[system]):,.0f}/s"
        )
    return "\n".join(lines)


# -- addContact: the write path against figure 1's hand-wired floor -------------------------


Waiter = Callable[[int], Awaitable[Callable[[], Awaitable[int]]]]


async def per_command(
    url: str, pids: dict[str, int], requests: int, clients: int, committed: Waiter
) -> tuple[dict[str, float], float]:
    """Microseconds of CPU per command in each process, from the first mutation sent to the
    last one applied, and the mutations answered per second. `committed(n)` returns once `n`
    more commands are applied than at its previous call; what it returns counts, after the CPU
    times are read, how many are in the store (a count costs the store CPU of its own)."""
    gql = GraphQL(url, clients)
    try:

        def send(i: int):
            return gql.post(MUTATION, {"name": f"Cpu {i}"})

        warm = await closed_loop(send, 4, count=50, check=mutation_ok)
        await (await committed(warm.ok))()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own = cpu_seconds(os.getpid())
        result = await closed_loop(send, clients, count=requests, check=mutation_ok)
        landed = await committed(result.ok)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own = cpu_seconds(os.getpid()) - own
        stored = await landed()
    finally:
        await gql.close()
    if result.failed or stored < result.ok:
        raise RuntimeError(
            f"{result.failed} mutations failed {result.failures[:1]}; "
            f"{stored:,} of {result.ok:,} in the store"
        )
    used = {name: (after[name] - before[name]) / result.ok * 1e6 for name in pids}
    used["load generator"] = own / result.ok * 1e6
    return used, result.rate


def framework_committed(system: System, store: StoreClient) -> Waiter:
    """Waits on the writers' progress lines as figure 1 does; counts the store afterwards."""
    mark = {"applied": system.applied, "stored": -1}

    async def wait(expected: int) -> Callable[[], Awaitable[int]]:
        if mark["stored"] < 0:
            mark["stored"] = await store.count(10_000_000) - expected  # the warm-up's may land
        deadline = time.monotonic() + 120
        while system.applied - mark["applied"] < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        mark["applied"] = system.applied

        async def landed() -> int:
            stored = await store.count(10_000_000)
            count, mark["stored"] = stored - mark["stored"], stored
            return count

        return landed

    return wait


def handwired_committed(store_port: int) -> Waiter:
    """Waits on the hand-wired store's count (a cheap RPC, polled every 20 ms)."""
    import grpc

    mark = {"stored": -1}

    async def count() -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{store_port}") as channel:
            return int(await channel.unary_unary(COUNT_METHOD)(b"", timeout=10))

    async def wait(expected: int) -> Callable[[], Awaitable[int]]:
        if mark["stored"] < 0:
            mark["stored"] = 0
        deadline, value = time.monotonic() + 120, await count()
        while value < mark["stored"] + expected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            value = await count()
        landed, mark["stored"] = value - mark["stored"], value

        async def stored() -> int:
            return landed

        return stored

    return wait


async def add_async(args, tmp: Path, mosquitto: subprocess.Popen | None, port: int) -> None:
    pb2 = compile_pb2(tmp / "pb2")
    roles: list[Role] = []
    try:
        if mosquitto is not None:  # started by main(), outside the event loop
            broker_port, source, mqtt = port, MOSQUITTO_EXAMPLE / "topology.yaml", "5"
            overrides: dict[str, object] = {"nodes.broker.url": f"mqtt://127.0.0.1:{port}"}
        else:
            broker_port = free_ports(1)[0]
            roles.append(Role("broker", "--port", str(broker_port)).wait_ready())
            source, mqtt, overrides = SHIPPED, "3.1.1", {}
        overrides |= {"nodes.writer.delay": "0s", "nodes.store.list_limit": 10_000_000}
        file = prepare(source, tmp / "cpu-add", overrides)
        store_port, gateway_port = free_ports(2)
        roles.append(Role("store", "--port", str(store_port), pb2=pb2).wait_ready())
        link = ["--broker", str(broker_port), "--mqtt", mqtt]
        roles.append(Role("writer", *link, "--store", str(store_port), pb2=pb2).wait_ready())
        roles.append(Role("gateway", *link, "--port", str(gateway_port), pb2=pb2).wait_ready())
        with System(file) as system:
            store = StoreClient(system)
            try:
                nodes = system.node_pids()
                assert system.process is not None
                framework = {
                    **{n: p for n, p in nodes.items() if n != "broker" or mosquitto is None},
                    "launcher": system.process.pid,
                }
                raw = {r.role: r.pid for r in roles[::-1] if r.role != "broker" or not mosquitto}
                if mosquitto is not None:  # one broker, shared: reported, not compared
                    framework["broker"] = raw["broker"] = mosquitto.pid
                targets = {
                    "framework": (
                        system.topology.nodes["gateway"].url,
                        framework,
                        framework_committed(system, store),
                    ),
                    "hand-wired": (
                        f"http://127.0.0.1:{gateway_port}/graphql",
                        raw,
                        handwired_committed(store_port),
                    ),
                }
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
                rates: dict[str, list[float]] = {name: [] for name in targets}
                for _ in range(args.rounds):
                    for name, (url, pids, committed) in targets.items():
                        used, rate = await per_command(
                            url, pids, args.requests, args.clients, committed
                        )
                        runs[name].append(used)
                        rates[name].append(rate)
                say(
                    f"add ({args.broker}), {args.clients} clients, {args.requests:,} mutations a "
                    f"round, median of {args.rounds} rounds (rate: mutations answered):"
                )
                say(table(runs, rates, "command"))
            finally:
                await store.close()
    finally:
        for role in reversed(roles):
            role.stop()


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
    parser.add_argument(
        "--query", default="contact,list", help="contact, list or both; or add (mutations)"
    )
    parser.add_argument("--clients", type=int, help="16 for queries, 32 for add")
    parser.add_argument("--requests", type=int, help="a round: 3,000 queries or 4,000 mutations")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--broker", choices=("amqtt", "mosquitto"), default="amqtt", help="for add only"
    )
    args = parser.parse_args()
    adding = args.query == "add"
    args.clients = args.clients or (32 if adding else 16)
    args.requests = args.requests or (4000 if adding else 3000)
    if not adding:
        asyncio.run(main_async(args))
        return
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-cpu-") as tmp:
        mosquitto, port = None, 0
        if args.broker == "mosquitto":
            from bench.fig6_mosquitto import mosquitto_binary, start_mosquitto, stop_mosquitto

            binary = mosquitto_binary()
            if binary is None:
                raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
            mosquitto, port = start_mosquitto(Path(tmp) / "mosquitto", binary)
        try:
            asyncio.run(add_async(args, Path(tmp), mosquitto, port))
        finally:
            if mosquitto is not None:
                stop_mosquitto(mosquitto)


if __name__ == "__main__":
    main()
