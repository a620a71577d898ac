"""spec: the scalar types of a topology file and the table-driven checker."""

from __future__ import annotations

import pytest

from cqrs_flow.errors import Problem
from cqrs_flow.topology.model import Address
from cqrs_flow.topology.spec import (
    Invalid,
    check,
    endpoint,
    one_of,
    parse_address,
    parse_duration,
    topic,
)
from cqrs_flow.topology.yamlsource import parse_yaml

# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("3s", 3.0),
        ("500ms", 0.5),
        (2, 2.0),
        (2.5, 2.5),
        ("1m", 60.0),
        ("1.5m", 90.0),
        ("2.5s", 2.5),
        ("7", 7.0),
        (0, 0.0),
        ("0", 0.0),
        (" 3 s ", 3.0),
        ("2h", 7200.0),  # retention ages
        ("7d", 604800.0),
        ("1d", 86400.0),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)
    assert isinstance(parse_duration(value), float)


@pytest.mark.parametrize("value", [-1, "-1s", "1w", "3 seconds", "soon", "", True, None, [3]])
def test_parse_duration_rejects(value):
    with pytest.raises(Invalid, match="expected a duration such as 3s, 500ms or 0"):
        parse_duration(value)


# -- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, address",
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        (8080, ("127.0.0.1", 8080)),
        ("[::1]:50051", ("::1", 50051)),
        ("localhost:8080", ("localhost", 8080)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::]:1", ("::", 1)),
    ],
)
def test_parse_address(value, address):
    assert parse_address(value) == address


@pytest.mark.parametrize(
    "value",
    [
        ":80",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        "127.0.0.1: 80",
        "[::1]",
        "[::1]:x",
        "[]:80",
        "localhost",
        0,
        70000,
        -1,
        True,
        None,
        1.5,
    ],
)
def test_parse_address_rejects(value):
    with pytest.raises(Invalid, match="expected host:port"):
        parse_address(value)


def test_address_text_and_target():
    assert str(Address("127.0.0.1", 80)) == "127.0.0.1:80"
    assert str(Address("::1", 50051)) == "[::1]:50051"
    assert Address("0.0.0.0", 8080).target == "127.0.0.1:8080"
    assert Address("::", 8080).target == "[::1]:8080"
    assert Address("localhost", 8080).target == "localhost:8080"


# -- other scalars ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("CONTACT/+", "not a filter"),
        ("CONTACT/#", "not a filter"),
        ("$SYS/x", "reserved"),
        ("", "expected an MQTT topic"),
        (5, "expected an MQTT topic"),
    ],
)
def test_topic_rejects(value, message):
    with pytest.raises(Invalid, match=message):
        topic(value)


def test_topic_accepts_a_topic_name():
    assert topic("CONTACT/ADD") == "CONTACT/ADD"


@pytest.mark.parametrize(
    "value, parsed", [("store.write", ("store", "write")), ("s-1.read", ("s-1", "read"))]
)
def test_endpoint(value, parsed):
    assert endpoint(value) == parsed


@pytest.mark.parametrize("value", ["store", "store.both", "a.b.read", ".read", "store.", 5])
def test_endpoint_rejects(value):
    with pytest.raises(Invalid, match=r"expected '<store node>\.read' or '<store node>\.write'"):
        endpoint(value)


def test_one_of_suggests_the_closest_choice():
    check_op = one_of("insert", "update")
    assert check_op("insert") == "insert"
    with pytest.raises(
        Invalid, match="expected one of insert, update, got 'insrt'; did you mean 'insert'"
    ):
        check_op("insrt")


# -- the checker on plain data ----------------------------------------------------------------

MINIMAL = """\
proto: a.proto
commands: {}
nodes:
  b: {kind: broker}
  w:
    kind: writer
    broker: b
    store: s.write
    commands: [c]
"""


def test_check_fills_defaults():
    data, problems = check(parse_yaml(MINIMAL))
    assert problems == []
    assert data["name"] == "cqrs-flow"
    assert data["proto"] == ("a.proto",)
    assert data["ready_timeout"] == 30.0
    assert data["stop_timeout"] == 5.0
    assert data["metrics"] == ("127.0.0.1", 9464)
    assert data["nodes"]["b"] == {
        "kind": "broker",
        "restart": "on-failure",
        "restart_limit": 5,
        "metrics": None,
        "listen": ("127.0.0.1", 1883),
        "url": None,
        "protocol": "3.1.1",
        "tls": None,
        "clients": {},
        "keep_alive": 3.0,
        "connect_timeout": 1.0,
        "reconnect_delay": 0.5,
    }
    assert data["nodes"]["w"]["delay"] == 0.0
    assert data["nodes"]["w"]["commands"] == ("c",)
    assert data["nodes"]["w"]["store"] == ("s", "write")


def test_check_reports_unknown_key_with_hint_path_and_line():
    text = MINIMAL.replace("    commands: [c]\n", "    commands: [c]\n    dely: 2s\n")
    _, problems = check(parse_yaml(text))
    assert problems == [Problem(10, "nodes.w.dely", "unknown key; did you mean 'delay'?")]


def test_check_lists_the_keys_when_nothing_is_close():
    text = MINIMAL.replace("  b: {kind: broker}", "  b: {kind: broker, zzz: 1}")
    _, problems = check(parse_yaml(text))
    assert problems == [
        Problem(
            4,
            "nodes.b.zzz",
            "unknown key; expected one of kind, restart, restart_limit, metrics, listen, url, "
            "protocol, tls, clients, keep_alive, connect_timeout, reconnect_delay",
        )
    ]


def test_metrics_is_an_address_or_false():
    text = MINIMAL.replace("  b: {kind: broker}", "  b: {kind: broker, metrics: false}")
    text += "metrics: '[::1]:9500'\n"
    data, problems = check(parse_yaml(text))
    assert problems == []
    assert data["metrics"] == ("::1", 9500)
    assert data["nodes"]["b"]["metrics"] is False
    _, problems = check(parse_yaml(text.replace("metrics: false", "metrics: yes please")))
    assert [p.message for p in problems] == [
        "expected host:port such as 127.0.0.1:9464, or false for no metrics, got 'yes please'"
    ]
