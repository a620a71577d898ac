"""The model: its defaults are the spec table's, so leaving a key out of a file or of code
gives the same node."""

from __future__ import annotations

from dataclasses import MISSING, fields

from cqrs_flow.topology import spec
from cqrs_flow.topology.model import Limits, Topology


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
