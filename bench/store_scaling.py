"""How the store's operations scale with the size of the collection.

Builds collections of 1,000 / 100,000 / 1,000,000 documents directly against a backend (no gRPC)
and times get, update, delete, insert and list(10) on each, as microseconds per call (median
over --reps calls on random keys). Flat operations give about the same figure at every size.
`dict.get` is a bare lookup of the same random keys in a plain dict of that size: the floor set
by memory latency (a random key among a million misses the CPU caches; among a thousand it does
not). The durable store (SQLite) also reports a page of 20 after a cursor (keyset on the
insertion order), a filtered page of 20 (a field matching 1 % of the documents, on an expression
index the bench creates), reopening, the database's size and the page cache's bound.

    python bench/store_scaling.py                         # the in-memory store
    python bench/store_scaling.py --backend sqlite        # the durable store, in a temp dir
    python bench/store_scaling.py --backend other_module:SomeStore --sizes 1000,100000

Another backend is any class taking the collection name (for a comparison with an older
version of cqrs_flow/stores/memory.py, copy it aside and name it with --backend).

    python bench/store_scaling.py --commit                # durable writes: group commit vs not

--commit times concurrent inserts into the durable store with 1, 8 and 64 writers in flight, with
group commit (one transaction, one fsync, for every write waiting) and with one per write.
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
    return {
        "id": f"k{i:08d}",
        "name": f"Contact number {i}",
        "city": f"city{i % 100:02d}",
        "last_updated": TIMESTAMP,
    }


async def open_backend(spec: str, directory: Path):
    if spec == "memory":
        from cqrs_flow.stores import MemoryStore

        return MemoryStore("bench")
    if spec in ("sqlite", "durable"):
        from cqrs_flow.stores import SqliteStore

        return await SqliteStore.open(directory / "data", "bench")
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
    durable = args.backend in ("sqlite", "durable")
    print(
        f"{'documents':>10} {'build s':>8} {'get':>9} {'update':>9} {'delete':>9} {'insert':>9} "
        f"{'list(10)':>9} {'dict.get':>9} {'max RSS MB':>10}"
        + (f" {'page>cur':>9} {'filtered':>9} {'reopen s':>9} {'file MiB':>9}" if durable else "")
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
                line += await sqlite_columns(store, Path(directory), size, args.reps)
            print(line, flush=True)
            await store.close()
            del store
            gc.collect()


async def _lookup(mapping: dict, key: str):
    return mapping.get(key)


async def sqlite_columns(store, directory: Path, size: int, reps: int) -> str:
    """Columns for the durable store: a page after a cursor and a filtered page (what the
    several-entities issue will serve, on this schema), reopening, the database's size."""
    from cqrs_flow.stores import SqliteStore

    table = store._table
    await store.database.write(
        lambda c: c.execute(
            f"CREATE INDEX IF NOT EXISTS bench_city ON {table}"
            " (json_extract(doc, '$.city'), seq) WHERE seq IS NOT NULL"
        )
    )
    rng = random.Random(2)

    def after(cursor: int):
        return store.database.read(
            lambda c: c.execute(
                f"SELECT doc FROM {table} WHERE seq > ? ORDER BY seq LIMIT 20", (cursor,)
            ).fetchall()
        )

    def filtered(city: str, cursor: int):
        return store.database.read(
            lambda c: c.execute(
                f"SELECT doc FROM {table} WHERE json_extract(doc, '$.city') = ? AND seq > ?"
                " AND seq IS NOT NULL ORDER BY seq LIMIT 20",
                (city, cursor),
            ).fetchall()
        )

    page = await timed(partial(after, rng.randrange(size)) for _ in range(reps))
    found = await timed(
        partial(filtered, f"city{rng.randrange(100):02d}", rng.randrange(size)) for _ in range(reps)
    )
    await store.close()
    start = time.perf_counter()
    reopened = await SqliteStore.open(directory / "data", "bench")
    reopen = time.perf_counter() - start
    await reopened.close()
    files = sum(p.stat().st_size for p in (directory / "data").iterdir() if p.is_file())
    return f" {page:>9.1f} {found:>9.1f} {reopen:>9.2f} {files / 2**20:>9.0f}"


async def insert_each(store, queue, latencies: list[float]) -> None:
    """Insert a document for each number taken from `queue`, noting how long each insert took."""
    for i in queue:
        start = time.perf_counter()
        await store.insert(f"k{i:08d}", document(i))
        latencies.append(time.perf_counter() - start)


async def commit(args) -> None:
    from cqrs_flow.stores import SqliteStore

    print(f"durable inserts, {args.writes} per run, in {args.tmp or tempfile.gettempdir()}")
    print(
        f"{'in flight':>9} {'group commit':>13} {'writes/s':>9} {'commits':>7} {'ms per write':>13}"
    )
    for in_flight in (1, 8, 64):
        for group in (True, False):
            with tempfile.TemporaryDirectory(dir=args.tmp) as directory:
                store = await SqliteStore.open(
                    Path(directory) / "data", "bench", group_commit=group
                )
                queue = iter(range(args.writes))  # shared: each writer takes the next number
                latencies: list[float] = []
                start = time.perf_counter()
                await asyncio.gather(
                    *(insert_each(store, queue, latencies) for _ in range(in_flight))
                )
                elapsed = time.perf_counter() - start
                syncs = store.database.commits
                await store.close()
            print(
                f"{in_flight:>9} {'yes' if group else 'no':>13} {args.writes / elapsed:>9,.0f} "
                f"{syncs:>7} {statistics.mean(latencies) * 1e3:>13.2f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="memory", help="memory, sqlite or module:Class")
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--commit", action="store_true", help="time durable writes instead")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--tmp", default=None, help="directory for the durable store's files")
    args = parser.parse_args()
    asyncio.run(commit(args) if args.commit else scaling(args))


if __name__ == "__main__":
    main()
