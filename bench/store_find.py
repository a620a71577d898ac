"""Pages deep in a large collection cost what a first page of a small one costs: the backends'
`find`, timed in-process (no gRPC), as microseconds per call (median of --reps calls).

Builds a collection of 1,000 documents and one of --size (1,000,000 by default) through the
backend's insert_many in batches of --batch, with `city` (100 values: each matches 1 %) and
`name` indexed, then times:

    first page      a first page of 20 of the 1,000-document collection: the reference
    after           a page of 20 after a position near the end of the large one (insertion order)
    eq 1 %          the same with `city eq <one of 100>`
    by name         a page of 20 after a position near the end, ordered by `name`
    eq 1 %, by name `city eq` ordered by `name` (the filter's matches read and sorted: not a
                    target, a cost to know)
    total           `city eq`, with its total counted (the matches' index entries are read)

Each figure is also given as a ratio to the first one (target: <= 2x). Positions "near the
end" are taken at random among the 1,000 last of the order (or of the filter's matches).

The in-memory store also reports a floor: 20 `get`s of random keys, in each collection. A page
of 20 documents scattered over a million pays what those do (CPU cache misses), whatever the
index, while a page of the small collection stays in the caches.

    python bench/store_find.py                                  # the durable store (SQLite)
    python bench/store_find.py --backend memory                 # the in-memory store
    python bench/store_find.py --size 100000 --reps 500 --tmp /var/tmp
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cqrs_flow.stores.base import Condition, Find
from cqrs_flow.stores.find import Indexes

INDEXES = Indexes("id", ("city", "name"))
CITIES = 100


def document(i: int) -> dict:
    return {
        "id": f"k{i:08d}",
        "name": f"Contact {(i * 7919) % 1_000_003:07d}",  # an order unlike the insertion order
        "city": f"city{i % CITIES:02d}",
        "last_updated": "2024-05-06T07:08:09.010Z",
    }


async def open_backend(kind: str, directory: Path, name: str):
    if kind == "memory":
        from cqrs_flow.stores import MemoryStore

        return MemoryStore(name, indexes=INDEXES)
    from cqrs_flow.stores import SqliteStore

    return await SqliteStore.open(directory / name, name, indexes=INDEXES)


async def build(store, size: int, batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, size, batch):
        await store.insert_many(
            {f"k{i:08d}": document(i) for i in range(first, min(first + batch, size))}
        )
    return time.perf_counter() - start


async def timed(calls: dict[str, tuple[object, list[Find]]]) -> dict[str, float]:
    """Median microseconds of a find for each figure (store, queries), the figures' calls
    interleaved (one of each in turn), so that a machine busier at one moment than at another
    weighs on every figure alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    rounds = max(len(queries) for _, queries in calls.values())
    for i in range(rounds):
        for name, (store, queries) in calls.items():
            if i < len(queries):
                start = time.perf_counter()
                page = await store.find(queries[i])  # type: ignore[attr-defined]
                times[name].append(time.perf_counter() - start)
                assert page.documents, queries[i]
    return {name: statistics.median(spent) * 1e6 for name, spent in times.items()}


async def near_the_end(store, rng: random.Random, reps: int, **query) -> list[Find]:
    """`reps` pages of 20, each after a position among the 1,000 last of the order."""
    tail = await store.find(Find(last=1000, **query))
    return [
        Find(
            first=20, after=rng.choice(tail.positions[: max(1, len(tail.positions) - 20)]), **query
        )
        for _ in range(reps)
    ]


async def gets(store, size: int, rng: random.Random, reps: int) -> float:
    """Median microseconds of 20 gets of random keys (the in-memory store's floor)."""
    times = []
    for _ in range(reps):
        keys = [f"k{rng.randrange(size):08d}" for _ in range(20)]
        start = time.perf_counter()
        for key in keys:
            await store.get(key)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def city(rng: random.Random) -> tuple[Condition, ...]:
    return (Condition("city", "eq", (f"city{rng.randrange(CITIES):02d}",)),)


async def main(args) -> None:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(dir=args.tmp) as directory:
        small = await open_backend(args.backend, Path(directory), "small")
        await build(small, 1000, args.batch)
        large = await open_backend(args.backend, Path(directory), "large")
        built = await build(large, args.size, args.batch)
        gc.collect()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"backend {args.backend}: {args.size:,} documents built through insert_many "
            f"(batches of {args.batch:,}) in {built:.1f} s; max RSS {rss:.0f} MiB",
            flush=True,
        )
        filtered = []
        for _ in range(args.reps // 10):
            filtered += await near_the_end(large, rng, 10, where=city(rng))
        figures = await timed(
            {
                "first page (1,000)": (small, [Find(first=20)] * args.reps),
                "after": (large, await near_the_end(large, rng, args.reps)),
                "eq 1 %": (large, filtered),
                "by name": (large, await near_the_end(large, rng, args.reps, order_by="name")),
            }
        )
        slow = max(5, args.reps // 40)  # not targets: costs to know, fewer calls
        by_name = []
        for _ in range(slow):
            by_name += await near_the_end(large, rng, 1, where=city(rng), order_by="name")
        counted = [Find(where=city(rng), first=20, total=True) for _ in range(slow)]
        figures |= await timed(
            {"eq 1 %, by name": (large, by_name), "total of eq 1 %": (large, counted)}
        )
        reference = figures["first page (1,000)"]
        print(f"{'page of 20':<22} {'us':>9} {'ratio':>6}")
        for name, value in figures.items():
            print(f"{name:<22} {value:>9.1f} {value / reference:>6.2f}", flush=True)
        if args.backend == "memory":
            floors = [
                await gets(store, size, rng, args.reps)
                for store, size in ((small, 1000), (large, args.size))
            ]
            print(
                f"floor: 20 gets at random, {floors[0]:.1f} us among 1,000, {floors[1]:.1f} us "
                f"among {args.size:,} ({floors[1] / floors[0]:.2f}x)"
            )
        await small.close()
        await large.close()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "memory"])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--tmp", default=None, help="directory for the durable store's files")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(arguments()))
