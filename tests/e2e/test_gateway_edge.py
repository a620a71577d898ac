"""The gateway's edge under the attacks of the security audit: Host names (DNS rebinding),
WebSocket slots, slow and dropped requests, Python internals in answers, the headers of its
answers. Real clients against `cqrs-flow up`, with small limits so that each test is quick."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import time

import aiohttp
import pytest
from system import System, prepare
from test_up_lifecycle import node_pid

PROTOCOL = "graphql-transport-ws"
HOST = "api.example.test"  # a name the topology adds to the gateway's hosts
IDLE = 1.0  # limits.websocket_idle
READ_TIMEOUT = 1.0  # limits.read_timeout


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> System:
    system = System(
        prepare(
            "contacts_fast.yaml",
            tmp_path_factory.mktemp("edge"),
            **{
                "nodes.gateway.hosts": [HOST],
                "nodes.gateway.limits": {
                    "websockets_per_caller": 2,
                    "websocket_idle": f"{IDLE:g}s",
                    "read_timeout": f"{READ_TIMEOUT:g}s",
                },
            },
        )
    ).start()
    yield system
    system.stop()


def request(
    system: System,
    method: str = "POST",
    path: str = "/graphql",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One HTTP request with exactly the headers given (Host included, if given)."""
    listen = system.gateway.listen
    connection = http.client.HTTPConnection(listen.connect_host, listen.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", **(headers or {})}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        connection.putrequest(method, path, skip_host="Host" in headers)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def graphql(system: System, query: str, variables: dict | None = None, **headers: str):
    body = json.dumps({"query": query, "variables": variables}).encode()
    status, answer, response_headers = request(system, body=body, headers=headers)
    return status, json.loads(answer), response_headers


def ws_url(system: System) -> str:
    return f"ws://{system.gateway.listen.target}/graphql"


def raw_socket(system: System) -> socket.socket:
    listen = system.gateway.listen
    return socket.create_connection((listen.connect_host, listen.port), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed `sock` within `seconds`, and what it sent before."""
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


# -- M3: DNS rebinding ----------------------------------------------------------------------


def test_a_request_naming_a_host_the_gateway_does_not_have_is_refused(edge):
    """A page on evil.example rebound to the gateway's address sends Host: evil.example:PORT
    and the matching Origin: refused before anything runs, over POST and WebSocket alike."""
    port = edge.gateway.listen.port
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    status, answer, _ = graphql(edge, "{ __typename }", **evil)
    assert status == 421, answer
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "HOST_NOT_ALLOWED"
    assert "evil.example" in error["message"] and "hosts" in error["message"]

    async def upgrade() -> int:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url(edge), protocols=(PROTOCOL,), headers=evil)
            return refused.value.status

    assert asyncio.run(upgrade()) == 421


@pytest.mark.parametrize(
    "host",
    [
        "{listen}",
        "localhost:{port}",
        "LOCALHOST",
        "[::1]:{port}",
        "10.1.2.3:{port}",  # an IP address: no DNS name to rebind
        HOST + ":{port}",
        HOST + ".",
        None,  # HTTP/1.0 clients may send none
    ],
)
def test_the_listen_address_localhost_ip_addresses_and_the_topology_hosts_are_served(edge, host):
    listen = edge.gateway.listen
    headers = {}
    if host is not None:
        headers["Host"] = host.format(listen=listen.target, port=listen.port)
    body = json.dumps({"query": "{ __typename }"}).encode()
    if host is None:
        sock = raw_socket(edge)
        sock.sendall(
            b"POST /graphql HTTP/1.0\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        _, received = closed_within(sock, 5)
        sock.close()
        assert received.startswith(b"HTTP/1.0 200") or received.startswith(b"HTTP/1.1 200")
        return
    status, answer, _ = request(edge, body=body, headers=headers)
    assert status == 200 and json.loads(answer) == {"data": {"__typename": "Query"}}


def test_a_websocket_from_a_page_of_the_gateway_itself_is_served(edge):
    port = edge.gateway.listen.port

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            for origin in (f"http://{HOST}:{port}", f"http://localhost:{port}"):
                host = origin.partition("://")[2]
                async with session.ws_connect(
                    ws_url(edge), protocols=(PROTOCOL,), headers={"Host": host, "Origin": origin}
                ) as ws:
                    await ws.send_json({"type": "connection_init"})
                    assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
            # a page on another port of an allowed host is another origin
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(
                    ws_url(edge),
                    protocols=(PROTOCOL,),
                    headers={"Host": f"localhost:{port}", "Origin": "http://localhost:1"},
                )
            assert refused.value.status == 403

    asyncio.run(run())


# -- L1: WebSocket slots --------------------------------------------------------------------


def test_one_caller_cannot_hold_every_websocket_and_idle_ones_are_closed(edge):
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(ws_url(edge), protocols=(PROTOCOL,))
            second = await session.ws_connect(ws_url(edge), protocols=(PROTOCOL,))
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url(edge), protocols=(PROTOCOL,))
            assert refused.value.status == 429  # limits.websockets_per_caller: 2
            started = time.monotonic()
            await first.send_json({"type": "connection_init"})
            assert (await first.receive_json(timeout=10)) == {"type": "connection_ack"}
            for ws in (first, second):  # acknowledged or not, no operation: closed when idle
                message = await ws.receive(timeout=IDLE + 5)
                assert message.type == aiohttp.WSMsgType.CLOSE, message
                assert message.data == 1000 and "idle" in message.extra.lower(), message
            assert time.monotonic() - started < IDLE + 3
            await first.close()
            await second.close()
            # the slots are free again
            async with session.ws_connect(ws_url(edge), protocols=(PROTOCOL,)) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}

    asyncio.run(run())


def test_a_websocket_with_a_subscription_running_is_not_idle(edge):
    answer = edge.data('mutation { addContact(name: "Idle") { command_id } }')
    command_id = answer["addContact"]["command_id"]
    writer = node_pid(edge, "writer")

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(edge), protocols=(PROTOCOL,)) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
                await ws.send_json(
                    {
                        "id": "settled",
                        "type": "subscribe",
                        "payload": {
                            "query": f'subscription {{ commandSettled(id: "{command_id}") '
                            "{ state } }"
                        },
                    }
                )
                await asyncio.sleep(IDLE * 2.5)  # the writer is stopped: still QUEUED
                assert not ws.closed
                os.kill(writer, signal.SIGCONT)
                message = await ws.receive_json(timeout=20)
                assert message["type"] == "next", message
                assert message["payload"]["data"]["commandSettled"]["state"] == "APPLIED"

    os.kill(writer, signal.SIGSTOP)
    try:
        asyncio.run(run())
    finally:
        os.kill(writer, signal.SIGCONT)


# -- L2: slow and dropped requests -----------------------------------------------------------


def test_a_client_sending_its_headers_slowly_is_disconnected(edge):
    sock = raw_socket(edge)
    try:
        sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: localhost\r\n")
        closed = False
        deadline = time.monotonic() + READ_TIMEOUT + 4
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"X-a: b\r\n")  # one header line now and then, never the end
            except OSError:
                closed = True
                break
            closed, _ = closed_within(sock, 0.3)
        assert closed, "a connection that never finished its headers was kept open"
    finally:
        sock.close()


def test_a_body_sent_slowly_is_answered_408(edge):
    sock = raw_socket(edge)
    try:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"query": '
        )
        started = time.monotonic()
        sock.settimeout(READ_TIMEOUT + 4)
        received = sock.recv(65536)
        assert time.monotonic() - started < READ_TIMEOUT + 3
        assert received.startswith(b"HTTP/1.1 408"), received
        while b"REQUEST_TIMEOUT" not in received and (more := sock.recv(65536)):
            received += more
        assert b"limits.read_timeout" in received and b"REQUEST_TIMEOUT" in received
    finally:
        sock.close()


def test_a_dropped_body_is_one_warning_not_a_traceback(edge):
    marker = "dropped-body-1"
    sock = raw_socket(edge)
    sock.sendall(
        b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"X-Request-Id: " + marker.encode() + b"\r\nContent-Length: 1000\r\n\r\n" + b'{"q'
    )
    time.sleep(0.2)
    sock.close()
    line = edge.wait_for_line(marker, timeout=10)
    assert "WARNING" in line and "ERROR" not in line, line
    time.sleep(0.5)
    after = edge.output().split(line, 1)[1]
    assert "Traceback" not in after, after
    assert edge.data("{ __typename }") == {"__typename": "Query"}


# -- L7: Python internals in answers ---------------------------------------------------------


@pytest.mark.parametrize(
    "query, variables",
    [
        ("mutation($n: String!) { addContact(name: $n) { status message } }", {"n": "a\ud800"}),
        ("query($n: String!) { contact(id: $n) { id } }", {"n": "\udfff"}),
        ('{ contact(id: "\ud800") { id } }', None),
    ],
)
def test_text_that_is_not_unicode_is_refused_in_plain_words(edge, query, variables):
    body = json.dumps({"query": query, "variables": variables}).encode()  # \ud800 escaped
    status, answer, _ = request(edge, body=body)
    error = json.loads(answer)["errors"][0]
    assert status == 400, answer
    assert error["extensions"]["code"] == "INVALID_TEXT"
    assert "codec" not in error["message"] and "lone surrogate" in error["message"]


def test_an_empty_key_is_an_error_about_the_argument(edge):
    status, answer, _ = graphql(edge, '{ contact(id: "") { id } }')
    error = answer["errors"][0]
    assert status == 200 and answer["data"] == {"contact": None}
    assert error["message"] == "argument 'id' must not be empty", error
    assert error["extensions"]["code"] == "INVALID_ARGUMENT"
    answer = edge.data('mutation { deleteContact(id: "") { status message } }')
    assert answer["deleteContact"] == {
        "status": "ERROR",
        "message": "nothing was queued: argument 'id' must not be empty",
    }


@pytest.mark.parametrize(
    "query, data",
    [
        ("{ subscription: __typename }", {"subscription": "Query"}),
        ("query subscription { __typename }", {"__typename": "Query"}),
        ("# subscription\n{ __typename }", {"__typename": "Query"}),
    ],
)
def test_over_websocket_what_runs_is_decided_on_the_parsed_query(edge, query, data):
    async def run() -> list:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(edge), protocols=(PROTOCOL,)) as ws:
                await ws.send_json({"type": "connection_init"})
                assert (await ws.receive_json(timeout=10)) == {"type": "connection_ack"}
                await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": query}})
                return [await ws.receive_json(timeout=10), await ws.receive_json(timeout=10)]

    before = len(edge.lines)
    answer, complete = asyncio.run(run())
    assert answer == {"id": "1", "type": "next", "payload": {"data": data}}, answer
    assert complete == {"id": "1", "type": "complete"}
    assert "Traceback" not in "\n".join(edge.lines[before:])


# -- L8: what every answer lets a browser do with it -----------------------------------------


def every_kind_of_answer(system: System):
    return [
        request(system, "GET", "/", headers={"Accept": "text/html"}),  # the playground
        request(system, body=b'{"query": "{ __typename }"}'),
        request(system, body=b"{not json"),
        request(system, "GET", "/health"),
        request(system, "GET", "/no/such/page"),
        request(system, "GET", "/playground/static/graphiql.min.js"),
    ]


def test_every_answer_forbids_framing_and_sniffing(edge):
    for status, _, headers in every_kind_of_answer(edge):
        assert headers["X-Content-Type-Options"] == "nosniff", status
        assert headers["X-Frame-Options"] == "DENY", status
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], status


def test_the_playground_may_run_its_own_scripts_and_no_others(edge):
    _, page, headers = request(edge, "GET", "/", headers={"Accept": "text/html"})
    policy = dict(
        (part.strip().split(" ", 1) + [""])[:2]
        for part in headers["Content-Security-Policy"].split(";")
        if part.strip()
    )
    assert policy["default-src"] == "'none'"
    scripts = re.findall(r"<script>(.*?)</script>", page.decode(), re.DOTALL)
    assert len(scripts) == 1  # the page's own inline script, allowed by its hash
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert policy["script-src"].split() == ["'self'", f"'sha256-{digest}'"]
    assert "'self'" in policy["connect-src"] and "'unsafe-eval'" not in policy["script-src"]
    for src in re.findall(r'<script src="([^"]+)"', page.decode()):
        assert src.startswith("/playground/static/")
        assert request(edge, "GET", src)[0] == 200


# -- Server: the library and its version are nobody's business ------------------------------


def test_no_answer_names_the_servers_library_or_version(edge):
    for status, _, headers in every_kind_of_answer(edge):
        assert headers["Server"] == "cqrs-flow", (status, headers["Server"])
    sock = raw_socket(edge)  # aiohttp's own answer to a request it cannot parse
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    _, received = closed_within(sock, 5)
    sock.close()
    assert received.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), received
    assert b"Server: cqrs-flow\r\n" in received and b"aiohttp" not in received, received
