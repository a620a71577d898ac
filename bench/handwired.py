"""The floor of figures 1 and 6: the same libraries wired by hand, no framework.

    aiohttp handler -> gmqtt publish -> amqtt (or Mosquitto)
                    -> gmqtt subscriber -> grpc.aio call -> dict

Each role runs as its own process, like the framework's nodes (so both get the same two cores):

    python -m bench.handwired broker  --port P
    python -m bench.handwired store   --port P                          --pb2 DIR
    python -m bench.handwired writer  --broker P --store P [--mqtt 5]  --pb2 DIR
    python -m bench.handwired gateway --port P --broker P [--mqtt 5]   --pb2 DIR
    python -m bench.handwired echo    --port P                          --pb2 DIR
    python -m bench.handwired relay   --port P --store P
    python -m bench.handwired graphql --port P --store P                --pb2 DIR

(Figure 3's floors: `echo` is one raw gRPC hop; `graphql -> relay -> echo` is the route of a
query done raw: an aiohttp handler running one tartiflette execution whose resolver makes a
grpc.aio call to `relay`, a grpc.aio server that passes the bytes on to `echo` with a grpc.aio
call of its own, as a reader does to its store. No checks, credentials, limits or telemetry.)

DIR holds contacts_pb2.py, generated from proto/contacts.proto by `compile_pb2`. The gateway
takes the name from the request's GraphQL variables without parsing the query: the floor has
no GraphQL engine. Every role prints "ready" once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

TOPIC = "CONTACT/ADD"
COUNT_METHOD = "/bench.Handwired/Count"
ECHO_GET, ECHO_LIST = "/bench.Echo/Get", "/bench.Echo/List"
MAX_IN_FLIGHT = 32  # the framework's writer keeps at most 32 store calls open; so does this one


# -- the roles -------------------------------------------------------------------------------


async def broker(args) -> None:
    from amqtt.broker import Broker

    b = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{args.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await b.start()
    await _serve_until_stopped()
    await b.shutdown()


async def store(args) -> None:
    from datetime import datetime, timezone

    import contacts_pb2 as pb
    import grpc

    db: dict[str, dict] = {}

    async def add(request, context):
        contact = request.contact
        key = contact.id or str(uuid.uuid4())
        db[key] = {
            "id": key,
            "name": contact.name,
            "last_updated": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        return pb.WriteResponse(id=key, count=1)

    async def count(request: bytes, context) -> bytes:
        return str(len(db)).encode()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "contacts.ContactWriteService",
                {"AddContact": _unary(add, pb.AddContactRequest, pb.WriteResponse)},
            ),
            grpc.method_handlers_generic_handler(
                "bench.Handwired", {"Count": grpc.unary_unary_rpc_method_handler(count)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    await _serve_until_stopped()
    await server.stop(0.5)


async def writer(args) -> None:
    import contacts_pb2 as pb
    import gmqtt
    import grpc
    from gmqtt.mqtt.constants import MQTTv50, MQTTv311

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.store}")
    add = channel.unary_unary(
        "/contacts.ContactWriteService/AddContact",
        request_serializer=pb.AddContactRequest.SerializeToString,
        response_deserializer=pb.WriteResponse.FromString,
    )
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    subscribed = asyncio.Event()

    async def on_message(client, topic, payload, qos, properties) -> int:
        command = pb.AddContactRequest.FromString(payload)
        async with in_flight:
            await add(command, timeout=30)
        return 0

    client = gmqtt.Client(f"handwired-writer-{os.getpid()}")
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(TOPIC, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    await client.connect(
        "127.0.0.1", args.broker, version=MQTTv50 if args.mqtt == "5" else MQTTv311
    )
    await subscribed.wait()
    await _serve_until_stopped()
    await client.disconnect()
    await channel.close()


async def gateway(args) -> None:
    import contacts_pb2 as pb
    import gmqtt
    from aiohttp import web
    from gmqtt.mqtt.constants import MQTTv50, MQTTv311

    client = gmqtt.Client(f"handwired-gateway-{os.getpid()}")
    await client.connect(
        "127.0.0.1", args.broker, version=MQTTv50 if args.mqtt == "5" else MQTTv311
    )

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        key = str(uuid.uuid4())
        command = pb.AddContactRequest(contact=pb.Contact(id=key, name=body["variables"]["name"]))
        client.publish(TOPIC, command.SerializeToString(), qos=1)
        return web.json_response({"data": {"addContact": {"status": "OK", "id": key}}})

    await _serve_graphql(post, args.port)
    await client.disconnect()


async def echo(args) -> None:
    """gRPC unary calls answering a contact or a list of ten, with nothing behind them."""
    import contacts_pb2 as pb
    import grpc

    contact = pb.Contact(
        id=str(uuid.uuid4()), name="Ada Lovelace 12345", last_updated="2026-01-01T00:00:00.000Z"
    )
    one = pb.GetContactResponse(contact=contact)
    ten = pb.ListContactsResponse(contacts=[contact] * 10)

    async def get(request, context):
        return one

    async def list_(request, context):
        return ten

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo",
                {
                    "Get": _unary(get, pb.GetContactRequest, pb.GetContactResponse),
                    "List": _unary(list_, pb.ListContactsRequest, pb.ListContactsResponse),
                },
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    await _serve_until_stopped()
    await server.stop(0.5)


async def relay(args) -> None:
    """A grpc.aio server passing figure 3's echo calls on to `--store` as bytes, both ways."""
    import grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.store}")
    onward = {path: channel.unary_unary(path) for path in (ECHO_GET, ECHO_LIST)}

    def passing(path: str):
        async def handle(request: bytes, context) -> bytes:
            return await onward[path](request, timeout=10)

        return grpc.unary_unary_rpc_method_handler(handle)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Get": passing(ECHO_GET), "List": passing(ECHO_LIST)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    await _serve_until_stopped()
    await server.stop(0.5)
    await channel.close()


GRAPHQL_SDL = """
type Contact { id: String  name: String!  last_updated: String }
type Query { contact(id: String!): Contact  listContacts(count: Int!): [Contact] }
"""


async def graphql(args) -> None:
    """POST /graphql: one tartiflette execution whose resolvers call `--store` (a relay)."""
    import json

    import contacts_pb2 as pb
    import grpc
    from aiohttp import web
    from tartiflette import Resolver, create_engine

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.store}")
    get, ten = echo_stubs(channel, pb)

    def data(contact) -> dict:
        return {"id": contact.id, "name": contact.name, "last_updated": contact.last_updated}

    @Resolver("Query.contact", schema_name="handwired")
    async def one(parent, args_, ctx, info):
        return data((await get(pb.GetContactRequest(id=args_["id"]), timeout=10)).contact)

    @Resolver("Query.listContacts", schema_name="handwired")
    async def many(parent, args_, ctx, info):
        answer = await ten(pb.ListContactsRequest(count=args_["count"]), timeout=10)
        return [data(c) for c in answer.contacts]

    engine = await create_engine(GRAPHQL_SDL, schema_name="handwired")

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        result = await engine.execute(body["query"], variables=body.get("variables"))
        return web.Response(text=json.dumps(result), content_type="application/json")

    await _serve_graphql(post, args.port)
    await channel.close()


def _unary(handler, request, response):
    """A unary method handler taking `request` messages and answering `response` ones."""
    import grpc

    return grpc.unary_unary_rpc_method_handler(
        handler,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )


def echo_stubs(channel: Any, pb: Any) -> tuple[Any, Any]:
    """The echo server's GetContact and ListContacts on a grpc.aio `channel` (`pb`: the compiled
    contacts_pb2): what the relay, the raw GraphQL handler and figure 3's one-hop floor call."""
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
    return get, ten


async def _serve_graphql(post: Any, port: int) -> None:
    """Answer POST /graphql on 127.0.0.1:`port` with `post` until SIGTERM or SIGINT."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/graphql", post)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await _serve_until_stopped()
    await runner.cleanup()


async def _serve_until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()


ROLES = {
    "broker": broker,
    "store": store,
    "writer": writer,
    "gateway": gateway,
    "echo": echo,
    "relay": relay,
    "graphql": graphql,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handwired")
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--port", type=int)
    parser.add_argument("--broker", type=int)
    parser.add_argument("--store", type=int)
    parser.add_argument("--mqtt", choices=["3.1.1", "5"], default="3.1.1")
    parser.add_argument("--pb2", help="folder with contacts_pb2.py")
    args = parser.parse_args()
    if args.pb2:
        sys.path.insert(0, args.pb2)
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(ROLES[args.role](args))


# -- used by the figures ---------------------------------------------------------------------


def compile_pb2(directory: Path) -> Path:
    """Generate contacts_pb2.py from the shipped proto into `directory`."""
    from bench.common import REPO

    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'proto'}",
            f"--python_out={directory}",
            str(REPO / "proto" / "contacts.proto"),
        ],
        check=True,
    )
    return directory


class Role:
    """One role as a child process, started and waited for until it prints "ready"."""

    def __init__(self, role: str, *options: str, pb2: Path | None = None) -> None:
        from bench.common import REPO

        argv = [sys.executable, "-m", "bench.handwired", role, *options]
        if pb2 is not None:
            argv += ["--pb2", str(pb2)]
        self.role = role
        self.output: list[str] = []
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> Role:
        import selectors

        deadline = time.monotonic() + timeout
        seen = []
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    break
                line = self.process.stdout.readline()
                if not line:
                    break
                if line.strip() == "ready":
                    import threading

                    # Keep reading, so that a chatty role never blocks on a full pipe.
                    threading.Thread(target=self._drain, daemon=True).start()
                    return self
                seen.append(line)
        self.stop()
        raise RuntimeError(f"hand-wired {self.role} did not start:\n{''.join(seen[-20:])}")

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


if __name__ == "__main__":
    main()
