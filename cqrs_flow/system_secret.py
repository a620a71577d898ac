"""The system secret every node credential derives from, read where the topology says.

$CQRS_FLOW_SECRET wins; otherwise the topology's `secret: {env: NAME}` or `secret: {file: path}`.
The secret is never logged, printed or written anywhere by cqrs-flow.
"""

from __future__ import annotations

import os
from typing import Mapping

from cqrs_flow.auth import ENV_SECRET
from cqrs_flow.errors import NodeError
from cqrs_flow.topology.model import Topology

__all__ = ["MAX_SECRET_BYTES", "read_secret", "secret_variables"]

MAX_SECRET_BYTES = 4096
MIN_SECRET_CHARS = 16


def read_secret(topology: Topology, env: Mapping[str, str] = os.environ) -> str | None:
    """The system secret, or None when neither $CQRS_FLOW_SECRET nor the topology names one."""
    if env.get(ENV_SECRET):
        return env[ENV_SECRET]
    source = topology.secret
    if source is None:
        return None
    if source.env:
        value = env.get(source.env, "").strip()
        if not value:
            raise NodeError(f"the topology reads the system secret from the environment variable "
                            f"{source.env}, which is not set; set it (the same on every node), e.g. "
                            f"export {source.env}=$(openssl rand -hex 32)")
    else:
        assert source.file is not None, "checked at load time: env or file"
        path = topology.root / source.file
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise NodeError(f"cannot read the system secret from {source.file} (secret.file, relative to "
                            f"{topology.source.name}): {exc.strerror or exc}; create it, e.g. "
                            f"openssl rand -hex 32 > {source.file} && chmod 600 {source.file}") from None
        if len(raw) > MAX_SECRET_BYTES:
            raise NodeError(f"{source.file} (secret.file) is longer than {MAX_SECRET_BYTES} bytes; "
                            "it should hold just the secret")
        value = raw.decode("utf-8", "replace").strip()
    if len(value) < MIN_SECRET_CHARS:
        raise NodeError(f"the system secret from {source} is shorter than {MIN_SECRET_CHARS} characters; "
                        "make a strong one, e.g. openssl rand -hex 32")
    return value


def secret_variables(topology: Topology) -> tuple[str, ...]:
    """Environment variables that may hold the secret: `up` keeps them from the nodes."""
    named = topology.secret.env if topology.secret and topology.secret.env else None
    return (ENV_SECRET, named) if named else (ENV_SECRET,)
