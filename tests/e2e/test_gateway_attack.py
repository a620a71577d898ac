"""One client cannot stall the gateway: many aliased large lists are refused by their cost,
slow operations are cut off, oversized answers are refused, and each caller has its own
in-flight places and request rate.

The attack: with 1,020 contacts stored, 8 clients at once send, again and again, a 1.5 KB
query of 30 aliased `listContacts(count: 1000)`. Without a cost limit each answer is 3.4 MB
and takes seconds, and a `{ __typename }` from anyone else waited tens of seconds.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from typing import Any

import aiohttp
import grpc
import pytest
from system import System, prepare, wait_until
from test_up_lifecycle import node_pid

from cqrs_flow.security.tokens import Credentials

CONTACTS = 1020
ATTACKERS = 8
ATTACK = (
    "{ "
    + " ".join(f"a{i}: listContacts(count: 1000) {{ id name last_updated }}" for i in range(30))
    + " }"
)
PROBE = "{ __typename }"
ONE_LIST = "{ listContacts(count: 1000) { id name last_updated } }"
# Costs 9,003, within the default; its answer is about 330 KB.
LARGE = (
    "{ "
    + " ".join(f"a{i}: listContacts(count: 1000) {{ id name last_updated }}" for i in range(3))
    + " }"
)


def store_contacts(system: System, count: int) -> None:
    """Put `count` contacts straight into the store with one AddContacts (insert_many), with
    the writer's credentials."""
    store = system.topology.nodes["store"]
    service = store.write.name
    request = system.protos.message_class("contacts.AddContactsRequest")()
    for i in range(count):
        request.contacts.add(name=f"Contact {i}")
    method = system.protos.method(service, "AddContacts")
    response_class = system.protos.class_of(method.output_type)
    with grpc.insecure_channel(store.write.listen.target) as channel:
        stub = channel.unary_unary(
            f"/{service}/AddContacts",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        written = stub(
            request, metadata=Credentials("writer", system.token("writer")).metadata, timeout=30
        )
    assert written.count == count, written


async def post(
    session: aiohttp.ClientSession,
    url: str,
    query: str,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
):
    """Status, JSON answer and headers of one GraphQL POST."""
    async with session.post(
        url,
        json={"query": query},
        headers=headers or {},
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        return response.status, await response.json(content_type=None), response.headers


def errors(answer) -> str:
    return " ".join(e.get("message", "") for e in (answer or {}).get("errors") or ())


@pytest.fixture(scope="module")
def stocked(tmp_path_factory) -> System:
    """The contacts system with its default limits and 1,020 contacts stored."""
    system = System(prepare("contacts_fast.yaml", tmp_path_factory.mktemp("stocked"))).start()
    store_contacts(system, CONTACTS)
    yield system
    system.stop()


def test_a_probe_is_answered_within_a_second_while_one_client_attacks(stocked):
    url = f"http://{stocked.gateway.listen.target}/graphql"
    duration = 6.0

    async def run():
        attacks: list = []
        latencies: list[float] = []
        stop = asyncio.Event()

        async def attacker(session):
            while not stop.is_set():
                attacks.append(await post(session, url, ATTACK))

        async def probe(session):
            deadline = time.monotonic() + duration
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    status, answer, _ = await post(session, url, PROBE, timeout=30)
                    assert status == 200 and answer["data"] == {"__typename": "Query"}, answer
                    latencies.append(time.monotonic() - started)
                except asyncio.TimeoutError:
                    latencies.append(float("inf"))
                await asyncio.sleep(0.1)

        async with aiohttp.ClientSession() as attack_session, aiohttp.ClientSession() as probes:
            # The list is really there: one listContacts(count: 1000) is within the limits.
            status, answer, _ = await post(probes, url, ONE_LIST)
            assert status == 200 and len(answer["data"]["listContacts"]) == 1000, errors(answer)
            tasks = [asyncio.ensure_future(attacker(attack_session)) for _ in range(ATTACKERS)]
            await asyncio.sleep(0.2)  # the attack is under way
            await probe(probes)
            stop.set()
            _, pending = await asyncio.wait(tasks, timeout=30)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return attacks, latencies

    attacks, latencies = asyncio.run(run())
    print(
        f"probe latency under attack: max {max(latencies):.3f}s, "
        f"{len(latencies)} probes; {len(attacks)} attack queries answered"
    )
    assert latencies and max(latencies) < 1.0, sorted(latencies)[-5:]
    assert len(attacks) >= ATTACKERS
    for status, answer, _ in attacks:
        assert status == 400 and "limits.cost" in errors(answer), (status, str(answer)[:300])


# Behind a proxy on 127.0.0.1 (the tests' own client), the X-Forwarded-For header names callers.
PROXIED_LIMITS = {
    "timeout": "3s",
    "response_bytes": 300_000,
    "rate": {"requests": 100, "per": "60s"},
}


@pytest.fixture(scope="module")
def proxied(tmp_path_factory) -> System:
    """The contacts system behind a trusted proxy, with 1,020 contacts and a few small limits."""
    system = System(
        prepare(
            "contacts_fast.yaml",
            tmp_path_factory.mktemp("proxied"),
            **{
                "nodes.gateway.trusted_proxies": ["127.0.0.1"],
                "nodes.gateway.limits": PROXIED_LIMITS,
                "nodes.gateway.reader_timeout": "20s",
            },
        )
    ).start()
    store_contacts(system, CONTACTS)
    yield system
    system.stop()


def as_caller(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def _attack(url: str, query: str, until: float, out: Any) -> None:
    """ATTACKERS clients of one caller sending `query` until `until` (time.monotonic, the same
    clock in every process), run in a process of its own so that reading their large answers
    does not slow the probes' client; puts (when answered, status, full answer) of each."""

    async def main() -> list[tuple[float, int, bool]]:
        answered: list[tuple[float, int, bool]] = []
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                while time.monotonic() < until:
                    status, answer, _ = await post(session, url, query, as_caller("10.0.0.1"))
                    full = status == 200 and len(answer["data"]["a2"]) == 1000
                    answered.append((time.monotonic(), status, full))

            await asyncio.gather(*(one() for _ in range(ATTACKERS)))
        return answered

    out.put(asyncio.run(main()))


def test_one_callers_heavy_queries_within_the_cost_do_not_stall_another(proxied):
    """Each of these costs 6,003: one caller's run one at a time, so its work ahead of anyone
    else's request is one operation's worth, however many it sends."""
    url = f"http://{proxied.gateway.listen.target}/graphql"
    heavy = (
        "{ " + " ".join(f"a{i}: listContacts(count: 1000) {{ id name }}" for i in range(3)) + " }"
    )
    context = multiprocessing.get_context("fork")  # before this process runs an event loop
    out = context.Queue()
    attack = context.Process(target=_attack, args=(url, heavy, time.monotonic() + 6.0, out))
    attack.start()

    async def probe() -> list[tuple[float, float]]:
        probes: list[tuple[float, float]] = []  # (sent, answered)
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(0.5)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline or len(probes) < 3:
                started = time.monotonic()
                status, answer, _ = await post(
                    session, url, PROBE, as_caller("10.0.0.2"), timeout=30
                )
                assert status == 200 and answer["data"] == {"__typename": "Query"}, answer
                probes.append((started, time.monotonic()))
                await asyncio.sleep(0.1)
        return probes

    try:
        probes = asyncio.run(probe())
        answered = out.get(timeout=120)
    finally:
        attack.join(timeout=10)
        if attack.is_alive():
            attack.kill()
    latencies = [end - start for start, end in probes]
    # Behind about one of the caller's operations, not the 8 it has in flight: within 1 s on an
    # idle machine (docs/BEHAVIOUR.md), 1.5 s on a busy one; and few of the caller's heavy
    # queries were answered while a probe waited (their client reads them a little late).
    behind = [sum(start < at < end for at, _, _ in answered) for start, end in probes]
    print(
        f"probe latency beside heavy queries: max {max(latencies):.3f}s, "
        f"{len(latencies)} probes, heavy queries answered while one waited: at most "
        f"{max(behind)}; {len(answered)} heavy queries answered"
    )
    assert max(latencies) < 1.5 and max(behind) <= ATTACKERS // 2, (behind, sorted(latencies)[-5:])
    assert answered and all(full for _, status, full in answered if status == 200)


def test_one_callers_places_in_flight_are_its_own_and_slow_operations_are_cut_off(proxied):
    """With the reader stopped, caller A's queries hang: its 11th is refused 429 at once
    (limits.per_caller_in_flight, 10), caller B is still answered, and A's ten are cut off by
    limits.timeout (3 s) with an error naming it."""
    url = f"http://{proxied.gateway.listen.target}/graphql"
    reader = node_pid(proxied, "reader")

    async def run():
        async with aiohttp.ClientSession() as session:
            slow = [
                asyncio.ensure_future(
                    post(session, url, "{ listContacts(count: 1) { id } }", as_caller("10.0.1.1"))
                )
                for _ in range(10)
            ]
            started = time.monotonic()
            await asyncio.sleep(0.5)
            while True:  # until all ten are in flight, A's `{ __typename }` gets a place
                refused = await post(session, url, PROBE, as_caller("10.0.1.1"))
                if refused[0] != 200 or time.monotonic() - started > 2.5:
                    break
                await asyncio.sleep(0.05)
            asked = time.monotonic()
            other = await post(session, url, PROBE, as_caller("10.0.1.2"))
            at_once = time.monotonic() - asked
            cut_off = await asyncio.gather(*slow)
            return refused, other, at_once, cut_off, time.monotonic() - started

    assert proxied.data("{ listContacts(count: 1) { id } }")  # the gateway has dialled the reader
    os.kill(reader, signal.SIGSTOP)
    try:
        refused, other, at_once, cut_off, waited = asyncio.run(run())
    finally:
        os.kill(reader, signal.SIGCONT)
    status, answer, headers = refused
    assert status == 429 and "limits.per_caller_in_flight" in errors(answer), answer
    assert headers["Retry-After"] == "1"
    assert other[0] == 200 and other[1]["data"] == {"__typename": "Query"}
    assert at_once < 1.0
    for status, answer, _ in cut_off:
        assert (
            status == 504
            and "took longer than 3s" in errors(answer)
            and "limits.timeout" in errors(answer)
        ), answer
    assert waited < 10.0
    assert wait_until(lambda: proxied.data("{ listContacts(count: 1) { id } }"))


def test_an_answer_over_response_bytes_is_an_error_not_a_cut_body(proxied):
    url = f"http://{proxied.gateway.listen.target}/graphql"

    async def run():
        async with aiohttp.ClientSession() as session:
            return (
                await post(session, url, LARGE, as_caller("10.0.2.1")),
                await post(session, url, ONE_LIST, as_caller("10.0.2.1")),
            )

    (status, answer, _), (fits, small, _) = asyncio.run(run())
    assert status == 400 and answer["data"] is None, str(answer)[:300]
    assert "larger than 300,000 bytes (limits.response_bytes)" in errors(answer)
    assert fits == 200 and len(small["data"]["listContacts"]) == 1000


def test_the_rate_of_one_caller_is_limited_and_not_the_others(proxied):
    url = f"http://{proxied.gateway.listen.target}/graphql"

    async def run():
        async with aiohttp.ClientSession() as session:
            answers = []
            while len(answers) < 120 and (not answers or answers[-1][0] == 200):
                answers.append(await post(session, url, PROBE, as_caller("10.0.3.1")))
            return answers, await post(session, url, PROBE, as_caller("10.0.3.2"))

    answers, other = asyncio.run(run())
    # 100 at once, then one more each 0.6 s: the loop above takes about a second
    assert 100 < len(answers) <= 110 and all(s == 200 for s, _, _ in answers[:100]), len(answers)
    status, answer, headers = answers[-1]
    assert status == 429 and "more than 100 requests in 60s" in errors(answer), answer
    assert "limits.rate" in errors(answer) and headers["Retry-After"] == "1"
    assert other[0] == 200


def test_websocket_operations_go_through_the_same_gate(proxied):
    url = f"ws://{proxied.gateway.listen.target}/graphql"

    async def run():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url, protocols=("graphql-transport-ws",)) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
                await ws.send_json(
                    {"id": "attack", "type": "subscribe", "payload": {"query": ATTACK}}
                )
                refused = await ws.receive_json(timeout=10)
                await ws.send_json(
                    {"id": "large", "type": "subscribe", "payload": {"query": LARGE}}
                )
                too_large = await ws.receive_json(timeout=30)
                await ws.send_json(
                    {
                        "id": "ok",
                        "type": "subscribe",
                        "payload": {"query": "{ listContacts(count: 5) { id } }"},
                    }
                )
                answered = await ws.receive_json(timeout=30)
                return refused, too_large, answered

    refused, too_large, answered = asyncio.run(run())
    assert refused["type"] == "error" and "limits.cost" in refused["payload"][0]["message"], refused
    assert too_large["type"] == "error"
    assert "limits.response_bytes" in too_large["payload"][0]["message"]
    assert answered["type"] == "next" and len(answered["payload"]["data"]["listContacts"]) == 5
