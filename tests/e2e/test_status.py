"""`cqrs-flow status FILE` shows every node of a running system (ready, pid, restarts, listen
addresses, queue depth); `up` says a port already in use is, naming the node, the address and
the process holding it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

from system import System, cli, prepare, wait_until


def status(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli(), "status", str(system.file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=system.env,
    )


def rows(system: System) -> dict[str, dict]:
    answer = status(system, "--json")
    return {row["process"]: row for row in map(json.loads, answer.stdout.splitlines())}


def test_status_shows_every_node_and_counts_restarts(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path)).start()
    try:
        table = status(system)
        assert table.returncode == 0, table.stdout + table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["NODE", "KIND", "STATE", "PID", "RESTARTS", "QUEUE", "LISTEN"]
        assert [line.split()[:3] for line in lines[1:]] == [
            [name, node.kind, "ready"] for name, node in system.topology.nodes.items()
        ]
        before = rows(system)
        assert sorted(before["store"]["listen"]) == sorted(
            [
                f"write service {system.topology.nodes['store'].write.listen}",
                f"read service {system.topology.nodes['store'].read.listen}",
                f"metrics {system.topology.metrics_of('store')}",
            ]
        )
        assert before["writer"]["queue"] == 0 and before["gateway"]["queue"] == 0
        assert set(system.node_pids()) == {row["pid"] for row in before.values()}

        os.kill(before["writer"]["pid"], signal.SIGKILL)  # `up` restarts it (on-failure)
        after = wait_until(
            lambda: (
                (r := rows(system))["writer"]["state"] == "ready"
                and r["writer"]["pid"] != before["writer"]["pid"]
                and r
            ),
            timeout=30,
        )
        assert after["writer"]["restarts"] == 1
        assert after["store"]["restarts"] == 0
    finally:
        system.stop()
    down = status(system)
    assert down.returncode == 1
    assert all(" down " in line for line in down.stdout.splitlines()[1:]), down.stdout


def test_a_port_in_use_is_reported_with_node_address_and_holder(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path))
    gateway = system.gateway.listen
    with socket.socket() as taken:
        taken.bind((gateway.host, gateway.port))
        taken.listen()
        process = subprocess.run(
            [*cli(), "up", str(system.file)],
            capture_output=True,
            text=True,
            timeout=60,
            env=system.env,
        )
    assert process.returncode == 1
    assert (
        f"error: node 'gateway' cannot listen on {gateway} (http): port {gateway.port} is "
        f"already in use by pid {os.getpid()} (" in process.stdout
    ), process.stdout
    assert "starting" not in process.stdout  # nothing was started
