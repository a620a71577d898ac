"""exposure: warnings about what a topology opens beyond this machine or to other web sites."""

from __future__ import annotations

from cqrs_flow.topology import load_topology
from cqrs_flow.topology.exposure import exposure_warnings

from ..helpers import line_of

GATEWAY_LISTEN = "    listen: 127.0.0.1:8080\n"


def test_the_shipped_topology_opens_nothing(make_project):
    assert exposure_warnings(load_topology(make_project())) == []


def test_cors_for_any_origin_is_warned_about_at_its_line(make_project):
    path = make_project(
        yaml=[
            (GATEWAY_LISTEN, GATEWAY_LISTEN + "    cors: {origins: ['https://app.example', '*']}\n")
        ]
    )
    warnings = exposure_warnings(load_topology(path))
    assert [(w.path, w.line) for w in warnings] == [
        ("nodes.gateway.cors.origins", line_of(path.read_text(), "cors:"))
    ]
    assert "list the origins of your own pages instead" in warnings[0].message


def test_listed_origins_are_not_warned_about(make_project):
    path = make_project(
        yaml=[(GATEWAY_LISTEN, GATEWAY_LISTEN + "    cors: {origins: [https://app.example]}\n")]
    )
    assert exposure_warnings(load_topology(path)) == []


def test_a_gateway_beyond_loopback_without_authentication_is_warned_about(make_project):
    path = make_project(yaml=[(GATEWAY_LISTEN, "    listen: 0.0.0.0:8080\n")])
    (warning,) = exposure_warnings(load_topology(path))
    assert warning.path == "nodes.gateway.listen"
    assert "WITHOUT authentication: every caller may run every query" in warning.message


def test_a_gateway_beyond_loopback_with_authentication_is_warned_about_plain_http_only(
    make_project,
):
    auth = (
        "    auth: {jwks: {url: 'https://auth.example/jwks.json'}, issuer: https://auth.example,"
        " audience: contacts}\n"
    )
    path = make_project(yaml=[(GATEWAY_LISTEN, "    listen: 0.0.0.0:8080\n" + auth)])
    (warning,) = exposure_warnings(load_topology(path))
    assert "plain HTTP" in warning.message and "authentication" not in warning.message
