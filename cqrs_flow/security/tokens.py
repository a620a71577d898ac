"""Per-node credentials that enforce the topology's wiring on every gRPC call.

Each node has a token derived from a secret of the whole system: HMAC-SHA256(secret, node name).
`cqrs-flow up` makes a fresh secret per run and hands each node only its own token and the token
hashes of the nodes allowed to call it; a node run by hand (`cqrs-flow node`) derives both from
CQRS_FLOW_SECRET, which must then be the same on every node. Every gRPC server refuses any call
from a node the topology does not wire to that service with PERMISSION_DENIED (CallerCheck), so a
writer cannot read the store and a reader cannot write it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cqrs_flow.errors import NodeError
from cqrs_flow.security.sources import read_source
from cqrs_flow.topology.model import GrpcClient, ReaderNode, Topology

__all__ = [
    "ENV_CALLERS",
    "ENV_GUESTS",
    "ENV_SECRET",
    "ENV_TOKEN",
    "CallerCheck",
    "Credentials",
    "OutsideCaller",
    "credentials_from_env",
    "derive",
    "derive_token",
    "digest",
    "guests_environment",
    "json_map_from_env",
    "launch_environment",
    "new_secret",
    "outside_callers",
]

ENV_SECRET = "CQRS_FLOW_SECRET"
ENV_TOKEN = "CQRS_FLOW_TOKEN"
ENV_CALLERS = "CQRS_FLOW_CALLERS"
ENV_GUESTS = "CQRS_FLOW_GUESTS"  # the credentials of the nodes run in another node's process
METADATA_NODE = "x-cqrs-flow-node"
METADATA_TOKEN = "x-cqrs-flow-token"
METADATA_AUTHORIZATION = "authorization"  # an outside client's "Bearer <token>"
# What gRPC's auth context says of a TLS client certificate the server has checked.
CERTIFICATE_NAMES = ("x509_common_name", "x509_subject_alternative_name")
PUBLIC_SERVICES = {"grpc.health.v1.Health"}  # readiness probes need no credentials


def new_secret() -> str:
    return secrets.token_hex(32)


def derive(secret: str, label: str) -> str:
    """A credential derived from the system secret: HMAC-SHA256(secret, "cqrs-flow " + label)."""
    return hmac.new(secret.encode(), f"cqrs-flow {label}".encode(), hashlib.sha256).hexdigest()


def derive_token(secret: str, node: str) -> str:
    return derive(secret, f"node {node}")


def digest(credential: str | bytes) -> str:
    """What a node is told of the credentials it accepts: their SHA-256, never the credential."""
    return hashlib.sha256(
        credential.encode() if isinstance(credential, str) else credential
    ).hexdigest()


def json_map_from_env(env: Mapping[str, str], name: str, what: str) -> dict[str, str]:
    """The JSON object of strings in the environment variable `name` (`up` puts it there);
    NodeError saying it must be "a JSON object of <what>" if it is not one."""
    try:
        value = json.loads(env.get(name) or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise NodeError(f"{name} must be a JSON object of {what}")
    return value


@dataclass(frozen=True)
class Credentials:
    """A node's identity on outgoing calls, and the hashes of the callers it accepts."""

    node: str
    token: str
    callers: Mapping[str, str] = field(default_factory=dict)  # caller node -> sha256(token)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((METADATA_NODE, self.node), (METADATA_TOKEN, self.token))


def _callers(topology: Topology, node: str, secret: str) -> dict[str, str]:
    """The token hashes of the nodes wired to call `node` (its outside clients have none)."""
    names = set().union(*topology.callers_of(node).values()) if topology.callers_of(node) else set()
    return {
        caller: digest(derive_token(secret, caller))
        for caller in sorted(names)
        if caller in topology.nodes
    }


@dataclass(frozen=True)
class OutsideCaller:
    """An outside gRPC client a node accepts, and what proves it: the SHA-256 of its bearer
    token, or the name its TLS client certificate carries."""

    client: GrpcClient
    token_digest: str | None = None

    @property
    def name(self) -> str:
        return self.client.name


def outside_callers(
    topology: Topology, node: str, env: Mapping[str, str] = os.environ
) -> dict[str, OutsideCaller]:
    """The outside clients `node` declares, their tokens read now (NodeError saying how to
    provide a missing one) and kept only as their SHA-256."""
    declared = topology.nodes[node]
    if not isinstance(declared, ReaderNode):
        return {}
    callers = {}
    for name, client in declared.clients.items():
        token = None
        if client.token is not None:
            key = f"nodes.{node}.clients.{name}.token"
            token = digest(read_source(client.token, topology, key, env))
        callers[name] = OutsideCaller(client, token)
    return callers


def launch_environment(topology: Topology, node: str, secret: str) -> dict[str, str]:
    """What `up` puts in a node's environment: its own token and its callers' token hashes."""
    return {
        ENV_TOKEN: derive_token(secret, node),
        ENV_CALLERS: json.dumps(_callers(topology, node, secret)),
    }


def guests_environment(topology: Topology, host: str, secret: str) -> dict[str, str]:
    """What `up` adds to the environment of a process that runs other nodes beside `host` (a
    reader in its gateway's process): each guest's own token and its callers' token hashes."""
    guests = topology.guests_of(host)
    if not guests:
        return {}
    return {
        ENV_GUESTS: json.dumps(
            {
                guest: {
                    "token": derive_token(secret, guest),
                    "callers": _callers(topology, guest, secret),
                }
                for guest in guests
            }
        )
    }


def credentials_from_env(
    topology: Topology, node: str, env: Mapping[str, str] = os.environ
) -> Credentials:
    """The node's credentials, from what `up` handed it (its process's, or, for a node run in
    another's process, those of ENV_GUESTS) or from CQRS_FLOW_SECRET."""
    if env.get(ENV_GUESTS):
        guests = json.loads(env[ENV_GUESTS])
        if isinstance(guests, dict) and isinstance(guests.get(node), dict):
            guest = guests[node]
            return Credentials(node, str(guest["token"]), dict(guest["callers"]))
    if env.get(ENV_TOKEN):
        return Credentials(
            node, env[ENV_TOKEN], json_map_from_env(env, ENV_CALLERS, "node name -> token hash")
        )
    if env.get(ENV_SECRET):
        secret = env[ENV_SECRET]
        return Credentials(node, derive_token(secret, node), _callers(topology, node, secret))
    raise NodeError(
        f"node '{node}' has no credentials: run it with `cqrs-flow up`, or set {ENV_SECRET} to the "
        f"same secret on every node (for example: export {ENV_SECRET}=$(openssl rand -hex 32))"
    )


class CallerCheck:
    """Refuses calls from nodes the topology does not wire to the called service, and from
    outside clients to RPCs their `call` does not list.

    The gRPC servers ask it at the start of every call (cqrs_flow.transport.rpc wraps each handler
    with it): a server interceptor would cost a coroutine and a handler lookup per call. A token
    that matched its hash once is remembered, so SHA-256 runs once per caller, not once per call.
    """

    def __init__(
        self,
        allowed: Mapping[str, set[str]],
        credentials: Credentials,
        outside: Mapping[str, OutsideCaller] | None = None,
    ) -> None:
        self._allowed = {service: frozenset(callers) for service, callers in allowed.items()}
        self._callers = credentials.callers  # caller node -> sha256(token)
        self._verified: dict[str, bytes] = {}  # caller node -> the token that matched its hash
        self._outside = dict(outside or {})
        self._tokens = {c.token_digest: c for c in self._outside.values() if c.token_digest}
        self._bearers: dict[bytes, OutsideCaller] = {}  # a token that matched -> its client
        self._certificates = {
            c.client.certificate: c for c in self._outside.values() if c.client.certificate
        }

    def refusal(
        self,
        service: str,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        rpc: str = "",
        peer: Callable[[], Mapping[str, Iterable[bytes]]] | None = None,
    ) -> str | None:
        """Why a call to `rpc` of `service` with this invocation metadata is refused; None if it
        may go on. `peer` gives the call's auth context (a checked TLS client certificate's
        names), asked only when an outside client may show one."""
        if service in PUBLIC_SERVICES:
            return None
        caller: str | bytes = ""
        token: str | bytes = ""
        bearer: str | bytes | None = None
        for key, value in metadata or ():  # the last of repeated keys counts, as in a dict
            if key == METADATA_NODE:
                caller = value
            elif key == METADATA_TOKEN:
                token = value
            elif key == METADATA_AUTHORIZATION:
                bearer = value
        if caller or bearer is None:
            outside = self._certified(peer) if not caller and self._certificates else None
            if outside is not None:
                return self._granted(outside, service, rpc)
            if not isinstance(caller, str) or not self._known(caller, token):
                return (
                    f"caller {caller or '(anonymous)'!r} is not a node of this system "
                    "or its credentials are wrong"
                )
            if caller not in self._allowed.get(service, ()):
                return (
                    f"node '{caller}' may not call {service}: the topology does not wire it there"
                )
            return None
        outside = self._bearer(bearer)
        if outside is None:
            return "the bearer token is not one of an outside client this node accepts"
        return self._granted(outside, service, rpc)

    def _known(self, caller: str, token: str | bytes) -> bool:
        presented = token.encode() if isinstance(token, str) else token
        verified = self._verified.get(caller)
        if verified is not None and hmac.compare_digest(verified, presented):
            return True
        expected = self._callers.get(caller)
        if (
            not caller
            or expected is None
            or not hmac.compare_digest(expected.encode(), digest(presented).encode())
        ):
            return False
        self._verified[caller] = presented  # one entry per node of the system at most
        return True

    def _bearer(self, value: str | bytes) -> OutsideCaller | None:
        """The outside client whose token `value` ("Bearer <token>") shows, if any."""
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = token.strip().encode()
        known = self._bearers.get(presented)
        if known is not None:
            return known
        presented_digest = digest(presented).encode()
        found = None
        for token_digest, client in self._tokens.items():  # each compared, in constant time
            if hmac.compare_digest(token_digest.encode(), presented_digest):
                found = client
        if found is not None:
            self._bearers[presented] = found  # one entry per outside client at most
        return found

    def _certified(
        self, peer: Callable[[], Mapping[str, Iterable[bytes]]] | None
    ) -> OutsideCaller | None:
        """The outside client named in the call's (checked) TLS client certificate, if any."""
        if peer is None:
            return None
        context = peer() or {}
        for key in CERTIFICATE_NAMES:
            for name in context.get(key, ()):
                text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
                client = self._certificates.get(text)
                if client is not None:
                    return client
        return None

    @staticmethod
    def _granted(outside: OutsideCaller, service: str, rpc: str) -> str | None:
        if outside.client.may_call(service, rpc):
            return None
        return (
            f"client '{outside.name}' may not call {service}/{rpc}: its 'call' in the "
            "topology does not list it"
        )
