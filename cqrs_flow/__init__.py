"""cqrs-flow: a declarative CQRS framework driven by a YAML topology."""

import os

__version__ = "0.1.0"

__all__ = ["__version__"]

# gRPC's fork handlers: off, before anything imports grpc. A cqrs-flow process forks only to
# exec another (`up` starting a node), which needs none of them, and when they cannot run (a
# thread inside a gRPC call at that moment) gRPC's core prints a line of its own to stderr,
# which breaks JSON logs (--log-format json). A user's own setting wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
