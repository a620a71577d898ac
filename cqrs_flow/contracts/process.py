"""What a launcher hands a node process besides its credentials: the environment variables."""

from __future__ import annotations

__all__ = ["ENV_READY_FD", "ENV_REPLICA", "ENV_RESTARTS"]

# A pipe's write end the node writes one line to once it is ready (a writer has no port to probe).
ENV_READY_FD = "CQRS_FLOW_READY_FD"
# Which of a writer's replicas this process is (1, 2, ...).
ENV_REPLICA = "CQRS_FLOW_REPLICA"
# How many times `up` restarted this process of the node before (for its metrics and status).
ENV_RESTARTS = "CQRS_FLOW_RESTARTS"
