"""The system secret every node credential derives from, read where the topology says.

$CQRS_FLOW_SECRET wins; otherwise the topology's `secret: {env: NAME}` or `secret: {file: path}`.
Wherever it comes from, it is read and checked the same way (`read_secret`), so a short secret is
refused whatever its source. The secret is never logged, printed or written anywhere by cqrs-flow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cqrs_flow.errors import NodeError
from cqrs_flow.security.sources import read_source
from cqrs_flow.security.tokens import ENV_SECRET
from cqrs_flow.topology.model import SecretSource, Topology

__all__ = ["MIN_SECRET_CHARS", "read_secret", "secret_variables"]

MIN_SECRET_CHARS = 16


def read_secret(topology: Topology, env: Mapping[str, str] = os.environ) -> str | None:
    """The system secret, or None when neither $CQRS_FLOW_SECRET nor the topology names one.

    NodeError if the source named cannot be read or holds fewer than MIN_SECRET_CHARS characters.
    """
    source = SecretSource(env=ENV_SECRET) if env.get(ENV_SECRET) else topology.secret
    if source is None:
        return None
    return _strong(read_source(source, topology, "secret", env), source)


def _strong(value: str, source: SecretSource) -> str:
    """`value`, read from `source`, if it is long enough to be the system secret."""
    if len(value) < MIN_SECRET_CHARS:
        raise NodeError(
            f"the system secret from {source} is shorter than {MIN_SECRET_CHARS} "
            "characters; make a strong one, e.g. openssl rand -hex 32"
        )
    return value


def secret_variables(topology: Topology) -> tuple[str, ...]:
    """Environment variables that may hold the secret: `up` keeps them from the nodes."""
    named = topology.secret.env if topology.secret and topology.secret.env else None
    return (ENV_SECRET, named) if named else (ENV_SECRET,)
