"""A reader with its own read model, placed in its gateway's process, through `cqrs-flow up`:
queries right after mutations reflect them (X-After-Command), `status` shows the grouping, and
with the store frozen the reader keeps answering from its model, saying how stale it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from system import System, cli, prepare, wait_until

GET = "query($id: String!) { contact(id: $id) { id name } }"
LIST = "{ listContacts(count: 100) { id name } }"


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    file = prepare(
        "contacts_fast.yaml",
        tmp_path_factory.mktemp("read_model"),
        **{"nodes.reader.read_model": {"staleness": "1s"}, "nodes.reader.process": "gateway"},
    )
    running = System(file).start()
    yield running
    running.stop()


def rows(system: System) -> dict[str, dict]:
    answer = subprocess.run(
        [*cli(), "status", str(system.file), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=system.env,
    )
    return {row["process"]: row for row in map(json.loads, answer.stdout.splitlines())}


def health(system: System, node: str) -> dict:
    address = system.topology.metrics_of(node)
    assert address is not None
    try:
        with urllib.request.urlopen(f"http://{address.target}/health/ready", timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:  # 503 while not ready, with the same body
        return json.loads(error.read())


def after(system: System, query: str, command_id: str, variables: dict | None = None) -> dict:
    status, body, _ = system.http(
        body=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"X-After-Command": command_id},
    )
    assert status == 200, body
    answer = json.loads(body)
    assert "errors" not in answer, answer
    return answer["data"]


def test_up_runs_the_reader_in_the_gateways_process_and_status_says_so(system):
    assert "starting reader (in gateway's process)" in system.output()
    found = wait_until(
        lambda: (r := rows(system)) and all(x["state"] == "ready" for x in r.values()) and r,
        timeout=20,
    )
    reader = found["reader (in gateway's process)"]
    assert reader["pid"] == found["gateway"]["pid"]
    assert health(system, "reader")["read_model"]["answering"] == "model"
    pids = system.node_pids()
    assert len(pids) == len(system.topology.nodes) - 1  # one process less


def test_a_query_after_a_mutation_reflects_it(system):
    for round in range(3):
        added = system.data(f'mutation {{ addContact(name: "ryw {round}") {{ id command_id }} }}')
        contact_id, command_id = added["addContact"]["id"], added["addContact"]["command_id"]
        began = time.monotonic()
        found = after(system, GET, command_id, {"id": contact_id})
        assert found["contact"] == {"id": contact_id, "name": f"ryw {round}"}
        assert time.monotonic() - began < 3.0  # the write delay (0.5 s) and a little
        renamed = system.data(
            f'mutation {{ updateContact(id: "{contact_id}", name: "renamed {round}") '
            "{ command_id } }"
        )["updateContact"]["command_id"]
        names = {c["id"]: c["name"] for c in after(system, LIST, renamed)["listContacts"]}
        assert names[contact_id] == f"renamed {round}"


def test_with_the_store_frozen_the_model_answers_and_readiness_says_it_is_stale(system):
    contact_id = system.data('mutation { addContact(name: "kept") { id } }')["addContact"]["id"]
    wait_until(lambda: system.data(GET, {"id": contact_id})["contact"], timeout=10)
    store = rows(system)["store"]["pid"]
    os.kill(store, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # beyond the 1 s staleness bound, and a failed look at the store
        began = time.monotonic()
        assert system.data(GET, {"id": contact_id})["contact"]["name"] == "kept"
        assert time.monotonic() - began < 1.0  # at once, not after the store's timeout
        reader = rows(system)["reader (in gateway's process)"]
        assert reader["state"].startswith("not ready") and "read_model" in reader["state"]
        assert health(system, "reader")["read_model"]["answering"] == "store"
    finally:
        os.kill(store, signal.SIGCONT)
    wait_until(
        lambda: rows(system)["reader (in gateway's process)"]["state"] == "ready", timeout=15
    )
