"""Pages deep in a million documents, as a client sees them: GraphQL queries over HTTP to
`cqrs-flow up` of examples/library on a durable store, timed end to end (gateway, reader, store).

Fills the store's data directory before the system starts (through the store's own backend,
insert_many in batches: a million documents through mutations would take many minutes and
measure the write path, not the read one): 1,000 authors and --size books (1,000,000 by
default), each book with a `genre` among 4 and a `year` among 100 (so `year eq` matches 1 %).
Then times, median of --reps requests each, the requests of all figures interleaved:

    first page      authors(first: 20): a first page of the 1,000-document collection
    after           books(first: 20, after: <a cursor near the end>)
    eq 1 %          books(first: 20, after: <near the end of the matches>, where: {year: {eq: Y}})
    by year         books(first: 20, after: <near the end>, orderBy: {field: year})

each as milliseconds and as a ratio to the first (target: <= 2x). The cursors near the end are
found by paging to there first (not timed).

    python bench/paging.py
    python bench/paging.py --size 100000 --reps 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, System, prepare, say

YEARS = 100
GENRES = ("FICTION", "NON_FICTION", "SCIENCE", "HISTORY")
STAMP = "2026-01-02T03:04:05.006Z"


def book(i: int) -> dict:
    return {
        "id": f"b{i:08d}",
        "title": f"Book {i}",
        "author_id": f"a{i % 1000:05d}",
        "tags": [],
        "year": 1900 + i % YEARS,
        "rating": 0.0,
        "available": True,
        "genre": GENRES[i % len(GENRES)],
        "updated_at": STAMP,
    }


async def fill(data: Path, size: int, batch: int) -> float:
    """The library's collections in `data`, as the store node opens them; seconds it took."""
    from cqrs_flow.stores.find import Indexes
    from cqrs_flow.stores.sqlite import SqliteStore, Table
    from cqrs_flow.topology import load_topology

    topology = load_topology(REPO / "examples" / "library" / "topology.yaml")
    tables = {
        e.collection: Table(e.timestamp, Indexes(e.key, e.indexes))
        for e in topology.entities.values()
    }
    started = time.monotonic()
    stores = await SqliteStore.open_many(data, tables)
    by_name = {s.collection: s for s in stores}
    authors = {
        f"a{i:05d}": {
            "id": f"a{i:05d}",
            "name": f"Author {i}",
            "born": 1900 + i % 100,
            "updated_at": STAMP,
        }
        for i in range(1000)
    }
    await by_name["authors"].insert_many(authors)
    for start in range(0, size, batch):
        await by_name["books"].insert_many(
            {d["id"]: d for d in map(book, range(start, min(size, start + batch)))}
        )
    await stores[0].close()
    return time.monotonic() - started


def post(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        result = json.loads(answer.read())
    if "errors" in result:
        raise RuntimeError(result["errors"])
    return result["data"]


BOOKS = """query($after: String, $where: BookWhere, $orderBy: BookOrder) {
  books(first: 20, after: $after, where: $where, orderBy: $orderBy) {
    edges { cursor node { id title year genre } } pageInfo { hasNextPage endCursor } } }"""
LAST = """query($where: BookWhere, $orderBy: BookOrder) {
  books(last: 1000, where: $where, orderBy: $orderBy) { edges { cursor } } }"""
AUTHORS = "{ authors(first: 20) { edges { cursor node { id name born } } } }"


def middle(data: dict) -> str:
    """The cursor halfway through the last 1,000 of an order: 500 before its end."""
    edges = data["books"]["edges"]
    return str(edges[len(edges) // 2]["cursor"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--tmp", default=None, help="where the data directory goes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        work = Path(tmp)
        say(f"filling {args.size:,} books and 1,000 authors ...")
        took = asyncio.run(fill(work / "library-data", args.size, args.batch))
        say(f"filled in {took:.1f} s")
        topology = prepare(
            REPO / "examples" / "library" / "topology.yaml",
            work,
            {"nodes.store.data": "library-data", "nodes.gateway.auth": None},
        )
        with System(topology) as system:
            url = system.topology.nodes["gateway"].url  # type: ignore[attr-defined]
            year = {"year": {"eq": 1950}}
            by_year = {"field": "year"}
            # cursors near the end: among the last 1,000 of each order (paged to, not timed)
            near = {
                "after": middle(post(url, LAST)),
                "eq 1 %": middle(post(url, LAST, {"where": year})),
                "by year": middle(post(url, LAST, {"orderBy": by_year})),
            }
            requests = {
                "first page": (AUTHORS, {}),
                "after": (BOOKS, {"after": near["after"]}),
                "eq 1 %": (BOOKS, {"after": near["eq 1 %"], "where": year}),
                "by year": (BOOKS, {"after": near["by year"], "orderBy": by_year}),
            }
            times: dict[str, list[float]] = {name: [] for name in requests}
            for _ in range(20):  # warm up
                for query, variables in requests.values():
                    post(url, query, variables)
            for _ in range(args.reps):
                for name, (query, variables) in requests.items():
                    started = time.perf_counter()
                    data = post(url, query, variables)
                    times[name].append(time.perf_counter() - started)
                    edges = data["authors" if name == "first page" else "books"]["edges"]
                    assert len(edges) == 20, (name, len(edges))
    reference = statistics.median(times["first page"])
    say(f"\n{args.size:,} books; pages of 20 over HTTP, median of {args.reps} requests each")
    say("| page of 20 | ms | ratio |")
    say("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        say(f"| {name} | {median * 1000:.2f} | {median / reference:.2f} |")
    worst = max(statistics.median(v) for v in times.values()) / reference
    say(f"\n{'PASS' if worst <= 2 else 'MISS'}: the dearest page is {worst:.2f}x the first page")


if __name__ == "__main__":
    main()
