"""One topology, nodes run by several `cqrs-flow up --only` processes (as on several hosts)."""

from __future__ import annotations

import os
from threading import Thread

from system import System, prepare, wait_until


def test_up_only_runs_its_nodes_and_waits_for_the_others(tmp_path):
    topology = prepare("contacts_fast.yaml", tmp_path)
    gateway = System(topology, args=["--only", "gateway"])
    backend = System(topology, args=["--only", "broker,store,reader,writer"])
    try:
        # The gateway's host starts first: it waits for the nodes of the other host it depends on.
        starting = Thread(target=gateway.start, daemon=True)
        starting.start()
        gateway.wait_for_line(r"waiting for broker \(broker, on another host: 127\.0\.0\.1:\d+\)")
        backend.start()
        starting.join(60)
        gateway.wait_for_line(r"waiting for reader \(reader, on another host: 127\.0\.0\.1:\d+\)")
        gateway.wait_for_line(r"all 1 nodes ready on this host \(of 5\)")
        backend.wait_for_line(r"all 4 nodes ready on this host \(of 5\)")
        assert not any("starting" in line and "gateway" in line for line in backend.lines)
        assert not any("starting" in line and "store" in line for line in gateway.lines)

        added = gateway.data('mutation { addContact(name: "Across hosts") { status id } }')[
            "addContact"
        ]
        assert added["status"] == "OK"
        query = f'{{ contact(id: "{added["id"]}") {{ name }} }}'
        assert wait_until(lambda: gateway.data(query)["contact"]) == {"name": "Across hosts"}
    finally:
        statuses = gateway.stop(), backend.stop()
    assert statuses == (0, 0)


def test_up_only_needs_a_shared_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CQRS_FLOW_SECRET"}
    system = System(prepare("contacts_fast.yaml", tmp_path), args=["--only", "gateway"])
    system.env = env
    try:
        system.start(timeout=20)
    except AssertionError as exc:
        assert "nodes on several hosts must share one secret" in str(exc)
    else:
        raise AssertionError("`up --only` started without a shared secret")
    assert system.stop(sig=None) == 1
