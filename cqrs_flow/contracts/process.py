"""What a launcher hands a node process besides its credentials: the environment variables."""

from __future__ import annotations

__all__ = ["ENV_GO_FD", "ENV_READY_FD", "ENV_REPLICA", "ENV_RESTARTS", "HELD"]

# A pipe's write end the node writes one line to once it is ready (a writer has no port to probe).
ENV_READY_FD = "CQRS_FLOW_READY_FD"
# Which of a writer's replicas this process is (1, 2, ...).
ENV_REPLICA = "CQRS_FLOW_REPLICA"
# How many times `up` restarted this process of the node before (for its metrics and status).
ENV_RESTARTS = "CQRS_FLOW_RESTARTS"
# A pipe's read end a node spawned ahead of its turn waits on: it imports its libraries and
# loads the topology and its protos while the nodes it depends on start, then waits for one
# line ("go") before it connects or listens. The launcher asks a process factory for such a
# pipe by setting the variable to HELD; the factory replaces it with the descriptor's number.
ENV_GO_FD = "CQRS_FLOW_GO_FD"
HELD = "held"
