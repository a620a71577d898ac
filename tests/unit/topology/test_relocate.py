"""Relocated copies of a topology: free ports, absolute paths, overrides; still valid."""

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
    assert (moved.root / moved.protos[0]).resolve() == (
        original.root / original.protos[0]
    ).resolve()
    assert (moved.root / moved.nodes["gateway"].schema).is_file()
