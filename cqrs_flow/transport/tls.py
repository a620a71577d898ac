"""TLS for gRPC links, from the topology's `tls` (a server) and `client_tls` (a caller) keys.

A server presents its certificate and, with client_auth, accepts only callers presenting one
signed by its `ca`; callers check the server's certificate against the same `ca` and the name
they dial (or `server_name`). Files are read when a node starts; a missing or unreadable one is
a NodeError naming the key.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from cqrs_flow.errors import NodeError, ProjectFileError
from cqrs_flow.topology.model import BrokerNode, TlsClient, TlsServer, Topology
from cqrs_flow.topology.paths import MAX_PEM_BYTES, project_path, read_project_file

__all__ = [
    "ChannelSecurity",
    "broker_listener_tls",
    "channel_security",
    "mqtt_client_context",
    "server_credentials",
]


def _read(topology: Topology, relative: Path, what: str) -> bytes:
    try:
        data = read_project_file(topology, relative, MAX_PEM_BYTES, what)
    except ProjectFileError as exc:
        raise NodeError(str(exc)) from None
    if b"-----BEGIN " not in data:
        raise NodeError(
            f"the {what} {relative} is not a PEM file (expected '-----BEGIN ...' blocks)"
        )
    return data


def server_credentials(topology: Topology, tls: TlsServer) -> grpc.ServerCredentials:
    """The credentials a gRPC server with `tls` listens with."""
    key = _read(topology, tls.key, "TLS private key")
    cert = _read(topology, tls.cert, "TLS certificate")
    ca = _read(topology, tls.ca, "TLS CA certificate") if tls.ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=tls.client_auth
    )


@dataclass(frozen=True)
class ChannelSecurity:
    """What a channel to a TLS endpoint needs: credentials, and the name to expect (if not the
    host's)."""

    credentials: grpc.ChannelCredentials
    server_name: str | None = None

    @property
    def options(self) -> tuple[tuple[str, str], ...]:
        return (("grpc.ssl_target_name_override", self.server_name),) if self.server_name else ()


def channel_security(
    topology: Topology, tls: TlsServer | None, client_tls: TlsClient | None
) -> ChannelSecurity | None:
    """How to reach an endpoint with `tls` (None: in plain text), presenting `client_tls` if
    given."""
    if tls is None:
        return None
    ca = _read(topology, tls.ca, "TLS CA certificate") if tls.ca else None
    key = cert = None
    if client_tls is not None:
        key = _read(topology, client_tls.key, "TLS client private key")
        cert = _read(topology, client_tls.cert, "TLS client certificate")
    return ChannelSecurity(
        grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert),
        tls.server_name,
    )


def mqtt_client_context(topology: Topology, broker: BrokerNode) -> ssl.SSLContext | None:
    """The TLS context MQTT clients of `broker` connect with (None: plain text): the broker's
    certificate is checked against its 'ca', or the system's trusted roots, and the host dialed."""
    if not broker.secure:
        return None
    ca = broker.tls.ca if broker.tls else None
    if ca is not None:
        _read(topology, ca, "MQTT TLS CA certificate")  # a clear error before ssl's
    try:
        return ssl.create_default_context(cafile=str(project_path(topology, ca)) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise NodeError(f"cannot use the MQTT TLS CA certificate {ca}: {exc}") from None


def broker_listener_tls(topology: Topology, broker: BrokerNode) -> dict[str, object]:
    """amqtt listener settings for the embedded broker's TLS (empty: plain text)."""
    if broker.tls is None or broker.tls.cert is None or broker.tls.key is None:
        return {}
    _read(topology, broker.tls.cert, "MQTT TLS certificate")
    _read(topology, broker.tls.key, "MQTT TLS private key")
    return {
        "ssl": True,
        "certfile": str(project_path(topology, broker.tls.cert)),
        "keyfile": str(project_path(topology, broker.tls.key)),
    }
