"""Logs as operators read them: `up --log-format json` makes every line one JSON object (the
nodes' and the launcher's), and the access log gives one event per HTTP request and gRPC call
with method, status and duration, never what the request carried."""

from __future__ import annotations

import json
from urllib.parse import quote

from system import System, prepare, wait_until


def test_json_lines_and_an_access_log_without_request_data(tmp_path):
    system = System(
        prepare("contacts_fast.yaml", tmp_path),
        env={"CQRS_FLOW_ACCESS_LOG": "on"},
        args=["--log-format", "json"],
    )
    system.start()
    try:
        secretive = "Ada Secretive"
        answer = system.data(
            "mutation Add($name: String!) { addContact(name: $name) { id } }", {"name": secretive}
        )
        contact = answer["addContact"]["id"]
        status, _, _ = system.http(
            "/graphql?query=%7B__typename%7D&token=" + quote(secretive), method="GET"
        )
        assert status == 200
        query = f'{{ contact(id: "{contact}") {{ name }} }}'
        wait_until(lambda: system.data(query)["contact"])
        wait_until(
            lambda: any(
                '"rpc": "contacts.ContactReadService/GetContact"' in line for line in system.lines
            )
        )
    finally:
        system.stop()
    events = [json.loads(line) for line in system.lines]  # every line is JSON
    assert {"cqrs-flow", "broker", "store", "reader", "writer", "gateway"} <= {
        e["node"] for e in events
    }
    assert all({"level", "node", "message"} <= set(e) for e in events)
    access = [e for e in events if e.get("logger") == "cqrs_flow.access"]
    posts = [e for e in access if e.get("method") == "POST" and e["node"] == "gateway"]
    assert posts and all(
        e["protocol"] == "http"
        and e["path"] == "/graphql"
        and e["status"] == 200
        and e["duration_ms"] >= 0
        and e["request_id"]
        for e in posts
    )
    gets = [e for e in access if e.get("method") == "GET" and e.get("path") == "/graphql"]
    assert gets and "token" not in json.dumps(gets)  # the path without its query string
    calls = {e["rpc"] for e in access if e["protocol"] == "grpc"}
    assert {
        "cqrs_flow.Commands/Apply",  # the writer's commands, several to a call
        "contacts.ContactReader/GetContact",
        "contacts.ContactReadService/GetContact",
    } <= calls
    assert all(e["status"] in ("OK", "NOT_FOUND") for e in access if e["protocol"] == "grpc")
    assert not [e for e in access if secretive in json.dumps(e)]  # no variables, no bodies
    ready = [e for e in events if e["node"] == "cqrs-flow" and "nodes ready" in e["message"]]
    assert ready and ready[0]["level"] == "INFO"
