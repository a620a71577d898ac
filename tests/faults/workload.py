"""Clients that send mutations through a gateway and record every one in a History (checker.py),
and the reads that give the checker a store's documents.

`Workload` (one per system) says how to add, update and delete a document of each entity over
GraphQL, which field holds the value each write gives it, and how to read them all. `run_lanes`
runs `lanes` clients side by side until told to stop: each goes through lives of one document
(add, wait until it can be read, up to `updates` updates, then a delete one time in two; a life
whose document cannot be read within 2 s ends with its add), one mutation at a time; a request
without an answer within `answer_timeout` is recorded LOST, and the lane starts a new life if
it does not know the document's key.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from checker import ERROR, LOST, OK, History, Op, Violation, check_loans

__all__ = ["CONTACTS", "LIBRARY", "Workload", "read_documents", "run_lanes", "statuses"]

RESULT = "{ status message id command_id }"


@dataclass(frozen=True)
class Entity:
    name: str
    add: str  # a mutation taking $v
    update: str  # taking $id and $v
    delete: str  # taking $id
    get: str  # a query taking $id, whose one field is null when there is no such document
    field: str  # the document field holding the value


@dataclass(frozen=True)
class Projected:
    """A projection node of the system: the entities whose changes it follows, its read model's
    entity, and the check that the read model is what the store's documents imply."""

    follows: tuple[str, ...]
    model: str
    check: Callable[[Mapping[str, Any], Mapping[str, Any]], list[Violation]]


@dataclass(frozen=True)
class Workload:
    entities: tuple[Entity, ...]
    list_all: dict[str, str]  # entity -> a query of every document (paged with $after if asked)
    projections: Mapping[str, Projected] = field(default_factory=dict)  # node -> what it does

    @property
    def fields(self) -> dict[str, str]:
        """entity -> the field each write gives a value of its own."""
        return {entity.name: entity.field for entity in self.entities}


CONTACTS = Workload(
    (
        Entity(
            "Contact",
            f"mutation($v: String!) {{ m: addContact(name: $v) {RESULT} }}",
            "mutation($id: String!, $v: String!)"
            f" {{ m: updateContact(id: $id, name: $v) {RESULT} }}",
            f"mutation($id: String!) {{ m: deleteContact(id: $id) {RESULT} }}",
            "query($id: String!) { d: contact(id: $id) { id } }",
            "name",
        ),
    ),
    {"Contact": "{ all: listContacts(count: 5000) { id name } }"},
)


def _library(name: str, field: str, add: str, update: str, remove: str, get: str, extra: str):
    return Entity(
        name,
        f"mutation($v: String!) {{ m: {add}({field}: $v{extra}) {RESULT} }}",
        "mutation($id: String!, $v: String!)"
        f" {{ m: {update}(id: $id, {field}: $v{extra}) {RESULT} }}",
        f"mutation($id: String!) {{ m: {remove}(id: $id) {RESULT} }}",
        f"query($id: String!) {{ d: {get}(id: $id) {{ id }} }}",
        field,
    )


def _paged(query: str, field: str) -> str:
    return (
        f"query($after: String) {{ all: {query}(first: 1000, after: $after) "
        f"{{ nodes {{ id {field} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    )


LIBRARY = Workload(
    (
        _library(
            "Author", "name", "addAuthor", "updateAuthor", "removeAuthor", "author", ", born: 1900"
        ),
        _library("Book", "title", "addBook", "updateBook", "removeBook", "book", ", year: 2000"),
        _library(
            "Loan",
            "member",
            "lendBook",
            "updateLoan",
            "removeLoan",
            "loan",
            ', book_id: "b", due: "2030-01-01"',
        ),
    ),
    {
        "Author": _paged("authors", "name"),
        "Book": _paged("books", "title"),
        "Loan": _paged("loans", "member"),
    },
    # the `loans` projection: MemberLoans from the changes of loans
    {"loans": Projected(("Loan",), "MemberLoans", check_loans)},
)


async def _post(
    http: aiohttp.ClientSession, url: str, query: str, variables: dict[str, Any], timeout: float
) -> dict[str, Any]:
    async with http.post(
        url,
        json={"query": query, "variables": variables},
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        return await response.json(content_type=None)  # type: ignore[no-any-return]


async def _mutate(
    http: aiohttp.ClientSession,
    url: str,
    history: History,
    op: Op,
    query: str,
    variables: dict[str, Any],
    timeout: float,
) -> Op:
    history.send(op)
    try:
        answer = await _post(http, url, query, variables, timeout)
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError):
        History.answer(op, LOST)
        return op
    result = (answer.get("data") or {}).get("m")
    if not isinstance(result, dict):  # an error for the whole request (a limit, a timeout)
        History.answer(op, ERROR, message=str(answer.get("errors"))[:200])
        return op
    History.answer(
        op,
        OK if result.get("status") == "OK" else ERROR,
        key=result.get("id") if result.get("status") == "OK" else None,
        command_id=result.get("command_id"),
        message=str(result.get("message"))[:200],
    )
    return op


async def _visible(
    http: aiohttp.ClientSession, url: str, entity: Entity, key: str, stop: asyncio.Event
) -> bool:
    """Wait (up to 2 s) until the document can be read: updates are checked against it. A lane
    whose reads fail (the reader or the store is away) goes on adding documents meanwhile."""
    for _ in range(20):
        if stop.is_set():
            return False
        try:
            answer = await _post(http, url, entity.get, {"id": key}, 1.0)
            if (answer.get("data") or {}).get("d"):
                return True
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError):
            pass
        await asyncio.sleep(0.1)
    return False


async def _lane(
    lane: int,
    url: str,
    workload: Workload,
    history: History,
    stop: asyncio.Event,
    rng: random.Random,
    updates: int,
    pause: float,
    timeout: float,
) -> None:
    life = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            entity = workload.entities[(lane + life) % len(workload.entities)]
            tag = f"{lane}.{life}"
            add = await _mutate(
                http,
                url,
                history,
                Op(lane, life, 0, entity.name, "add", f"{tag}.0"),
                entity.add,
                {"v": f"{tag}.0"},
                timeout,
            )
            life += 1
            if add.outcome != OK or not add.key:  # a gateway that is down: not too fast
                await asyncio.sleep(max(pause, 0.2))
                continue
            if not await _visible(http, url, entity, add.key, stop):
                continue
            step = 0
            for step in range(1, rng.randint(1, updates) + 1):
                if stop.is_set():
                    break
                await asyncio.sleep(pause)
                value = f"{tag}.{step}"
                await _mutate(
                    http,
                    url,
                    history,
                    Op(lane, life - 1, step, entity.name, "update", value, key=add.key),
                    entity.update,
                    {"id": add.key, "v": value},
                    timeout,
                )
            if rng.random() < 0.5 and not stop.is_set():
                await asyncio.sleep(pause)
                await _mutate(
                    http,
                    url,
                    history,
                    Op(lane, life - 1, step + 1, entity.name, "delete", None, key=add.key),
                    entity.delete,
                    {"id": add.key},
                    timeout,
                )
            await asyncio.sleep(pause)


async def run_lanes(
    url: str,
    workload: Workload,
    history: History,
    stop: asyncio.Event,
    seed: int,
    lanes: int = 6,
    updates: int = 4,
    pause: float = 0.02,
    answer_timeout: float = 12.0,
) -> None:
    """Send mutations from `lanes` clients until `stop` is set."""
    rng = random.Random(seed)
    await asyncio.gather(
        *(
            _lane(
                i,
                url,
                workload,
                history,
                stop,
                random.Random(rng.random()),
                updates,
                pause,
                answer_timeout,
            )
            for i in range(lanes)
        )
    )


async def read_documents(url: str, workload: Workload) -> dict[str, dict[str, str]] | None:
    """Every document of the workload's entities (entity -> key -> value); None if the gateway
    cannot answer all of it now."""
    found: dict[str, dict[str, str]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for entity in workload.entities:
                docs: dict[str, str] = {}
                after = None
                while True:
                    answer = await _post(
                        http, url, workload.list_all[entity.name], {"after": after}, 10.0
                    )
                    if answer.get("errors") or not answer.get("data"):
                        return None
                    page = answer["data"]["all"]
                    nodes = page["nodes"] if isinstance(page, dict) else page
                    docs.update({d["id"]: d[entity.field] for d in nodes})
                    if not isinstance(page, dict) or not page["pageInfo"]["hasNextPage"]:
                        break
                    after = page["pageInfo"]["endCursor"]
                found[entity.name] = docs
    except (
        aiohttp.ClientError,
        asyncio.TimeoutError,
        ConnectionError,
        ValueError,
        KeyError,
        TypeError,
    ):
        return None
    return found


async def statuses(url: str, command_ids: list[str]) -> dict[str, str | None]:
    """commandStatus of each id (its state; None if the gateway does not know it), 25 a request."""
    found: dict[str, str | None] = {}
    async with aiohttp.ClientSession() as http:
        for start in range(0, len(command_ids), 25):
            batch = command_ids[start : start + 25]
            fields = " ".join(
                f's{i}: commandStatus(id: "{cid}") {{ state }}' for i, cid in enumerate(batch)
            )
            answer = await _post(http, url, f"{{ {fields} }}", {}, 10.0)
            data = answer.get("data") or {}
            for i, cid in enumerate(batch):
                entry = data.get(f"s{i}")
                found[cid] = entry["state"] if entry else None
    return found
