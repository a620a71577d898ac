"""Warnings about links open to the network: listeners beyond loopback without TLS or a login.

Not problems (a topology with them runs): `validate` and `up` print them, so exposing a node is a
decision and not an accident. docs/SECURITY.md says how to lock each link down.
"""

from __future__ import annotations

import ipaddress

from cqrs_flow.errors import Problem
from cqrs_flow.topology.checks import grpc_endpoints
from cqrs_flow.topology.model import Address, BrokerNode, GatewayNode, Topology
from cqrs_flow.topology.problems import KeyPath, Problems

__all__ = ["exposure_warnings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a wildcard (0.0.0.0, ::) reaches beyond this machine


def exposure_warnings(topology: Topology) -> list[Problem]:
    warnings = Problems(topology.located)

    def warn(path: KeyPath, address: Address, message: str) -> None:
        warnings(path, f"{address} is reachable beyond this machine: {message}")

    for path, address, tls, _ in grpc_endpoints(topology):
        if tls is None and not is_loopback(address.host):
            warn(
                path + ("listen",),
                address,
                "gRPC in plain text, node tokens and documents readable on the network; add 'tls' "
                "(with client_auth: true to also refuse callers without a certificate)",
            )
    for broker in topology.nodes_of(BrokerNode):
        if broker.secure:
            continue
        if broker.external and not is_loopback(broker.address.host):
            warn(
                ("nodes", broker.name, "url"),
                broker.address,
                "MQTT in plain text, passwords and commands readable on the network; use TLS "
                "(mqtts:// and 'tls: {ca: ...}')",
            )
        elif not broker.external and not is_loopback(broker.listen.host):
            warn(
                ("nodes", broker.name, "listen"),
                broker.listen,
                "clients log in, but in plain text: passwords and commands are readable on the "
                "network; add 'tls' with the broker's certificate and key",
            )
    for gateway in topology.nodes_of(GatewayNode):
        if not is_loopback(gateway.listen.host):
            unauthenticated = (
                "; and it runs WITHOUT authentication: every caller may run every query and "
                "mutation on every document; add an 'auth' section (end-user tokens and rules "
                "per role, docs/SECURITY.md)"
                if gateway.auth is None
                else ""
            )
            warn(
                ("nodes", gateway.name, "listen"),
                gateway.listen,
                "the gateway serves GraphQL over plain HTTP to anyone; put a reverse proxy "
                f"with TLS in front of it{unauthenticated}",
            )
        if "*" in gateway.cors_origins:
            warnings(
                ("nodes", gateway.name, "cors", "origins"),
                "'*' lets a page on any web site call the gateway from its visitors' browsers and "
                "read the answers; list the origins of your own pages instead",
            )
    return warnings.problems
