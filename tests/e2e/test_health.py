"""Health as probes ask for it: liveness and readiness apart, over HTTP on every node's metrics
address (and the gateway's own), and the standard gRPC health service of every gRPC node
answering for each service it serves by name. Readiness falls while a node's dependency is
gone and comes back with it; liveness stays."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from system import System, cli, prepare, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def health(system: System, node: str, path: str) -> tuple[int, dict]:
    address = system.topology.metrics_of(node)
    return get(f"http://{address.target}{path}")


def grpc_health(target: str, service: str) -> int | str:
    """The status Check answers for `service`, or the gRPC code it fails with."""

    async def check() -> int | str:
        async with grpc.aio.insecure_channel(target) as channel:
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return answer.status

    return asyncio.run(check())


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> System:
    system = System(prepare("contacts_fast.yaml", tmp_path_factory.mktemp("health"))).start()
    yield system
    system.stop()


def test_every_node_answers_liveness_and_readiness_over_http(system):
    for name, node in system.topology.nodes.items():
        status, live = health(system, name, "/health/live")
        assert (status, live) == (200, {"node": name, "live": True})
        status, ready = health(system, name, "/health/ready")
        assert status == 200, ready
        assert ready["ready"] is True and ready["node"] == name and ready["kind"] == node.kind
        assert ready["pid"] > 0 and ready["restarts"] == 0
    assert health(system, "reader", "/health/ready")[1]["dependencies"] == {"store": True}
    assert health(system, "writer", "/health/ready")[1]["dependencies"] == {
        "broker": True,
        "store": True,
    }
    # The gateway answers them on its own port too; /health is as it was.
    gateway = system.gateway.listen.target
    assert get(f"http://{gateway}/health/live")[0] == 200
    assert get(f"http://{gateway}/health/ready")[1]["dependencies"] == {
        "broker": True,
        "reader": True,
    }
    assert get(f"http://{gateway}/health")[0] == 200


def test_grpc_health_answers_for_every_service_served_by_name(system):
    store, reader = system.topology.nodes["store"], system.topology.nodes["reader"]
    for target, services in (
        (store.write.listen.target, ("", "contacts.ContactWriteService")),
        (store.read.listen.target, ("", "contacts.ContactReadService", "cqrs_flow.Documents")),
        (reader.listen.target, ("", "contacts.ContactReader", "cqrs_flow.Documents")),
    ):
        for service in (*services, "liveness"):
            assert grpc_health(target, service) == SERVING, (target, service)
        assert grpc_health(target, "contacts.NoSuchService") == "NOT_FOUND"
    # Each server answers for its own services: the write side knows nothing of the read side.
    assert grpc_health(store.write.listen.target, "contacts.ContactReadService") == "NOT_FOUND"


def test_readiness_falls_while_the_store_is_gone_and_liveness_stays(tmp_path):
    topology = prepare("contacts_fast.yaml", tmp_path)
    # The store runs apart (as on another host), so the test can take it away and bring it back.
    rest = System(topology, args=["--only", "broker,reader,writer,gateway"])

    def start_store() -> subprocess.Popen:
        return subprocess.Popen(
            [*cli(), "node", str(topology), "store"],
            env=rest.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    store = start_store()
    try:
        rest.start()
        reader = rest.topology.nodes["reader"].listen.target
        assert grpc_health(reader, "contacts.ContactReader") == SERVING
        store.terminate()
        store.wait(15)
        ready = wait_until(
            lambda: (answer := health(rest, "reader", "/health/ready"))[0] == 503 and answer[1],
            timeout=15,
        )
        assert ready["ready"] is False and ready["dependencies"] == {"store": False}
        assert wait_until(lambda: grpc_health(reader, "contacts.ContactReader") == NOT_SERVING)
        assert grpc_health(reader, "") == NOT_SERVING
        assert grpc_health(reader, "liveness") == SERVING
        assert health(rest, "reader", "/health/live")[0] == 200
        assert wait_until(lambda: health(rest, "writer", "/health/ready")[0] == 503, timeout=15)
        store = start_store()
        assert wait_until(lambda: health(rest, "reader", "/health/ready")[0] == 200, timeout=20)
        assert wait_until(lambda: grpc_health(reader, "contacts.ContactReader") == SERVING)
        assert wait_until(lambda: health(rest, "writer", "/health/ready")[0] == 200, timeout=20)
    finally:
        store.terminate()
        store.wait(15)
        rest.stop()
