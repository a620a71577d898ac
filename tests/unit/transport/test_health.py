"""health: the standard gRPC health service, which answers anyone, holds little for anyone (a
real server on 127.0.0.1, called with grpcio-health-checking's stub)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cqrs_flow.topology.relocate import free_ports
from cqrs_flow.transport import health
from cqrs_flow.transport.health import HealthService

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def serve(service: HealthService, calls):
    """Serve `service` alone and run `calls(stub)` against it."""

    async def main():
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(service, server)
        port = free_ports(1)[0]
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await service.set("", SERVING)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await calls(health_pb2_grpc.HealthStub(channel))
        finally:
            await server.stop(None)

    return asyncio.run(main())


def test_the_defaults_the_e2e_test_counts_on():
    assert (health.MAX_WATCHES, health.WATCH_LIFETIME) == (100, 300.0)


def test_list_answers_the_statuses_set():
    async def calls(stub):
        return await stub.List(health_pb2.HealthListRequest(), timeout=5)

    listed = serve(HealthService(), calls)
    assert dict(listed.statuses) == {"": health_pb2.HealthCheckResponse(status=SERVING)}


def test_watch_streams_beyond_the_cap_are_refused_at_once():
    service = HealthService(max_watches=3)

    async def calls(stub):
        open_ = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=10) for _ in range(3)]
        assert [(await call.read()).status for call in open_] == [SERVING] * 3
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Watch(health_pb2.HealthCheckRequest(), timeout=10).read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == (
            "3 health watches are open on this server; call Check, or watch again later"
        )
        await service.set("", NOT_SERVING)  # the open ones still hear of a change
        assert [(await call.read()).status for call in open_] == [NOT_SERVING] * 3
        open_.pop().cancel()
        for _ in range(100):  # the server hears of the cancel a moment later
            if service.watches < 3:
                break
            await asyncio.sleep(0.02)
        again = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert (await again.read()).status == NOT_SERVING
        again.cancel()
        for call in open_:
            call.cancel()
        return (await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)).status

    assert serve(service, calls) == NOT_SERVING  # Check is never capped


def test_a_watch_stream_ends_after_its_lifetime():
    service = HealthService(lifetime=0.3)

    async def calls(stub):
        call = stub.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        statuses = [response.status async for response in call]
        return statuses, await call.code(), service.watches

    assert serve(service, calls) == ([SERVING], grpc.StatusCode.OK, 0)


# -- the health of a node -----------------------------------------------------------------------


def node_health(ready: dict[str, bool]) -> HealthService:
    """A health service made while a node (serving contacts.ContactReader) is set up."""
    from cqrs_flow.telemetry import CURRENT, NodeTelemetry

    telemetry = NodeTelemetry("reader", "reader")
    telemetry.serves("contacts.ContactReader")
    telemetry.readiness = lambda: ready
    telemetry.started = True
    token = CURRENT.set(telemetry)
    try:
        return HealthService()
    finally:
        CURRENT.reset(token)


def check_all(stub_services):
    async def calls(stub):
        answers = {}
        for service in stub_services:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                answers[service] = answer.status
            except grpc.aio.AioRpcError as exc:
                answers[service] = exc.code().name
        return answers

    return calls


NAMES = ("", "contacts.ContactReader", "liveness", "contacts.Other")


def test_a_node_answers_for_each_service_it_serves_by_name_and_for_liveness():
    answers = serve(node_health({"store": True}), check_all(NAMES))
    assert answers == {
        "": SERVING,
        "contacts.ContactReader": SERVING,
        "liveness": SERVING,
        "contacts.Other": "NOT_FOUND",
    }


def test_a_node_whose_dependency_is_gone_is_not_serving_but_alive():
    answers = serve(node_health({"store": False}), check_all(NAMES))
    assert answers == {
        "": NOT_SERVING,
        "contacts.ContactReader": NOT_SERVING,
        "liveness": SERVING,
        "contacts.Other": "NOT_FOUND",
    }


def test_list_names_what_a_node_serves():
    async def calls(stub):
        return await stub.List(health_pb2.HealthListRequest(), timeout=5)

    listed = serve(node_health({"store": False}), calls)
    assert {name: s.status for name, s in listed.statuses.items()} == {
        "": NOT_SERVING,
        "contacts.ContactReader": NOT_SERVING,
        "liveness": SERVING,
    }
