"""What a node tells its operators: Prometheus metrics (metrics.py) served with its health over
HTTP (server.py), traces (tracing.py), log lines (logs.py), and who holds a port (ports.py).

docs/OPERATIONS.md is the operator's side of all this.
"""

from __future__ import annotations

from cqrs_flow.telemetry.metrics import Children, Metrics, OperationNames
from cqrs_flow.telemetry.node import CURRENT, LIVENESS, NodeTelemetry, current

__all__ = [
    "CURRENT",
    "LIVENESS",
    "Children",
    "Metrics",
    "NodeTelemetry",
    "OperationNames",
    "current",
]
