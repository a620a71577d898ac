"""A topology's real nodes, run in this process and event loop on free loopback ports, for one
case at a time: what `cqrs-flow test` runs each case against.

The topology is copied once per run (topology/relocate.py: free ports, its files beside it) with
what a test needs changed: every store in memory (each case starts empty), gateways' outboxes in
memory, an external broker replaced by the embedded one, and end-user tokens checked against a
key made for the run, so that a case can act as any role. The nodes are the same classes
`cqrs-flow up` runs as processes; they are started in dependency order with `start` (no signal
handling, no metrics listener) and stopped in reverse order. Every writer waits its delay on the
run's VirtualClock.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from cqrs_flow.nodes import build_service
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.nodes.writer import Clock, WriterService
from cqrs_flow.protobuf.compiler import ProtoSet, compile_protos
from cqrs_flow.security.mqtt_logins import ENV_MQTT_PASSWORD, ENV_MQTT_USERS
from cqrs_flow.security.tokens import ENV_CALLERS, ENV_SECRET, ENV_TOKEN, new_secret
from cqrs_flow.testing.clock import VirtualClock
from cqrs_flow.topology import Topology, load_topology, start_batches
from cqrs_flow.topology.model import GatewayNode
from cqrs_flow.topology.relocate import free_ports, relocate

__all__ = ["Prepared", "RunningSystem", "prepare", "run_secret"]

KEY_ID = "cqrs-flow-test"
JWKS_FILE = "test-keys/jwks.json"  # beside the copy of the topology


@dataclass
class Prepared:
    """A copy of a topology ready to run cases against, and the key its tokens are signed with."""

    topology: Topology
    protos: ProtoSet
    signing_key: ec.EllipticCurvePrivateKey

    def token(self, gateway: GatewayNode, claims: Mapping[str, Any]) -> str:
        """An end-user token for `gateway` with `claims` (`role` goes into the gateway's role
        claim), valid for an hour of real time."""
        auth = gateway.auth
        assert auth is not None, "the caller checks that the gateway has auth"
        now = int(time.time())
        body: dict[str, Any] = {"iss": auth.issuer, "iat": now, "exp": now + 3600}
        if auth.audience:
            body["aud"] = auth.audience[0]
        for name, value in claims.items():
            body[auth.role_claim if name == "role" else name] = value
        return jwt.encode(body, self.signing_key, algorithm="ES256", headers={"kid": KEY_ID})


def prepare(source: Path, directory: Path) -> Prepared:
    """Copy topology `source` into `directory` as the cases run it (see the module's doc)."""
    data = yaml.safe_load(Path(source).read_text())
    overrides: dict[str, Any] = {"secret": None}
    nodes = data.get("nodes") or {}
    for name, node in nodes.items():
        kind = node.get("kind") if isinstance(node, dict) else None
        at = f"nodes.{name}"
        if kind == "store":
            overrides |= {f"{at}.data": None, f"{at}.backend": None, f"{at}.mongodb": None}
        elif kind == "gateway":
            overrides[f"{at}.data"] = None
            if node.get("auth"):
                overrides |= {
                    f"{at}.auth.jwks": {"file": JWKS_FILE},
                    f"{at}.auth.secret": None,
                    f"{at}.auth.algorithms": ["ES256"],
                }
        elif kind == "broker" and node.get("url"):
            overrides |= {
                f"{at}.url": None,
                f"{at}.protocol": None,  # the embedded broker speaks 3.1.1
                f"{at}.tls": None,
                f"{at}.listen": f"127.0.0.1:{free_ports(1)[0]}",
            }
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = directory / JWKS_FILE
    jwks.parent.mkdir(parents=True, exist_ok=True)
    jwks.write_text(json.dumps({"keys": [{**public, "kid": KEY_ID, "alg": "ES256"}]}))
    copy = relocate(Path(source), directory / Path(source).name, overrides)
    topology = load_topology(copy)
    return Prepared(topology, compile_protos(list(topology.protos), topology.root), key)


@contextmanager
def run_secret() -> Iterator[None]:
    """The nodes of a run derive their credentials from one secret made for it (in this
    process's environment while the run lasts, as `cqrs-flow node` reads it)."""
    names = (ENV_SECRET, ENV_TOKEN, ENV_CALLERS, ENV_MQTT_PASSWORD, ENV_MQTT_USERS)
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    os.environ[ENV_SECRET] = new_secret()
    try:
        yield
    finally:
        os.environ.pop(ENV_SECRET, None)
        os.environ.update(saved)


@dataclass
class RunningSystem:
    """The nodes of one case, started; `stop` releases them all."""

    prepared: Prepared
    clock: VirtualClock
    services: dict[str, NodeService] = field(default_factory=dict)

    @property
    def topology(self) -> Topology:
        return self.prepared.topology

    async def start(self) -> None:
        """Start every node, a batch of the dependency order at a time; on a failure, stop
        what was started and raise."""
        try:
            for batch in start_batches(self.topology):
                for name in batch:
                    service = build_service(self.topology, name, self.prepared.protos)
                    if isinstance(service, WriterService):
                        service.clock = Clock(self.clock.now, self.clock.sleep)
                    self.services[name] = service
                    await service.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the nodes, last started first. Commands still in their delay are let through
        first (the clock runs out), so that no writer waits for them in real time."""
        while self.clock.advance_to_next():
            pass
        for service in reversed(list(self.services.values())):
            await service.stop()
        self.services.clear()

    def of_kind(self, kind: type[NodeService]) -> list[Any]:
        return [s for s in self.services.values() if isinstance(s, kind)]
