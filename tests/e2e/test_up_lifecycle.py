"""`cqrs-flow up` as a process: start-up, stop on signals, failures, and `node` / `validate`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from system import EACH_COMMAND, SECRET, TOPOLOGIES, System, cli, prepare, wait_until

from cqrs_flow.launcher.probes import mqtt_connack
from cqrs_flow.topology import Address


def listening_addresses(ports: set[int]) -> dict[int, str]:
    """port -> local address of the LISTEN sockets on those ports (from /proc/net/tcp and tcp6;
    gRPC listens on an IPv6 socket with the IPv4-mapped address ::ffff:127.0.0.1)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state != "0A" or int(port, 16) not in ports:  # 0A: LISTEN
                continue
            raw = b"".join(
                bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8)
            )
            if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":
                raw = raw[12:]
            found[int(port, 16)] = socket.inet_ntop(
                socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw
            )
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_every_node_in_reverse_order_and_exits_0(tmp_path, sig):
    system = System(prepare("contacts_fast.yaml", tmp_path)).start()
    ready = system.wait_for_line(r"all 5 nodes ready")
    assert f"GraphQL endpoint {system.gateway.url}" in ready
    assert len(system.node_pids()) == 5
    assert system.stop(sig) == 0
    stops = [line.split("stopping ")[1] for line in system.lines if "cqrs-flow | stopping " in line]
    assert stops == ["gateway", "writer", "reader", "store", "broker"] or stops == [
        "gateway",
        "reader",
        "writer",
        "store",
        "broker",
    ]
    assert stops.index("gateway") < stops.index("reader") < stops.index("store")
    assert system.node_pids() == []


def test_stopping_applies_the_commands_the_writer_holds(tmp_path):
    system = System(
        prepare("contacts_fast.yaml", tmp_path, **{"nodes.writer.delay": "2s"}), env=EACH_COMMAND
    ).start()
    ids = [
        system.data(f'mutation {{ addContact(name: "late {i}") {{ id }} }}')["addContact"]["id"]
        for i in range(3)
    ]
    assert system.stop(signal.SIGTERM) == 0
    output = system.output()
    held = output[
        output.index("cqrs-flow | stopping writer") : output.index("cqrs-flow | stopping store")
    ]
    assert "finishing 3 command(s) before stopping" in held
    for contact_id in ids:
        assert f"applied add_contact {contact_id}" in held
    assert "applied 3 command(s) in the last" in held  # the count, told before the writer stops


def test_start_order_follows_dependencies(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path)).start()
    try:
        ready_at = {}
        for i, line in enumerate(system.lines):
            for name in ("broker", "store", "reader", "writer", "gateway"):
                if f"cqrs-flow | {name} ready" in line:
                    ready_at[name] = i
                if "cqrs-flow | starting" in line and name in line.split("starting")[1]:
                    ready_at.setdefault(f"start:{name}", i)
        assert (
            ready_at["store"] < ready_at["start:reader"]
            and ready_at["broker"] < ready_at["start:writer"]
        )
        assert (
            ready_at["reader"] < ready_at["start:gateway"]
            and ready_at["broker"] < ready_at["start:gateway"]
        )
    finally:
        system.stop()


def test_every_listener_binds_to_loopback(contacts):
    ports = {
        address.port for node in contacts.topology.nodes.values() for _, address in node.listens
    }
    assert len(ports) == 5  # broker, store write + read, reader, gateway
    assert listening_addresses(ports) == {port: "127.0.0.1" for port in ports}


def test_a_node_that_cannot_start_stops_the_others(tmp_path):
    # The store's data directory is a file: it cannot open its database. (A port in use stops
    # `up` before it starts anything: tests/e2e/test_status.py.)
    system = System(prepare("contacts_fast.yaml", tmp_path, **{"nodes.store.data": "data"}))
    (tmp_path / "data").write_text("not a directory")
    proc = subprocess.run(
        [*cli(), "up", str(system.file)],
        capture_output=True,
        text=True,
        timeout=60,
        env=system.env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "error: node 'store' (store) exited with status 1 before it was ready" in output
    assert "starting gateway" not in output
    assert "all nodes stopped" in output
    assert system.node_pids() == []


def node_pid(system: System, name: str) -> int:
    return next(
        pid
        for pid in system.node_pids()
        if open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[-2] == name.encode()
    )


def test_a_crashed_node_is_restarted_and_the_system_goes_on(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path)).start()
    try:
        first = node_pid(system, "writer")
        os.kill(first, signal.SIGKILL)
        system.wait_for_line(
            r"node 'writer' exited with status -9; restarting it now \(restart 1 of at most 5\)"
        )
        wait_until(lambda: sum("cqrs-flow | writer ready in" in line for line in system.lines) == 2)
        assert node_pid(system, "writer") != first
        contact_id = system.data('mutation { addContact(name: "After restart") { id } }')[
            "addContact"
        ]["id"]
        query = f'{{ contact(id: "{contact_id}") {{ name }} }}'
        assert wait_until(lambda: system.data(query)["contact"]) == {"name": "After restart"}
    finally:
        assert system.stop() == 0
    assert system.node_pids() == []


def test_a_node_with_restart_never_stops_the_system_with_status_1(tmp_path):
    system = System(
        prepare("contacts_fast.yaml", tmp_path, **{"nodes.writer.restart": "never"})
    ).start()
    os.kill(node_pid(system, "writer"), signal.SIGKILL)
    assert system.stop(sig=None) == 1
    assert (
        "error: node 'writer' exited with status -9 (restart: never); stopping the others"
        in system.output()
    )
    assert system.node_pids() == []


def test_up_gives_up_after_the_restart_limit(tmp_path):
    system = System(
        prepare("contacts_fast.yaml", tmp_path, **{"nodes.reader.restart_limit": 1})
    ).start()
    os.kill(node_pid(system, "reader"), signal.SIGKILL)
    wait_until(lambda: sum("cqrs-flow | reader ready in" in line for line in system.lines) == 2)
    os.kill(node_pid(system, "reader"), signal.SIGKILL)
    assert system.stop(sig=None) == 1
    assert (
        "error: node 'reader' exited with status -9 after 1 restarts in a row (restart_limit 1)"
        in system.output()
    )
    assert system.node_pids() == []


def test_broken_topology_starts_nothing(tmp_path):
    broken = prepare("broken.yaml", tmp_path, source=TOPOLOGIES / "contacts_fast.yaml")
    text = broken.read_text().replace("delay: 500ms", "dealy: 500ms")
    broken.write_text(text)
    proc = subprocess.run([*cli(), "up", str(broken)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "dealy" in t)
    assert (
        f"broken.yaml:{line}: nodes.writer.dealy: unknown key; did you mean 'delay'?" in proc.stderr
    )
    assert "starting" not in proc.stdout


def test_a_topology_its_protos_refuse_starts_nothing_though_its_nodes_were_spawned(tmp_path):
    """The contract checks run while the nodes' processes, spawned held, import (start-up):
    when they fail, those processes are killed before any connects or listens, unheard."""
    broken = prepare("broken.yaml", tmp_path, source=TOPOLOGIES / "contacts_fast.yaml")
    text = broken.read_text()
    assert " contact: GetContact\n" in text
    text = text.replace(" contact: GetContact\n", " contact: GetContactz\n")
    broken.write_text(text)
    proc = subprocess.run([*cli(), "up", str(broken)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "GetContactz" in t)
    assert f"broken.yaml:{line}: nodes.gateway.queries.contact" in proc.stderr
    assert "has no RPC 'GetContactz'" in proc.stderr
    assert proc.stdout == ""  # no "starting", no node's own report, no "stopping"
    left = subprocess.run(["pgrep", "-f", str(broken)], capture_output=True, text=True)
    assert left.stdout == ""


def test_validate_rejects_wrong_side_wiring():
    proc = subprocess.run(
        [*cli(), "validate", str(TOPOLOGIES / "writer_reads_store.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert (
        "nodes.writer.store: a writer may use only a store's write service, not 'store.read'"
        in proc.stderr
    )
    assert (
        "nodes.reader.store: a reader may use only a store's read service, not 'store.write'"
        in proc.stderr
    )


def test_node_runs_one_node_in_the_foreground(tmp_path):
    file = prepare("contacts_fast.yaml", tmp_path)
    address: Address = System(file).topology.nodes["broker"].listen
    process = subprocess.Popen(
        [*cli(), "node", str(file), "broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CQRS_FLOW_SECRET": SECRET},
    )
    login = System(file).mqtt_login("gateway")
    try:
        wait_until(lambda: asyncio.run(mqtt_connack(address, login=login)), timeout=20)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    assert "broker 'broker' ready" in output
