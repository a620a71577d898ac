"""How the store's operations scale with the size of the collection.

Builds collections of 1,000 / 100,000 / 1,000,000 documents directly against a backend (no gRPC)
and times get, update, delete, insert and list(10) on each, as microseconds per call (median
over --reps calls on random keys). Flat operations give about the same figure at every size.
`dict.get` is a bare lookup of the same random keys in a plain dict of that size: the floor set
by memory latency (a random key among a million misses the CPU caches; among a thousand it does
not). The durable store also reports how long a compaction pauses the event loop, the whole
compaction, and reopening (loading the snapshot).

    python bench/store_scaling.py                         # the in-memory store
    python bench/store_scaling.py --backend durable       # the journaled store, in a temp dir
    python bench/store_scaling.py --backend other_module:SomeStore --sizes 1000,100000

Another backend is any class taking the collection name (for a comparison with an older
version of cqrs_flow/stores/memory.py, copy it aside and name it with --backend).

    python bench/store_scaling.py --commit                # durable writes: group commit vs not

--commit times concurrent inserts into the durable store with 1, 8 and 64 writers in flight, with
group commit (one fsync for every write waiting) and with one fsync per write.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import random
import resource
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TIMESTAMP = "2024-05-06T07:08:09.010Z"


def document(i: int) -> dict:
    return {"id": f"k{i:08d}", "name": f"Contact number {i}", "last_updated": TIMESTAMP}


async def open_backend(spec: str, directory: Path):
    if spec == "memory":
        from cqrs_flow.stores import MemoryStore

        return MemoryStore("bench")
    if spec == "durable":
        from cqrs_flow.stores.durable import DurableStore

        return await DurableStore.open(directory / "data", "bench")
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)("bench")


async def timed(calls) -> float:
    """Median microseconds of awaiting each call."""
    times = []
    for call in calls:
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


async def scaling(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"backend {args.backend}; microseconds per call, median of {args.reps}")
    durable = args.backend == "durable"
    print(
        f"{'documents':>10} {'build s':>8} {'get':>9} {'update':>9} {'delete':>9} {'insert':>9} "
        f"{'list(10)':>9} {'dict.get':>9} {'max RSS MB':>10}"
        + (f" {'pause ms':>9} {'compact s':>9} {'reopen s':>9}" if durable else "")
    )
    rng = random.Random(1)
    for size in sizes:
        with tempfile.TemporaryDirectory(dir=args.tmp) as directory:
            store = await open_backend(args.backend, Path(directory))
            start = time.perf_counter()
            if durable:  # one fsync per 1,000 documents, not per document
                for first in range(0, size, 1000):
                    await store.insert_many(
                        {f"k{i:08d}": document(i) for i in range(first, min(first + 1000, size))}
                    )
            else:
                for i in range(size):
                    await store.insert(f"k{i:08d}", document(i))
            built = time.perf_counter() - start
            gc.collect()
            keys = [f"k{rng.randrange(size):08d}" for _ in range(args.reps)]
            get = await timed(partial(store.get, k) for k in keys)
            changed = {"name": "changed", "last_updated": TIMESTAMP}
            update = await timed(partial(store.update, k, dict(changed)) for k in keys)
            gone = list(dict.fromkeys(keys))
            delete = await timed(partial(store.delete, k) for k in gone)
            insert = await timed(partial(store.insert, k, {"id": k, "name": "again"}) for k in gone)
            listed = await timed(partial(store.list, 10) for _ in range(args.reps))
            plain = {f"k{i:08d}": i for i in range(size)}
            reference = await timed(partial(_lookup, plain, k) for k in keys)
            del plain
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            line = (
                f"{size:>10,} {built:>8.1f} {get:>9.1f} {update:>9.1f} {delete:>9.1f} "
                f"{insert:>9.1f} {listed:>9.1f} {reference:>9.1f} {rss:>10.0f}"
            )
            if durable:
                line += await compaction(store, Path(directory))
            print(line, flush=True)
            await store.close()
            del store
            gc.collect()


async def _lookup(mapping: dict, key: str):
    return mapping.get(key)


async def compaction(store, directory: Path) -> str:
    """Columns for the durable store: event-loop pause and duration of a compaction, reopening."""
    from cqrs_flow.stores.durable import DurableStore

    loop = asyncio.get_running_loop()
    pauses: list[float] = []

    async def ticker():  # the longest the event loop went without running this
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            pauses.append(loop.time() - before - 0.001)

    tick = asyncio.ensure_future(ticker())
    start = time.perf_counter()
    await store._compact()
    compacted = time.perf_counter() - start
    tick.cancel()
    await store.close()
    start = time.perf_counter()
    reopened = await DurableStore.open(directory / "data", "bench")
    reopen = time.perf_counter() - start
    await reopened.close()
    return f" {max(pauses, default=0) * 1000:>9.0f} {compacted:>9.1f} {reopen:>9.1f}"


async def insert_each(store, queue, latencies: list[float]) -> None:
    """Insert a document for each number taken from `queue`, noting how long each insert took."""
    for i in queue:
        start = time.perf_counter()
        await store.insert(f"k{i:08d}", document(i))
        latencies.append(time.perf_counter() - start)


async def commit(args) -> None:
    from cqrs_flow.stores.durable import DurableStore

    print(f"durable inserts, {args.writes} per run, in {args.tmp or tempfile.gettempdir()}")
    print(
        f"{'in flight':>9} {'group commit':>13} {'writes/s':>9} {'fsyncs':>7} {'ms per write':>13}"
    )
    for in_flight in (1, 8, 64):
        for group in (True, False):
            with tempfile.TemporaryDirectory(dir=args.tmp) as directory:
                store = await DurableStore.open(
                    Path(directory) / "data", "bench", group_commit=group
                )
                queue = iter(range(args.writes))  # shared: each writer takes the next number
                latencies: list[float] = []
                start = time.perf_counter()
                await asyncio.gather(
                    *(insert_each(store, queue, latencies) for _ in range(in_flight))
                )
                elapsed = time.perf_counter() - start
                syncs = store.journal.syncs
                await store.close()
            print(
                f"{in_flight:>9} {'yes' if group else 'no':>13} {args.writes / elapsed:>9,.0f} "
                f"{syncs:>7} {statistics.mean(latencies) * 1e3:>13.2f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="memory", help="memory, durable or module:Class")
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--commit", action="store_true", help="time durable writes instead")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--tmp", default=None, help="directory for the durable store's files")
    args = parser.parse_args()
    asyncio.run(commit(args) if args.commit else scaling(args))


if __name__ == "__main__":
    main()
