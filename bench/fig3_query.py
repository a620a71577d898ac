"""Figure 3: query latency and throughput through the gateway, with 100,000 contacts stored.

`contact(id)` (random stored ids) and `listContacts(count: 10)` over HTTP GraphQL at 1, 16 and
64 concurrent clients, each for a fixed time: p50, p99 and queries per second. The contacts are
loaded straight into the store's write service (AddContacts) with the writer's credentials.

Floors, measured in the same run at the same concurrency, from the same load generator:

- **the route, raw** (judged): what a query through the framework does, done with the bare
  libraries (bench/handwired.py): an aiohttp handler runs one tartiflette execution whose
  resolver makes a grpc.aio call to a relay process, which passes the bytes on to a grpc.aio
  server answering from memory: HTTP, one GraphQL execution and two gRPC hops, three processes,
  no checks, credentials, limits or telemetry. Target: >= 0.8x its queries/s at every point,
  with p99 <= 5x p50.
- **one gRPC hop, raw**: grpc.aio unary calls to that server straight from the load generator.
  The reference of the read-model figure (below) and of the notes.
- **one execution, raw**: tartiflette `engine.execute` in this process, resolvers answering at
  once. In the notes, with 1 / (2/one-hop + 1/execution): the two hops and the execution
  without HTTP, as earlier revisions judged.

**The read-model figure** (`READ_MODEL`): contact(id) with the reader answering from its own
read model, or the reader and gateway in one process, against the one-hop floor (target >=
0.5x at every concurrency). It runs when READ_MODEL names the topology keys that turn one on;
until then its row says it was not run.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import (
    SHIPPED,
    Figure,
    StoreClient,
    System,
    fmt,
    free_ports,
    load_contacts,
    ms,
    prepare,
    say,
)
from bench.handwired import ECHO_GET, ECHO_LIST, GRAPHQL_SDL, Role, compile_pb2
from bench.loadgen import GraphQL, LoadResult, closed_loop, graphql_errors

CONTACT = "query One($id: String!) { contact(id: $id) { id name last_updated } }"
LIST = "query Ten { listContacts(count: 10) { id name last_updated } }"
CONCURRENCY = (1, 16, 64)
P99_OVER_P50 = 5.0
TARGET_RATIO = 0.8  # of the route done raw
READ_MODEL_RATIO = 0.5  # of one raw gRPC hop
# The topology keys (dotted paths, as bench.common.prepare takes them) that let the reader
# answer contact(id) without the second hop: its own read model, or reader and gateway in one
# process. None: this revision has neither, and the read-model row says so.
READ_MODEL: dict[str, Any] | None = None


def contact_ok(answer) -> str | None:
    problem = graphql_errors(answer)
    if problem:
        return problem
    return None if (answer.get("data") or {}).get("contact") else "contact is null"


def list_ok(answer) -> str | None:
    problem = graphql_errors(answer)
    if problem:
        return problem
    found = (answer.get("data") or {}).get("listContacts") or []
    return None if len(found) == 10 else f"listContacts answered {len(found)} contacts"


def no_check(answer: Any) -> str | None:
    return None


def repeating(call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any):
    """A closed loop's request(i) that makes the same call every time."""
    return lambda i: call(*args, **kwargs)


async def measured(
    send: Callable[[int], Awaitable[Any]],
    clients: int,
    duration: float,
    warm_up: float,
    check: Callable[[Any], str | None] = no_check,
) -> LoadResult:
    """`warm_up` seconds of the closed loop, not counted, then `duration` seconds measured."""
    await closed_loop(send, clients, duration=warm_up, check=check)
    return await closed_loop(send, clients, duration=duration, check=check)


def summary(result: LoadResult) -> dict:
    return {
        "clients": result.clients,
        "ok": result.ok,
        "failed": result.failed,
        "failures": result.failures,
        "seconds": result.seconds,
        "qps": result.rate,
        "p50_ms": result.p(50) * 1000,
        "p99_ms": result.p(99) * 1000,
    }


def posting(gql: GraphQL, query: str, ids: list[str], rng: random.Random):
    """A closed loop's request(i): `query` to the gateway, about a random stored contact."""
    return lambda i: gql.post(query, {"id": rng.choice(ids)} if query is CONTACT else None)


async def gateway_runs(
    url: str, ids: list[str], duration: float, names: tuple[str, ...] = ("contact", "list")
) -> dict:
    rng = random.Random(7)
    runs: dict = {name: {} for name in names}
    queries = {"contact": (CONTACT, contact_ok), "list": (LIST, list_ok)}
    for clients in CONCURRENCY:
        gql = GraphQL(url, clients)
        try:
            for name in names:
                query, check = queries[name]
                send = posting(gql, query, ids, rng)
                result = await measured(send, clients, duration, min(0.5, duration / 4), check)
                runs[name][clients] = summary(result)
                say(
                    f"    {name:7} {clients:2} clients: p50 {ms(result.p(50))}, "
                    f"p99 {ms(result.p(99))}, {result.rate:,.0f} q/s"
                    + (f", {result.failed} failed: {result.failures[:1]}" if result.failed else "")
                )
        finally:
            await gql.close()
    return runs


async def grpc_floor(port: int, duration: float) -> dict:
    import contacts_pb2 as pb  # generated by compile_pb2; its folder is on sys.path (see measure)
    import grpc

    runs: dict = {"contact": {}, "list": {}}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        get = channel.unary_unary(
            ECHO_GET,
            request_serializer=pb.GetContactRequest.SerializeToString,
            response_deserializer=pb.GetContactResponse.FromString,
        )
        ten = channel.unary_unary(
            ECHO_LIST,
            request_serializer=pb.ListContactsRequest.SerializeToString,
            response_deserializer=pb.ListContactsResponse.FromString,
        )
        for clients in CONCURRENCY:
            for name, call, request in (
                ("contact", get, pb.GetContactRequest(id="x" * 36)),
                ("list", ten, pb.ListContactsRequest(count=10)),
            ):
                send = repeating(call, request, timeout=10)
                result = await measured(send, clients, duration, min(0.3, duration / 4))
                runs[name][clients] = summary(result)
    return runs


async def tartiflette_floor(duration: float) -> dict:
    from tartiflette import Resolver, create_engine

    schema = f"bench-floor-{random.random()}"
    contact = {
        "id": "0b0e7a51-3c6c-4b0e-9a53-5d6e0a6f1c11",
        "name": "Ada Lovelace 12345",
        "last_updated": "2026-01-01T00:00:00.000Z",
    }

    @Resolver("Query.contact", schema_name=schema)
    async def one(parent, args, ctx, info):
        return contact

    @Resolver("Query.listContacts", schema_name=schema)
    async def many(parent, args, ctx, info):
        return [contact] * args["count"]

    engine = await create_engine(GRAPHQL_SDL, schema_name=schema)
    runs: dict = {"contact": {}, "list": {}}
    for clients in CONCURRENCY:
        for name, query, variables, check in (
            ("contact", CONTACT, {"id": contact["id"]}, contact_ok),
            ("list", LIST, None, list_ok),
        ):
            send = repeating(engine.execute, query, variables=variables)
            result = await measured(send, clients, duration, min(0.3, duration / 4), check)
            runs[name][clients] = summary(result)
    return runs


async def loaded_system(ctx, directory: str, contacts: int, overrides=None):
    """`cqrs-flow up` of the shipped topology (with `overrides`), `contacts` loaded."""
    file = prepare(SHIPPED, ctx.tmp / directory, overrides)
    system = System(file).start()
    store = StoreClient(system)
    try:
        say(f"  loading {contacts:,} contacts through the store's write service ...")
        load = await load_contacts(store, contacts, budget=60 if ctx.quick else 300)
    except BaseException:
        system.stop()
        raise
    finally:
        await store.close()
    return system, load


async def route_floor(port: int, ids: list[str], duration: float) -> dict:
    """The hand-wired route (graphql -> relay -> echo), driven like the gateway."""
    return await gateway_runs(f"http://127.0.0.1:{port}/graphql", ids, duration)


async def read_model_runs(ctx, contacts: int, duration: float) -> dict | None:
    """contact(id) through a gateway whose reader answers without the second hop (READ_MODEL);
    None when this revision has no such switch."""
    if READ_MODEL is None:
        return None
    system, load = await loaded_system(ctx, "fig3-read-model", contacts, READ_MODEL)
    try:
        say(f"  with the read model ({READ_MODEL}), {duration:g}s per point:")
        url = system.topology.nodes["gateway"].url
        return (await gateway_runs(url, load.ids, duration, ("contact",)))["contact"]
    finally:
        system.stop()


async def measure(ctx, fig: Figure, contacts: int, duration: float) -> None:
    file = prepare(SHIPPED, ctx.tmp / "fig3")
    with System(file) as system:
        store = StoreClient(system)
        try:
            say(f"  loading {contacts:,} contacts through the store's write service ...")
            load = await load_contacts(store, contacts, budget=60 if ctx.quick else 300)
        finally:
            await store.close()
        fig.data["load"] = {
            "requested": load.requested,
            "loaded": load.loaded,
            "seconds": load.seconds,
            "rate": load.rate,
            "path": load.path,
            "note": load.note,
        }
        say(f"    {load.loaded:,} loaded in {load.seconds:.1f}s ({load.rate:,.0f}/s; {load.path})")
        say(f"  through the gateway, {duration:g}s per point:")
        fig.data["gateway"] = await gateway_runs(
            system.topology.nodes["gateway"].url, load.ids, duration
        )
        fig.data["node_warnings"] = system.trouble[:10]
    fig.data["stored"] = load.loaded

    pb2 = compile_pb2(ctx.tmp / "pb2")
    if str(pb2) not in sys.path:
        sys.path.insert(0, str(pb2))
    port, relay_port, graphql_port = free_ports(3)
    say("  floors: the route raw (graphql -> relay -> echo), one raw gRPC hop, one execution ...")
    roles = [Role("echo", "--port", str(port), pb2=pb2).wait_ready()]
    try:
        roles.append(Role("relay", "--port", str(relay_port), "--store", str(port)).wait_ready())
        roles.append(
            Role(
                "graphql", "--port", str(graphql_port), "--store", str(relay_port), pb2=pb2
            ).wait_ready()
        )
        fig.data["route_floor"] = await route_floor(graphql_port, load.ids, duration)
        fig.data["grpc_floor"] = await grpc_floor(port, duration)
    finally:
        for role in reversed(roles):
            role.stop()
    fig.data["tartiflette_floor"] = await tartiflette_floor(duration)
    fig.data["read_model"] = await read_model_runs(ctx, contacts, duration)


def run(ctx) -> Figure:
    fig = Figure(3, "Query latency and throughput")
    contacts = 5_000 if ctx.quick else 100_000
    duration = 1.0 if ctx.quick else 4.0
    asyncio.run(measure(ctx, fig, contacts, duration))
    stored = fig.data["stored"]
    for name, label in (("contact", "contact(id)"), ("list", "listContacts(count: 10)")):
        for clients in CONCURRENCY:
            mine = fig.data["gateway"][name][clients]
            route = fig.data["route_floor"][name][clients]
            g = fig.data["grpc_floor"][name][clients]
            t = fig.data["tartiflette_floor"][name][clients]
            ratio = mine["qps"] / route["qps"] if route["qps"] else 0.0
            spread = mine["p99_ms"] / mine["p50_ms"] if mine["p50_ms"] else float("inf")
            passed = ratio >= TARGET_RATIO and spread <= P99_OVER_P50 and mine["failed"] == 0
            # The two hops and the execution without HTTP, as earlier revisions judged.
            pipeline = 1 / (2 / g["qps"] + 1 / t["qps"]) if g["qps"] and t["qps"] else 0.0
            fig.data.setdefault("pipeline_floor", {}).setdefault(name, {})[clients] = pipeline
            note = (
                f"p99/p50 = {spread:.1f}; route raw p50 {ms(route['p50_ms'] / 1000)}; "
                f"one gRPC hop {fmt(g['qps'])} q/s ({mine['qps'] / g['qps']:.2f}x), "
                f"one execution {fmt(t['qps'])} q/s"
                + (
                    f", 2 hops + 1 execution without HTTP {fmt(pipeline)} q/s "
                    f"({mine['qps'] / pipeline:.2f}x)"
                    if pipeline
                    else ""
                )
            )
            if mine["failed"] or route["failed"]:
                failures = (mine["failures"] or route["failures"])[:1]
                note += f"; {mine['failed']} + {route['failed']} (floor) failed: {failures}"
            fig.row(
                f"{label}, {clients} client{'s' if clients > 1 else ''}, {stored:,} stored",
                f"p50 {ms(mine['p50_ms'] / 1000)}, p99 {ms(mine['p99_ms'] / 1000)}, "
                f"{fmt(mine['qps'])} q/s",
                floor=f"route raw {fmt(route['qps'])} q/s",
                ratio=f"{ratio:.2f}",
                target=f">= {TARGET_RATIO}x floor q/s; p99 <= {P99_OVER_P50:g}x p50",
                passed=passed,
                note=note,
            )
    read_model = fig.data["read_model"]
    for clients in CONCURRENCY:
        g = fig.data["grpc_floor"]["contact"][clients]
        target = f">= {READ_MODEL_RATIO}x floor q/s"
        metric = f"contact(id) with the read model, {clients} client{'s' if clients > 1 else ''}"
        if read_model is None:
            fig.row(
                metric,
                "not run",
                floor=f"one gRPC hop {fmt(g['qps'])} q/s",
                target=target,
                note="this revision has no read-model switch (bench/fig3_query.py READ_MODEL)",
            )
            continue
        mine = read_model[clients]
        ratio = mine["qps"] / g["qps"] if g["qps"] else 0.0
        fig.row(
            metric,
            f"p50 {ms(mine['p50_ms'] / 1000)}, p99 {ms(mine['p99_ms'] / 1000)}, "
            f"{fmt(mine['qps'])} q/s",
            floor=f"one gRPC hop {fmt(g['qps'])} q/s",
            ratio=f"{ratio:.2f}",
            target=target,
            passed=ratio >= READ_MODEL_RATIO and mine["failed"] == 0,
        )
    return fig
