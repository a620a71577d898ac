"""Relocated copies of a topology: free ports, files of their own, overrides; still valid."""

from __future__ import annotations

from pathlib import Path

from cqrs_flow.topology import load_topology
from cqrs_flow.topology.relocate import relocate

SHIPPED = Path(__file__).resolve().parents[3] / "topology.yaml"


def test_a_relocated_copy_loads_with_new_ports_and_the_overrides(tmp_path):
    copy = relocate(SHIPPED, tmp_path / "sub" / "t.yaml", {"nodes.writer.delay": "250ms"})
    original, moved = load_topology(SHIPPED), load_topology(copy)
    ports = [a.port for n in moved.nodes.values() for _, a in n.listens]
    assert len(set(ports)) == len(ports) == 5
    assert not set(ports) & {a.port for n in original.nodes.values() for _, a in n.listens}
    assert all(a.host == "127.0.0.1" for n in moved.nodes.values() for _, a in n.listens)
    assert moved.nodes["writer"].delay == 0.25
    # The copy carries the files it names: a topology names files inside its project only.
    assert moved.protos == original.protos
    assert (moved.root / moved.protos[0]).read_bytes() == (
        original.root / original.protos[0]
    ).read_bytes()
    assert (moved.root / moved.nodes["gateway"].schema).is_file()
    assert (moved.root / "plugins" / "contacts.py").is_file()  # the reader's and gateway's plugins


def test_a_copy_next_to_its_source_reuses_the_files(tmp_path):
    first = relocate(SHIPPED, tmp_path / "first.yaml")
    second = relocate(first, tmp_path / "second.yaml")  # the same directory: nothing to copy
    assert load_topology(second).protos == load_topology(first).protos


def test_free_ports_are_below_the_ephemeral_range_and_distinct():
    """A port of the ephemeral range may be given to some process's outgoing connection before
    the node it was chosen for binds it."""
    from cqrs_flow.topology.relocate import FIRST_PORT, _ephemeral_start, free_port_run, free_ports

    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(FIRST_PORT <= port < _ephemeral_start() for port in ports)
    first = free_port_run(3)
    assert first >= FIRST_PORT and first + 2 < _ephemeral_start()
