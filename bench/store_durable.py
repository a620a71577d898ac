"""The store with `data:` through its gRPC services: durable writes per second, and a store filled
to a million documents (RSS, keyed get and list, start-up).

    python bench/store_durable.py writes [--baseline TREE] [--writes 3000] [--rounds 2]
    python bench/store_durable.py fill [--size 1000000]

`writes`: the shipped topology with `data:` on its store; one client calls AddContact on the
store's write service with a writer's credentials, 1 call at a time and then 32 at a time (as
many as a writer keeps open), and reports acknowledged writes per second. `--baseline TREE` runs
the same measurement, in the same run and alternating with this tree, against another source
tree of cqrs_flow (its nodes run with PYTHONPATH=TREE), e.g. the release before a change:

    git archive <commit> | tar -x -C /tmp/base && python bench/store_durable.py writes \\
        --baseline /tmp/base

`fill`: the same system, filled through AddContacts (batches of 5,000) to --size documents; at
1,000 and at --size it reports the store's RSS, GetContact and ListContacts(20) (p50 over 500
calls, one at a time), and then restarts the system and reports how long the store took to be
ready ("store ready in" in its log).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SHIPPED,
    StoreClient,
    System,
    load_contacts,
    memory,
    prepare,
    say,
)

IN_FLIGHT = (1, 32)


def durable_system(directory: Path, tree: str | None) -> System:
    topology = prepare(SHIPPED, directory, {"nodes.store.data": "store-data"})
    env = {"PYTHONPATH": tree} if tree else None
    return System(topology, env)


async def writes_per_second(client: StoreClient, writes: int, in_flight: int) -> float:
    numbers = iter(range(writes))

    async def one_writer() -> None:
        for i in numbers:
            contact = client.contact(id=f"w{uuid.uuid4().hex}", name=f"Contact {i}")
            await client.call("insert", client.request("insert", contact=contact))

    started = time.perf_counter()
    await asyncio.gather(*(one_writer() for _ in range(in_flight)))
    return writes / (time.perf_counter() - started)


async def measure_writes(tree: str | None, writes: int) -> dict[int, float]:
    with tempfile.TemporaryDirectory() as directory:
        system = durable_system(Path(directory), tree).start()
        try:
            client = StoreClient(system)
            await writes_per_second(client, 200, 8)  # warm-up: channels, the file's first pages
            found = {n: await writes_per_second(client, writes, n) for n in IN_FLIGHT}
            await client.close()
            return found
        finally:
            system.stop()


async def writes(args: argparse.Namespace) -> None:
    trees = [("this tree", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    say(f"durable AddContact calls through the store's write service, {args.writes} per figure")
    say(f"{'round':>5} {'tree':>10} " + " ".join(f"{f'{n} in flight /s':>16}" for n in IN_FLIGHT))
    results: dict[str, list[dict[int, float]]] = {name: [] for name, _ in trees}
    for round_ in range(args.rounds):
        for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
            found = await measure_writes(tree, args.writes)
            results[name].append(found)
            say(f"{round_ + 1:>5} {name:>10} " + " ".join(f"{found[n]:>16,.0f}" for n in IN_FLIGHT))
    for name, runs in results.items():
        say(
            f"{'median':>5} {name:>10} "
            + " ".join(f"{statistics.median(r[n] for r in runs):>16,.0f}" for n in IN_FLIGHT)
        )


async def timed(calls, reps: int) -> float:
    """p50 microseconds of awaiting each of `reps` calls."""
    times = []
    for _ in range(reps):
        call = calls()
        started = time.perf_counter()
        await call
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


async def probe(system: System, client: StoreClient, ids: list[str], label: str) -> None:
    rng = random.Random(3)
    pid = system.node_pids()["store"]
    get = await timed(lambda: client.call("get", client.request("get", id=rng.choice(ids))), 500)
    page = await timed(lambda: client.call("list", client.request("list", count=20)), 500)
    rss = memory(pid)[0] / 2**20
    say(f"{label:>12} {rss:>10.0f} {get:>12.0f} {page:>12.0f}")


async def fill(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as directory:
        system = durable_system(Path(directory), args.baseline).start()
        try:
            client = StoreClient(system)
            say(f"{'documents':>12} {'RSS MiB':>10} {'get us p50':>12} {'list20 us p50':>12}")
            small = await load_contacts(client, 1000, 600, log=lambda _: None)
            await probe(system, client, small.ids, "1,000")
            big = await load_contacts(client, args.size - 1000, 7200, log=say)
            say(f"    filled {args.size:,} in {big.seconds + small.seconds:.0f}s ({big.path})")
            await probe(system, client, small.ids + big.ids, f"{args.size:,}")
            await client.close()
        finally:
            system.stop()
        data = Path(directory) / "store-data"
        size = sum(p.stat().st_size for p in data.iterdir() if p.is_file())
        say(f"    data directory: {size / 2**20:.0f} MiB")
        for attempt in range(3):
            system = durable_system(Path(directory), args.baseline).start(timeout=600)
            try:
                ready = [
                    float(m.group(1))
                    for line in list(system.lines)
                    if (m := re.search(r"cqrs-flow \| store ready in ([\d.]+)s", line))
                ]
                loaded = [line for line in system.lines if "data in" in line]
                say(f"    restart {attempt + 1}: store ready in {ready} s; {loaded[-1:]}")
            finally:
                system.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["writes", "fill"])
    parser.add_argument("--baseline", default=None, help="another source tree to compare with")
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--tmp", default=None, help="directory for the data directory")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(writes(args) if args.what == "writes" else fill(args))


if __name__ == "__main__":
    main()
