"""The model: its defaults are the spec table's, so leaving a key out of a file or of code
gives the same node."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

from cqrs_flow.topology import spec
from cqrs_flow.topology.model import Address, Limits, Topology


def _defaults(instance: object) -> dict[str, object]:
    return {f.name: f.default for f in fields(instance) if f.default is not MISSING}


def test_a_key_left_out_of_the_file_is_the_model_default(shipped):
    data = shipped.located.data
    checked = []
    for name, node in shipped.nodes.items():
        defaults = _defaults(node)
        for key in spec.NODE_KINDS[node.kind].fields:
            # a store that describes its one entity itself (`document:`) names it in `entities`
            derived = key == "entities" and "document" in data["nodes"][name]
            if key not in data["nodes"][name] and key in defaults and not derived:
                assert getattr(node, key) == defaults[key], (name, key)
                checked.append(key)
    for key, value in _defaults(shipped).items():
        if key not in data and key in spec.TOPOLOGY.fields:
            assert getattr(shipped, key) == value, key
            checked.append(key)
    assert {"restart", "list_limit", "attempts", "reader_timeout", "stop_timeout"} <= set(checked)


def test_the_gateway_limits_and_the_root_default_to_the_spec(shipped):
    assert Limits() == shipped.nodes["gateway"].limits  # the shipped file sets no limits
    limits = {k: f.default for k, f in spec.LIMITS.fields.items()}
    assert {k: v for k, v in _defaults(Limits()).items() if k in limits} == limits
    assert str(Topology.project) == spec.TOPOLOGY.fields["root"].default


# -- where each node process serves its metrics ----------------------------------------------

METRICS_SYSTEM = """\
proto: contacts.proto
commands: {c: {topic: T, rpc: Add}}
nodes:
  ext: {kind: broker, url: "mqtt://10.0.0.1:1883"}
  store:
    kind: store
    document: contacts.Contact
    write: {service: contacts.W, listen: 50051, rpcs: {Add: insert}}
    read: {service: contacts.R, listen: 50052, rpcs: {Get: get}}
  writer: {kind: writer, broker: ext, store: store.write, commands: [c], replicas: 3}
  last: {kind: reader, listen: 50053, service: contacts.R, store: store.read}
"""


def _metrics_system(text: str = METRICS_SYSTEM) -> Topology:
    """The model of `text`, its files and wiring not checked."""
    from cqrs_flow.topology.loader import _build
    from cqrs_flow.topology.yamlsource import parse_yaml

    located = parse_yaml(text)
    data, problems = spec.check(located)
    assert problems == []
    return _build(data, Path("/nowhere/topology.yaml"), located)


def test_metrics_count_up_one_port_per_process_in_file_order():
    topology = _metrics_system()
    assert topology.metrics_of("ext") == Address("127.0.0.1", 9464)  # never run: takes none
    assert topology.metrics_of("store") == Address("127.0.0.1", 9464)
    assert [topology.metrics_of("writer", r) for r in (1, 2, 3)] == [
        Address("127.0.0.1", 9465),
        Address("127.0.0.1", 9466),
        Address("127.0.0.1", 9467),
    ]
    assert topology.metrics_of("last") == Address("127.0.0.1", 9468)


def test_metrics_of_a_node_of_its_own_or_switched_off():
    text = METRICS_SYSTEM.replace("replicas: 3}", "replicas: 3, metrics: '0.0.0.0:9600'}")
    text = text.replace("store: store.read}", "store: store.read, metrics: false}")
    topology = _metrics_system(text + "metrics: 127.0.0.2:7000\n")
    assert topology.metrics_of("store") == Address("127.0.0.2", 7000)
    assert topology.metrics_of("writer", 2) == Address("0.0.0.0", 9601)
    assert topology.metrics_of("last") is None
    assert _metrics_system(METRICS_SYSTEM + "metrics: false\n").metrics_of("store") is None


def test_a_metrics_port_taken_by_another_listener_is_a_problem():
    from cqrs_flow.topology.checks import check_wiring

    topology = _metrics_system(METRICS_SYSTEM.replace("listen: 50053", "listen: 9466"))
    clashes = [p for p in check_wiring(topology) if "already taken" in p.message]
    assert [(p.path, p.message) for p in clashes] == [
        (
            "nodes.last.listen",
            "port 9466 is already taken by metrics (metrics of writer.2, 127.0.0.1:9466)",
        )
    ]
