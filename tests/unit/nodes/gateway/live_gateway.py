"""The library gateway's engine and change feed against a stand-in reader (fake_log.py), as the
live subscription tests drive it: `run(library, scenario)` gives a scenario the Gateway and its
FakeLog; `Gateway.subscribe` a Stream of the subscription's messages."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.nodes.gateway.cursors import Cursors
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.fanout import SharedEngine
from cqrs_flow.nodes.gateway.feed import ChangeFeed, ChangesClient
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.refusals import Refused
from cqrs_flow.nodes.gateway.resolvers import Resolvers
from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.security.tokens import Credentials
from cqrs_flow.stores.find import Indexes
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import DOCUMENTS_SERVICE, Limits
from cqrs_flow.topology.problems import Problems
from cqrs_flow.transport.rpc import ServiceClient

from .fake_log import FakeLog
from .fakes import FakeMqtt

ROOT = Path(__file__).resolve().parents[4]
LIBRARY = ROOT / "examples" / "library" / "topology.yaml"
BOOK_INDEXES = Indexes("id", ("title", "author_id", "year", "genre", "available"))

ONE = """subscription($id: String!, $after: String) {
  bookChanged(id: $id, after: $after) {
    op position key matches command_id document { id title year genre }
  }
}"""
LIST = """subscription($where: BookWhere, $first: Int, $after: String) {
  booksChanged(where: $where, first: $first, after: $after) {
    op position key matches has_more document { id title } documents { id title }
  }
}"""


@dataclasses.dataclass
class Library:
    topology: Any
    protos: Any
    plan: Any


def load_library() -> Library:
    """The library example's topology, protos and gateway plan."""
    topology = load_topology(LIBRARY)
    protos = compile_protos(list(topology.protos), topology.root)
    plan = gateway_plan(topology, topology.nodes["gateway"], protos, Problems(topology.located))
    assert plan is not None
    return Library(topology, protos, plan)


class Stream:
    """One subscription's messages, read in the background as a client reads them."""

    def __init__(self, results: AsyncIterator[dict[str, Any]]) -> None:
        self.messages: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._read(results))

    async def _read(self, results: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for result in results:
                await self.messages.put(result)
        except Exception as exc:
            await self.messages.put(exc)

    async def next(self, timeout: float = 5.0) -> Any:
        """The next message's value (the subscription field's), or the exception it ended with."""
        found = await asyncio.wait_for(self.messages.get(), timeout)
        if isinstance(found, BaseException) or found.get("errors"):
            return found
        (value,) = found["data"].values()
        return value

    async def take(self, count: int) -> list[Any]:
        return [await self.next() for _ in range(count)]

    async def nothing(self, wait: float = 0.2) -> bool:
        """Whether no message comes within `wait`."""
        await asyncio.sleep(wait)
        return self.messages.empty()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Gateway:
    """The library gateway's engine and feed against a FakeLog."""

    def __init__(self, library: Library, log: FakeLog, **limits: Any) -> None:
        self.library = library
        self.log = log
        self.limits = dataclasses.replace(Limits(), **limits)
        self.streams: list[Stream] = []

    async def __aenter__(self) -> Gateway:
        library, log = self.library, self.log
        credentials = Credentials("gateway", "token")
        self.documents = ServiceClient(
            library.protos, library.protos.service(DOCUMENTS_SERVICE), log.target, credentials
        )
        self.changes = ChangesClient(library.protos, log.target, credentials)
        self.feed = ChangeFeed(
            self.changes, library.plan.documents.entities, ["Book"], self.limits, linger=0.2
        )
        delivery = Delivery("status", FakeMqtt(connected=True), Outbox(60.0), logging.getLogger())
        resolvers = Resolvers(
            None,  # type: ignore[arg-type]  (no query here asks the reader's own RPCs)
            [],
            delivery,
            100,
            logging.getLogger(),
            documents=self.documents,
            cursors=Cursors("secret"),
            page_size=self.limits.page_size,
            feed=self.feed,
        )
        self.engine = SharedEngine(await resolvers.engine(library.plan, "live-test"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stream in self.streams:
            await stream.close()
        await self.feed.close()
        await self.changes.close()
        await self.documents.close()

    def subscribe(self, query: str, **variables: Any) -> Stream:
        stream = Stream(self.engine.subscribe(query, variables=variables, context={}))
        self.streams.append(stream)
        return stream

    async def query(self, query: str) -> Any:
        return await self.engine.execute(query, context={})


def book(library: Library, key: str, title: str = "T", year: int = 2000, genre: str = "FICTION"):
    return library.protos.message_class("library.Book")(id=key, title=title, year=year, genre=genre)


def run(library: Library, scenario: Any, changes: bool = True, **limits: Any) -> Any:
    async def main() -> Any:
        log = await FakeLog(library.protos, changes=changes).start()
        log.indexes["Book"] = BOOK_INDEXES
        try:
            async with Gateway(library, log, **limits) as gateway:
                return await scenario(gateway, log)
        finally:
            await log.stop()

    return asyncio.run(main())


def code_of(ended: Any) -> str:
    assert isinstance(ended, Refused), ended
    return ended.code
