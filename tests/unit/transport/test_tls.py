"""TLS settings of gRPC endpoints: loaded into the model, checked before anything starts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cqrs_flow.errors import NodeError, TopologyError
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import TlsClient, TlsServer
from cqrs_flow.transport.tls import channel_security, server_credentials

WRITE_LISTEN = "      listen: 127.0.0.1:50051\n"
PEM = "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"


def with_files(path: Path, *names: str) -> Path:
    for name in names:
        (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
        (path.parent / name).write_text(PEM)
    return path


def test_tls_settings_are_loaded(make_project):
    path = with_files(
        make_project(
            yaml=[
                (
                    WRITE_LISTEN,
                    WRITE_LISTEN + "      tls: {cert: tls/s.pem, key: tls/s.key, ca: tls/ca.pem,"
                    " client_auth: true}\n",
                ),
                (
                    "    delay: 3s\n",
                    "    delay: 3s\n    client_tls: {cert: tls/w.pem, key: tls/w.key}\n",
                ),
            ]
        ),
        "tls/s.pem",
        "tls/s.key",
        "tls/ca.pem",
        "tls/w.pem",
        "tls/w.key",
    )
    topology = load_topology(path)
    assert topology.nodes["store"].write.tls == TlsServer(
        Path("tls/s.pem"), Path("tls/s.key"), Path("tls/ca.pem"), True
    )
    assert topology.nodes["store"].read.tls is None
    assert topology.nodes["writer"].client_tls == TlsClient(Path("tls/w.pem"), Path("tls/w.key"))


def problems(make_project, edits, files=()) -> list[str]:
    path = with_files(make_project(yaml=edits), *files)
    with pytest.raises(TopologyError) as error:
        load_topology(path)
    return [f"{p.path}: {p.message}" for p in error.value.problems]


def test_mutual_tls_needs_a_ca_and_a_certificate_for_every_caller(make_project):
    found = problems(
        make_project,
        [
            (
                WRITE_LISTEN,
                WRITE_LISTEN + "      tls: {cert: s.pem, key: s.key, client_auth: true}\n",
            )
        ],
        ["s.pem", "s.key"],
    )
    assert found == [
        "nodes.store.write.tls.client_auth: mutual TLS needs 'ca': the CA certificate that signed "
        "the callers' certificates",
        "nodes.writer: store.write accepts only callers with a certificate (client_auth); give "
        "'writer' a "
        "'client_tls' with its certificate and key",
    ]


def test_tls_files_must_exist_inside_the_project(make_project):
    found = problems(
        make_project,
        [
            (
                WRITE_LISTEN,
                WRITE_LISTEN + "      tls: {cert: ../s.pem, key: /etc/s.key, ca: ca.pem}\n",
            )
        ],
    )
    ca, cert, key = sorted(found)
    assert ca == (
        "nodes.store.write.tls.ca: file not found: ca.pem (paths are relative to the topology file)"
    )
    assert re.fullmatch(
        r"nodes\.store\.write\.tls\.cert: \.\./s\.pem leads out of the project directory "
        r"/\S+/project1; keep files inside it, or say where the project is with the top-level "
        r"key 'root' \(e\.g\. root: \.\.\)",
        cert,
    )
    assert key == (
        "nodes.store.write.tls.key: '/etc/s.key' is an absolute path; write it relative to the "
        "topology file, inside the project directory"
    )


def test_unreadable_or_non_pem_files_fail_the_node_with_the_file_named(make_project):
    path = with_files(make_project(), "s.pem")
    topology = load_topology(path)
    (path.parent / "s.key").write_text("no pem here")
    with pytest.raises(NodeError, match=re.escape("the TLS private key s.key is not a PEM file")):
        server_credentials(topology, TlsServer(Path("s.pem"), Path("s.key")))
    with pytest.raises(NodeError, match=re.escape("TLS CA certificate not found: gone.pem")):
        channel_security(
            topology, TlsServer(Path("s.pem"), Path("s.key"), ca=Path("gone.pem")), None
        )
    assert channel_security(topology, None, None) is None


# -- warnings about links open to the network ----------------------------------------------------


def test_listeners_beyond_loopback_without_tls_are_warned_about(
    make_project, proto_cache, monkeypatch
):
    from click.testing import CliRunner

    from cqrs_flow.cli import main

    monkeypatch.delenv("CQRS_FLOW_SECRET", raising=False)
    from ..helpers import ROOT

    path = make_project(
        yaml=[
            ("listen: 127.0.0.1:1883", "listen: 0.0.0.0:1883"),
            (WRITE_LISTEN, "      listen: 10.0.0.5:50051\n"),
            ("listen: 127.0.0.1:50052", "listen: localhost:50052"),
            ("listen: 127.0.0.1:8080", "listen: '[::]:8080'"),
        ]
    )
    shutil.copytree(ROOT / "plugins", path.parent / "plugins")  # a project holds its plugins
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    warnings = [line.split(": ", 3)[2:] for line in result.stderr.splitlines()]
    assert [w[0] for w in warnings] == [
        "nodes.store.write.listen",
        "nodes.broker.listen",
        "nodes.gateway.listen",
    ]
    assert "10.0.0.5:50051 is reachable beyond this machine: gRPC in plain text" in warnings[0][1]
    assert "valid —" in result.output


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("store.internal", False),
    ],
)
def test_is_loopback(host, loopback):
    from cqrs_flow.topology.exposure import is_loopback

    assert is_loopback(host) is loopback


def test_tls_silences_the_warning(make_project):
    from cqrs_flow.topology.exposure import exposure_warnings

    path = with_files(
        make_project(
            yaml=[
                (
                    WRITE_LISTEN,
                    "      listen: 0.0.0.0:50051\n      tls: {cert: s.pem, key: s.key}\n",
                )
            ]
        ),
        "s.pem",
        "s.key",
    )
    assert exposure_warnings(load_topology(path)) == []


def test_broker_tls(make_project):
    path = with_files(
        make_project(
            yaml=[
                (
                    "listen: 127.0.0.1:1883",
                    "listen: 0.0.0.0:1883\n    tls: {cert: b.pem, key: b.key}",
                )
            ]
        ),
        "b.pem",
        "b.key",
    )
    from cqrs_flow.topology.exposure import exposure_warnings

    broker = load_topology(path).nodes["broker"]
    assert broker.secure and broker.tls.cert == Path("b.pem")
    assert not [
        w for w in exposure_warnings(load_topology(path)) if w.path.startswith("nodes.broker")
    ]
    assert problems(
        make_project,
        [("listen: 127.0.0.1:1883", "listen: 127.0.0.1:1883\n    tls: {cert: b.pem}")],
        ["b.pem"],
    ) == ["nodes.broker.tls: the embedded broker serves TLS with 'cert' and 'key': give both"]


def test_an_mqtts_url_means_tls_on_port_8883(make_project):
    path = make_project(yaml=[("listen: 127.0.0.1:1883", "url: mqtts://broker.internal")])
    broker = load_topology(path).nodes["broker"]
    assert broker.secure and broker.address.port == 8883 and broker.tls is None
