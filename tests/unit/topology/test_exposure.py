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
