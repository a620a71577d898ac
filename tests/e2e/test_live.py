"""Live subscriptions against a real `cqrs-flow up` of examples/library (durable store), driven
the way users drive them: the Python gql client over WebSocket (graphql-transport-ws), and
mutations through the gateway. The first message is the state, then every change in order; no
change is missed or repeated while subscribers join under concurrent writes; a filtered list
tells what joins and leaves it; a client resumes after the last position it saw.

They need a store that keeps a change log and a reader that passes cqrs_flow.Changes on; where
the store does not (the gateway answers NO_CHANGE_LOG), the module is skipped, saying so."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from system import System, prepare, wait_until

gql = pytest.importorskip("gql")
from gql.transport.aiohttp_websockets import AIOHTTPWebsocketsTransport  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "library"

ONE = """subscription($id: String!, $after: String) {
  bookChanged(id: $id, after: $after) { op position key matches document { id title year } }
}"""
LIST = """subscription($where: BookWhere, $after: String) {
  booksChanged(where: $where, after: $after) {
    op position key matches has_more document { id title genre } documents { id title }
  }
}"""
ADD = """mutation($id: String!, $title: String!, $year: Int!, $genre: Genre) {
  addBooks(books: [{id: $id, title: $title, year: $year, genre: $genre}]) { status message }
}"""
UPDATE = """mutation($id: String!, $title: String!, $year: Int!, $genre: Genre) {
  updateBook(id: $id, title: $title, year: $year, genre: $genre) { status message }
}"""
REMOVE = "mutation($id: String!) { removeBook(id: $id) { status message } }"
YEAR = "query($id: String!) { book(id: $id) { year } }"


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> System:
    """The library example on a durable store, with a short write delay; skipped, saying why,
    when its store keeps no change log."""
    topology = prepare(
        "library.yaml",
        tmp_path_factory.mktemp("live"),
        source=EXAMPLE / "topology.yaml",
        stop_timeout="3s",
        # without its end-user auth, as if every caller were a librarian (test_library_auth.py)
        **{
            "nodes.writer.delay": "50ms",
            "nodes.store.data": "store-data",
            "nodes.gateway.auth": None,
        },
    )
    system = System(topology).start()
    try:
        # A position beyond the log's end is refused at once: OUT_OF_RANGE where there is a log.
        (probe,) = asyncio.run(Subscription(system, ONE, id="probe", after="999999999").first(1))
        codes = [e.get("extensions", {}).get("code") for e in getattr(probe, "errors", ())]
        if "NO_CHANGE_LOG" in codes:
            pytest.skip("the store keeps no change log (cqrs_flow.Changes is not served)")
        assert codes == ["OUT_OF_RANGE"], probe
        yield system
    finally:
        system.stop()


class Subscription:
    """One gql client's subscription over WebSocket, read in the background."""

    def __init__(self, system: System, query: str, **variables: Any) -> None:
        self.url = f"ws://{system.gateway.listen.target}/graphql"
        self.query = query
        self.variables = variables
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Subscription:
        self.task = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        transport = AIOHTTPWebsocketsTransport(
            url=self.url, subprotocols=[AIOHTTPWebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
        )
        try:
            async with gql.Client(transport=transport) as session:
                request = gql.GraphQLRequest(self.query, variable_values=self.variables)
                async for result in session.subscribe(request):
                    (value,) = result.values()
                    await self.messages.put(value)
        except Exception as exc:  # the subscription's error, as the client raises it
            await self.messages.put(exc)

    async def next(self, timeout: float = 15.0) -> Any:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def take(self, count: int) -> list[Any]:
        return [await self.next() for _ in range(count)]

    async def first(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Up to `count` messages, fewer when the subscription ends or stays quiet."""
        self.start()
        found: list[Any] = []
        try:
            while len(found) < count:
                found.append(await self.next(timeout))
                if isinstance(found[-1], Exception):
                    break
        except TimeoutError:
            pass
        finally:
            await self.close()
        return found

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def mutate(system: System, query: str, **variables: Any) -> None:
    answer = await asyncio.to_thread(system.data, query, variables)
    (result,) = answer.values()
    assert result["status"] == "OK", result


async def add_book(system: System, title: str, year: int = 2000, genre: str = "FICTION") -> str:
    key = str(uuid.uuid4())
    await mutate(system, ADD, id=key, title=title, year=year, genre=genre)
    await asyncio.to_thread(wait_until, lambda: system.data(YEAR, {"id": key})["book"] is not None)
    return key


def test_the_first_message_is_the_book_then_each_change_in_order(library):
    async def scenario() -> list[Any]:
        key = await add_book(library, "Mort", 1987)
        stream = Subscription(library, ONE, id=key).start()
        messages = [await stream.next()]
        await mutate(library, UPDATE, id=key, title="Mort", year=1988)
        await mutate(library, UPDATE, id=key, title="Mort (2nd ed.)", year=1988)
        await mutate(library, REMOVE, id=key)
        messages += await stream.take(3)
        await stream.close()
        return messages

    current, first, second, removed = asyncio.run(scenario())
    assert (current["op"], current["matches"], current["document"]["title"]) == (
        "CURRENT",
        True,
        "Mort",
    )
    assert [(m["op"], m["document"]["year"]) for m in (first, second)] == [
        ("UPDATE", 1988),
        ("UPDATE", 1988),
    ]
    assert second["document"]["title"] == "Mort (2nd ed.)"
    assert (removed["op"], removed["matches"], removed["document"]) == ("DELETE", False, None)
    positions = [int(m["position"]) for m in (current, first, second, removed)]
    assert positions == sorted(set(positions))


def test_no_change_is_missed_or_repeated_while_subscribers_join_under_writes(library):
    """A book's year goes 1, 2, ... 40, one mutation after another, while six clients subscribe
    at different moments: each sees the year it started from, then every later year once, in
    order (the state is read at a log position and the follow starts right after it)."""
    last = 40

    async def scenario() -> list[list[int]]:
        key = await add_book(library, "Counting", 0)
        streams: list[Subscription] = []

        def write() -> None:
            for year in range(1, last + 1):
                answer = library.data(UPDATE, {"id": key, "title": "Counting", "year": year})
                assert answer["updateBook"]["status"] == "OK"

        writer = threading.Thread(target=write)
        writer.start()
        for _ in range(6):
            streams.append(Subscription(library, ONE, id=key).start())
            await asyncio.sleep(0.05)
        await asyncio.to_thread(writer.join)
        seen = []
        for stream in streams:
            years = [(await stream.next())["document"]["year"]]
            while years[-1] < last:
                years.append((await stream.next())["document"]["year"])
            seen.append(years)
            await stream.close()
        return seen

    for years in asyncio.run(scenario()):
        assert years == list(range(years[0], last + 1))


def test_a_filtered_list_starts_with_its_books_then_tells_what_joins_and_leaves(library):
    prefix = f"live-list {uuid.uuid4().hex[:6]} "
    where = {"genre": {"eq": "SCIENCE"}, "title": {"prefix": prefix}}

    async def scenario() -> list[Any]:
        kept = await add_book(library, prefix + "kept", genre="SCIENCE")
        await add_book(library, prefix + "fiction", genre="FICTION")
        stream = Subscription(library, LIST, where=where).start()
        messages = [await stream.next()]
        joining = await add_book(library, prefix + "joins", genre="SCIENCE")
        await add_book(library, prefix + "not shown", genre="HISTORY")
        await mutate(library, UPDATE, id=kept, title=prefix + "kept", year=2000, genre="HISTORY")
        messages += await stream.take(2)
        await stream.close()
        # Resumed after the first message: the same two changes, and nothing of the others.
        again = Subscription(library, LIST, where=where, after=messages[0]["position"]).start()
        messages += await again.take(2)
        with pytest.raises(TimeoutError):
            await again.next(0.5)
        await again.close()
        return [joining, *messages]

    joining, current, joined, left, *resumed = asyncio.run(scenario())
    assert [(m["op"], m["key"], m["matches"]) for m in resumed] == [
        ("INSERT", joined["key"], True),
        ("UPDATE", left["key"], False),
    ]
    assert current["op"] == "CURRENT" and current["has_more"] is False
    assert [d["title"] for d in current["documents"]] == [prefix + "kept"]
    assert (joined["op"], joined["key"], joined["matches"]) == ("INSERT", joining, True)
    assert joined["document"]["genre"] == "SCIENCE"
    assert (left["op"], left["matches"], left["document"]) == ("UPDATE", False, None)


def test_a_client_resumes_after_the_last_position_it_saw(library):
    async def scenario() -> tuple[list[Any], list[Any]]:
        key = await add_book(library, "Resumed", 0)
        stream = Subscription(library, ONE, id=key).start()
        await stream.next()
        await mutate(library, UPDATE, id=key, title="Resumed", year=1)
        seen = await stream.next()
        await stream.close()
        for year in (2, 3):
            await mutate(library, UPDATE, id=key, title="Resumed", year=year)
        await asyncio.to_thread(
            wait_until, lambda: library.data(YEAR, {"id": key})["book"]["year"] == 3
        )
        again = Subscription(library, ONE, id=key, after=seen["position"]).start()
        resumed = await again.take(2)
        with pytest.raises(TimeoutError):  # nothing more: no first message, no repeat
            await again.next(0.5)
        await again.close()
        return [seen], resumed

    (seen,), resumed = asyncio.run(scenario())
    assert [(m["op"], m["document"]["year"]) for m in resumed] == [("UPDATE", 2), ("UPDATE", 3)]
    assert int(resumed[0]["position"]) > int(seen["position"])
