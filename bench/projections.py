"""Projections and the change log, on real processes: the lag from a change in the store to the
read model, the rate of a replay against inserting the same documents directly, and what the log
costs a write.

    python bench/projections.py lag [--rate 1000] [--seconds 10] [--follows reader] [--memory]
    python bench/projections.py replay [--books 20000] [--follows reader] [--memory]

Both run examples/library (a durable store, `data:`) with projections of bench/projection_plugins.py
beside its own. `lag`: loans written through the store's write service at a fixed rate (an open
loop: a call is started every 1/rate s, whatever the answers do); the `tally` projection keeps,
per loan, the positions it handled, so the log itself says when each change reached the read
model (the read model's change carries its time, `at`, taken by the same store process as the
loan's): lag = at(first read model change holding the position) - at(the loan's change), p50 and
p99 over every change after a warm-up. `replay`: the floor is the same number of books inserted
directly, through the store's write service in batches (AddBooks, insert_many), into a system
without the projection; then a system with the `copies` projection is filled the same way, the
live projection catches up, and `cqrs-flow replay copies` rebuilds its read model from position 0
(its own report: changes replayed per second between its start and its switch).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, SECRET, System, cli, prepare, say

LIBRARY = REPO / "examples" / "library" / "topology.yaml"
PLUGINS = Path(__file__).resolve().parent / "projection_plugins.py"


def library(
    directory: Path,
    follows: str,
    projections: tuple[str, ...],
    data: bool = True,
    batch: int | None = None,
) -> System:
    """The library example (durable with `data`) with the bench's projections (`tally`,
    `copies`) instead of its own, so that the store serves only what is measured."""
    import yaml

    source = directory / "source"
    shutil.copytree(LIBRARY.parent, source)
    shutil.copy(PLUGINS, source / "bench_projections.py")
    topology = yaml.safe_load(LIBRARY.read_text())
    topology["entities"]["LoanTally"] = {
        "document": "library.MemberLoans",
        "collection": "loan_tally",
        "key": "member",
    }
    topology["entities"]["BookCopy"] = {"document": "library.Book", "collection": "book_copies"}
    store = topology["nodes"]["store"]
    store["entities"] += ["LoanTally", "BookCopy"]
    if data:
        store["data"] = "store-data"
    # BookCopy documents are library.Book too: the book RPCs name their entity
    store["write"]["rpcs"].update(
        {"AddBook": "Book.insert", "UpdateBook": "Book.update", "AddBooks": "Book.insert_many"}
    )
    store["read"]["rpcs"]["GetBook"] = "Book.get"
    del topology["nodes"]["loans"]
    made = {
        "tally": ("LoanTally", "bench_projections.ChangeTally"),
        "copies": ("BookCopy", "bench_projections.BookCopies"),
    }
    for name in projections:
        entity, plugin = made[name]
        topology["nodes"][name] = {
            "kind": "projection",
            "follows": follows,
            "store": "store.write",
            "entity": entity,
            "plugin": plugin,
            **({"batch": batch} if batch else {}),
        }
    (source / "topology.yaml").write_text(yaml.safe_dump(topology, sort_keys=False))
    return System(prepare(source / "topology.yaml", directory / "run"))


class Store:
    """The library's store services, called with node credentials."""

    def __init__(self, system: System) -> None:
        from cqrs_flow.protobuf.compiler import (
            CHANGES_SERVICE,
            PROJECTIONS_SERVICE,
            compile_protos,
        )
        from cqrs_flow.security.tokens import Credentials, derive_token
        from cqrs_flow.transport.rpc import ServiceClient

        topology = system.topology
        self.protos = compile_protos(list(topology.protos), topology.root)
        store = topology.nodes["store"]

        def client(service: str, address: Any, node: str) -> ServiceClient:
            return ServiceClient(
                self.protos,
                self.protos.service(service),
                address.target,
                Credentials(node, derive_token(SECRET, node)),
                timeout=60.0,
            )

        self.write = client(store.write.name, store.write.listen, "writer")
        self.changes = client(CHANGES_SERVICE, store.read.listen, "reader")
        self.projections = {
            name: client(PROJECTIONS_SERVICE, store.write.listen, name)
            for name in ("tally", "copies")
            if name in topology.nodes
        }

    def message(self, name: str, **fields: Any) -> Any:
        return self.protos.message_class(f"library.{name}")(**fields)

    async def lend(self, i: int) -> None:
        loan = self.message(
            "Loan",
            id=f"loan-{i}-{uuid.uuid4().hex[:8]}",
            book_id=f"b{i % 97}",
            member=f"m{i % 31}",
            due="2027-01-31",
        )
        await self.write.call("AddLoan", self.message("AddLoanRequest", loan=loan))

    async def add_books(self, count: int, batch: int = 500) -> float:
        """Insert `count` books in batches; the seconds it took."""
        started = time.perf_counter()
        for start in range(0, count, batch):
            books = [
                self.message(
                    "Book",
                    id=f"book-{i}-{uuid.uuid4().hex[:6]}",
                    title=f"Book {i}",
                    author_id=f"a{i % 50}",
                    tags=["bench", f"t{i % 7}"],
                    year=1900 + i % 120,
                    rating=(i % 50) / 10,
                    available=bool(i % 2),
                )
                for i in range(start, min(start + batch, count))
            ]
            await self.write.call("AddBooks", self.message("AddBooksRequest", books=books))
        return time.perf_counter() - started

    async def last(self, entity: str) -> int:
        """The position of the last change of `entity` (0: none)."""
        request = self.changes.request_class("Follow")(after=0, entities=[entity], wait=False)
        last = 0
        async for change in self.changes.stream("Follow", request, timeout=600):
            last = change.position
        return last

    async def position(self, projection: str) -> int:
        client = self.projections[projection]
        state = await client.call("State", client.request_class("State")())
        return int(state.position)

    async def caught_up(self, projection: str, position: int, timeout: float = 300.0) -> float:
        """Wait until `projection` has reached `position`; the seconds waited."""
        started = time.monotonic()
        while await self.position(projection) < position:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{projection} did not reach position {position}")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def log(self) -> list[Any]:
        request = self.changes.request_class("Follow")(after=0, wait=False)
        return [change async for change in self.changes.stream("Follow", request, timeout=600)]

    async def close(self) -> None:
        for client in (self.write, self.changes, *self.projections.values()):
            await client.close()


# -- lag ----------------------------------------------------------------------------------------


async def drive(store: Store, rate: float, seconds: float, first: int) -> tuple[int, float]:
    """Loans at `rate` per second for `seconds` (open loop); (calls made, seconds taken)."""
    count = int(rate * seconds)
    calls: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.get_running_loop().create_task(store.lend(first + i))
        calls.add(task)
        task.add_done_callback(calls.discard)
    await asyncio.gather(*calls)
    return count, time.perf_counter() - started


def lags(changes: list[Any], store: Store, after: int) -> list[float]:
    """Seconds from each Loan change after position `after` to the tally change that first
    holds its position."""
    made = {c.position: c.at for c in changes if c.entity == "Loan" and c.position > after}
    tally = store.protos.message_class("library.MemberLoans")
    reached: dict[int, str] = {}
    for change in changes:
        if change.entity == "LoanTally" and change.op != "delete":
            for position in map(int, tally.FromString(change.document).loans):
                reached.setdefault(position, change.at)
    missing = set(made) - set(reached)
    if missing:
        raise RuntimeError(f"{len(missing)} changes never reached the read model")
    return [_seconds(reached[p]) - _seconds(made[p]) for p in made]


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def measure_lag(system: System, rate: float, seconds: float) -> dict[str, float]:
    store = Store(system)
    try:
        await drive(store, min(rate, 200.0), 1.0, 0)  # warm-up: channels, caches, the file
        warm = await store.last("Loan")
        await store.caught_up("tally", warm)
        made, took = await drive(store, rate, seconds, 1_000_000)
        waited = await store.caught_up("tally", await store.last("Loan"))
        found = sorted(lags(await store.log(), store, warm))
        return {
            "changes": len(found),
            "rate": made / took,
            "p50": statistics.median(found),
            "p99": found[int(len(found) * 0.99) - 1],
            "max": found[-1],
            "tail": waited,
        }
    finally:
        await store.close()


# -- replay ---------------------------------------------------------------------------------------


async def fill(system: System, books: int) -> float:
    store = Store(system)
    try:
        await store.add_books(500)  # warm-up
        return (books - 500) / await store.add_books(books - 500)
    finally:
        await store.close()


def replay(system: System) -> tuple[int, float, str]:
    done = subprocess.run(
        [*cli(), "replay", str(system.file), "copies"],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    found = re.search(
        r"replayed ([\d,]+) changes .* in ([\d.]+)s \(([\d,]+) changes/s\)", done.stdout
    )
    if not found:
        raise RuntimeError(done.stdout)
    changes, rate = int(found.group(1).replace(",", "")), float(found.group(3).replace(",", ""))
    return changes, rate, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figure", choices=["lag", "replay"])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--books", type=int, default=20_000)
    parser.add_argument(
        "--follows", default="store.read", help="store.read (as the example) or reader"
    )
    parser.add_argument("--memory", action="store_true", help="a store without data: (in memory)")
    parser.add_argument("--batch", type=int, help="the projections' batch (default: the spec's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        if args.figure == "lag":
            system = library(Path(directory), args.follows, ("tally",), not args.memory).start()
            try:
                found = asyncio.run(measure_lag(system, args.rate, args.seconds))
            finally:
                system.stop()
            say(
                f"projection lag, following {args.follows} of a store "
                f"{'in memory' if args.memory else 'with data:'}, {found['changes']:,} changes at "
                f"{found['rate']:,.0f}/s: p50 {found['p50'] * 1000:.1f} ms, p99 "
                f"{found['p99'] * 1000:.1f} ms, max {found['max'] * 1000:.1f} ms (the last change "
                f"reached the read model {found['tail']:.2f} s after the load ended)"
            )
            return
        floor_system = library(Path(directory) / "floor", args.follows, (), not args.memory).start()
        try:
            floor = asyncio.run(fill(floor_system, args.books))
        finally:
            floor_system.stop()
        say(
            f"floor: {args.books - 500:,} books inserted directly (AddBooks, 500 a call): "
            f"{floor:,.0f} documents/s"
        )
        system = library(
            Path(directory) / "replay", args.follows, ("copies",), not args.memory, args.batch
        ).start()
        try:
            asyncio.run(fill(system, args.books))
            asyncio.run(wait_copies(system, args.books))
            changes, rate, line = replay(system)
        finally:
            system.stop()
        say(f"replay: {line}")
        say(f"replay rate / floor: {rate / floor:.2f} ({changes:,} changes; target >= 0.5)")


async def wait_copies(system: System, books: int) -> None:
    """Until the live `copies` projection has copied every book (it is idle for the replay)."""
    store = Store(system)
    try:
        await store.caught_up("copies", await store.last("Book"))
    finally:
        await store.close()


if __name__ == "__main__":
    main()
