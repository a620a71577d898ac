"""Figure 1: write throughput at delay 0.

Concurrent clients send `addContact` mutations over HTTP GraphQL; the figure is the number of
contacts that reached the store per second, from the first request sent to the last command
applied (counted by the writer's "applied" lines, checked against the store's own count).

Floors, measured in the same run on the same machine:
  * hand-wired: the same libraries with no framework, one process per role like the framework's
    nodes: aiohttp handler -> gmqtt publish -> broker -> gmqtt subscriber -> grpc.aio call -> dict
    (bench/handwired.py);
  * the raw broker: one gmqtt publisher and one gmqtt subscriber, QoS 1, publish -> subscribe.

Targets: writes committed/s >= 0.6x hand-wired, and mutations answered/s by the gateway >= 0.6x
the hand-wired gateway's. Figure 6 runs the same measurement with Mosquitto as the broker (see
`measure`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.common import (
    SHIPPED,
    Figure,
    StoreClient,
    System,
    fmt,
    free_ports,
    prepare,
    say,
    wait_committed,
)
from bench.handwired import COUNT_METHOD, Role, compile_pb2
from bench.loadgen import GraphQL, LoadResult, closed_loop

MUTATION = "mutation Add($name: String!) { addContact(name: $name) { status id } }"
WARMUP = 20
TARGET_RATIO = 0.6  # of hand-wired, for writes committed and for mutations answered


def mutation_ok(answer) -> str | None:
    try:
        status = answer["data"]["addContact"]["status"]
    except (KeyError, TypeError):
        return f"unexpected answer {str(answer)[:160]}"
    return None if status == "OK" else f"status {status}: {answer['data']['addContact']}"


def landing_note(answered: int, committed: int) -> str:
    """What the table says when the store's count and the OK answers differ."""
    if committed < answered:
        return f"{answered - committed:,} answered OK but not in the store"
    if committed > answered:  # warm-up commands that were still on their way when counting began
        return (
            f"{committed - answered:,} more in the store than answered: "
            "earlier commands still landing"
        )
    return ""


def params(quick: bool) -> tuple[int, int]:
    """(mutations, concurrent clients)."""
    return (600, 16) if quick else (10000, 32)


async def _send(url: str, count: int, clients: int, label: str):
    gql = GraphQL(url, clients)
    try:
        return await closed_loop(
            lambda i: gql.post(MUTATION, {"name": f"{label} {i}"}),
            clients,
            count=count,
            check=mutation_ok,
            timeout=max(120.0, count / 20),
        )
    finally:
        await gql.close()


# -- the framework ---------------------------------------------------------------------------


async def framework_writes(system: System, count: int, clients: int) -> dict:
    url = system.topology.nodes["gateway"].url
    store = StoreClient(system)
    try:
        warm = await _send(url, WARMUP, 4, "Warm")
        await wait_committed(system, store, 0, 0, warm.ok, timeout=30, stall=5)
        before_applied = system.applied
        before_stored = await store.count(10_000_000)
        load = await _send(url, count, clients, "Bench")
        sent_at = time.monotonic()
        committed, end, source = await wait_committed(
            system, store, before_applied, before_stored, load.ok, timeout=max(60.0, count / 20)
        )
        return {
            **outcome(load, sent_at, committed, end),
            "applied_lines": system.applied - before_applied,
            "progress_from": source,
            "mutation_p50_ms": load.p(50) * 1000,
            "mutation_p99_ms": load.p(99) * 1000,
            "node_warnings": system.trouble[:10],
        }
    finally:
        await store.close()


def outcome(load: LoadResult, sent_at: float, committed: int, end: float) -> dict:
    """A write run's figures: `load` sent until `sent_at`; `committed` writes in by `end`."""
    seconds = end - load.started
    return {
        "sent_ok": load.ok,
        "send_failed": load.failed,
        "failures": load.failures,
        "send_seconds": sent_at - load.started,
        "send_rate": load.ok / max(sent_at - load.started, 1e-9),
        "committed": committed,
        "seconds": seconds,
        "rate": committed / seconds if seconds > 0 else 0.0,
    }


# -- the hand-wired floor --------------------------------------------------------------------


async def handwired_writes(
    broker_port: int, mqtt: str, pb2: Path, count: int, clients: int
) -> dict:
    import grpc

    store_port, gateway_port = free_ports(2)
    roles: list[Role] = []
    try:
        roles.append(Role("store", "--port", str(store_port), pb2=pb2).wait_ready())
        roles.append(
            Role(
                "writer",
                "--broker",
                str(broker_port),
                "--store",
                str(store_port),
                "--mqtt",
                mqtt,
                pb2=pb2,
            ).wait_ready()
        )
        roles.append(
            Role(
                "gateway",
                "--port",
                str(gateway_port),
                "--broker",
                str(broker_port),
                "--mqtt",
                mqtt,
                pb2=pb2,
            ).wait_ready()
        )
        url = f"http://127.0.0.1:{gateway_port}/graphql"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{store_port}") as channel:
            count_call = channel.unary_unary(COUNT_METHOD)
            state = {"value": 0, "changed": time.monotonic()}
            stop = asyncio.Event()

            async def poll() -> None:
                while not stop.is_set():
                    value = int(await count_call(b"", timeout=10))
                    if value != state["value"]:
                        state["value"], state["changed"] = value, time.monotonic()
                    await asyncio.sleep(0.02)

            poller = asyncio.ensure_future(poll())
            try:
                warm = await _send(url, WARMUP, 4, "Warm")
                deadline = time.monotonic() + 30
                while state["value"] < warm.ok and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                before = state["value"]
                load = await _send(url, count, clients, "Bench")
                sent_at = time.monotonic()
                deadline = time.monotonic() + max(60.0, count / 20)
                while (
                    state["value"] < before + load.ok
                    and time.monotonic() < deadline
                    and time.monotonic() - state["changed"] < 10
                ):
                    await asyncio.sleep(0.02)
            finally:
                stop.set()
                await poller
            return outcome(load, sent_at, state["value"] - before, state["changed"])
    finally:
        for role in reversed(roles):
            role.stop()


# -- the raw broker floor --------------------------------------------------------------------


async def broker_rate(port: int, mqtt: str, count: int, timeout: float = 120.0) -> dict:
    """QoS 1 publish -> subscribe through the broker: one gmqtt publisher, one subscriber."""
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv50, MQTTv311

    version = MQTTv50 if mqtt == "5" else MQTTv311
    topic = f"bench/raw/{time.monotonic_ns()}"
    payload = b"\x0a\x3c" + b"x" * 60  # about the size of an AddContactRequest
    received = 0
    done = asyncio.get_running_loop().create_future()
    subscribed = asyncio.Event()
    last = 0.0

    def on_message(client, t, p, qos, properties) -> int:
        nonlocal received, last
        received += 1
        last = time.monotonic()
        if received >= count and not done.done():
            done.set_result(None)
        return 0

    sub = gmqtt.Client(f"bench-raw-sub-{time.monotonic_ns()}")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    pub = gmqtt.Client(f"bench-raw-pub-{time.monotonic_ns()}")
    await sub.connect("127.0.0.1", port, version=version)
    await pub.connect("127.0.0.1", port, version=version)
    try:
        sub.subscribe(topic, qos=1)
        await asyncio.wait_for(subscribed.wait(), 10)
        started = time.monotonic()
        for i in range(count):
            pub.publish(topic, payload, qos=1)
            if i % 100 == 99:
                await asyncio.sleep(0)
        try:
            await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            pass
        seconds = (last or time.monotonic()) - started
        return {
            "published": count,
            "received": received,
            "seconds": seconds,
            "rate": received / seconds if seconds > 0 else 0.0,
        }
    finally:
        await pub.disconnect()
        await sub.disconnect()


# -- the figure ------------------------------------------------------------------------------


async def measure(
    fig: Figure,
    ctx,
    system_file: Path,
    broker_port_for_floors: int | None,
    mqtt: str,
    broker_name: str,
) -> None:
    """Framework, hand-wired and raw broker, with the broker given (figure 6) or an amqtt one
    started for each floor (figure 1); rows for the table."""
    count, clients = params(ctx.quick)
    pb2 = compile_pb2(ctx.tmp / "pb2")

    say(
        f"  framework ({broker_name}): {count:,} addContact mutations from {clients} clients, "
        "delay 0 ..."
    )
    with System(system_file) as system:
        framework = await framework_writes(system, count, clients)
    fig.data["framework"] = framework
    say(
        f"    sent {framework['sent_ok']:,} ({framework['send_rate']:,.0f}/s answered), "
        f"{framework['committed']:,} in the store after {framework['seconds']:.2f}s"
    )

    async def with_broker(work):
        if broker_port_for_floors is not None:
            return await work(broker_port_for_floors)
        port = free_ports(1)[0]
        role = Role("broker", "--port", str(port)).wait_ready()
        try:
            return await work(port)
        finally:
            role.stop()

    say(f"  hand-wired ({broker_name}): same load ...")
    handwired = await with_broker(lambda port: handwired_writes(port, mqtt, pb2, count, clients))
    fig.data["handwired"] = handwired
    say(
        f"    sent {handwired['sent_ok']:,} ({handwired['send_rate']:,.0f}/s answered), "
        f"{handwired['committed']:,} in the store after {handwired['seconds']:.2f}s"
    )

    messages = 3000 if ctx.quick else 20000
    say(f"  raw broker ({broker_name}): {messages:,} QoS 1 messages publish -> subscribe ...")
    raw = await with_broker(lambda port: broker_rate(port, mqtt, messages))
    fig.data["raw_broker"] = raw

    ratio = framework["rate"] / handwired["rate"] if handwired["rate"] else 0.0
    lost = framework["sent_ok"] - framework["committed"]
    note = landing_note(framework["sent_ok"], framework["committed"])
    if framework["progress_from"] != "writer log":
        note += (
            f"{'; ' if note else ''}no 'applied' lines: progress from {framework['progress_from']}"
        )
    if framework["send_failed"]:
        failed = f"{framework['send_failed']:,} mutations failed: {framework['failures'][:1]}"
        note += f"{'; ' if note else ''}{failed}"
    fig.row(
        f"writes committed/s, {broker_name} "
        f"({framework['committed']:,} via GraphQL, {clients} clients)",
        fmt(framework["rate"]),
        floor=f"{fmt(handwired['rate'])} hand-wired",
        ratio=f"{ratio:.2f}",
        target=f">= {TARGET_RATIO}",
        passed=ratio >= TARGET_RATIO and lost == 0,
        note=note,
    )
    answered = framework["send_rate"] / handwired["send_rate"] if handwired["send_rate"] else 0.0
    fig.row(
        f"mutations answered/s by the gateway ({broker_name})",
        fmt(framework["send_rate"]),
        floor=f"{fmt(handwired['send_rate'])} hand-wired",
        ratio=f"{answered:.2f}",
        target=f">= {TARGET_RATIO}",
        passed=answered >= TARGET_RATIO and not framework["send_failed"],
    )
    fig.row(
        f"  raw broker QoS 1 publish->subscribe msg/s ({broker_name})",
        fmt(raw["rate"]),
        ratio=f"{framework['rate'] / raw['rate']:.2f} (framework/raw)" if raw["rate"] else "",
        note=""
        if raw["received"] == raw["published"]
        else f"only {raw['received']:,} of {raw['published']:,} arrived",
    )


def run(ctx) -> Figure:
    fig = Figure(1, "Write throughput, delay 0")
    file = prepare(
        SHIPPED,
        ctx.tmp / "fig1",
        {"nodes.writer.delay": "0s", "nodes.store.list_limit": 10_000_000},
    )
    asyncio.run(measure(fig, ctx, file, None, "3.1.1", "amqtt"))
    ctx.shared["write_rate"] = fig.data["framework"]["rate"]
    return fig
