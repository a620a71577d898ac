"""status: the table `cqrs-flow status` prints, and the listeners `up` checks before starting."""

from __future__ import annotations

from pathlib import Path

from cqrs_flow.launcher.ports import listeners
from cqrs_flow.launcher.status import NodeStatus, format_status
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import Address

SHIPPED = Path(__file__).resolve().parents[3] / "topology.yaml"


def test_the_table_has_a_row_per_process():
    table = format_status(
        [
            NodeStatus("store", "store", "ready", 10, 0, ("write service 127.0.0.1:50051",)),
            NodeStatus("writer", "writer", "not ready (store)", 11, 2, (), 3),
            NodeStatus("gateway", "gateway", "down"),
        ]
    )
    assert table.splitlines() == [
        "NODE     KIND     STATE              PID  RESTARTS  QUEUE  LISTEN",
        "store    store    ready              10   0         -      write service 127.0.0.1:50051",
        "writer   writer   not ready (store)  11   2         3      -",
        "gateway  gateway  down               -    -         -      -",
    ]


def test_up_checks_every_listener_of_the_nodes_it_runs_metrics_included():
    topology = load_topology(SHIPPED)
    found = listeners(topology, ["store", "writer"])
    assert found == [
        ("store", "write service", Address("127.0.0.1", 50051)),
        ("store", "read service", Address("127.0.0.1", 50052)),
        ("store", "metrics", Address("127.0.0.1", 9465)),
        ("writer", "metrics", Address("127.0.0.1", 9467)),
    ]
