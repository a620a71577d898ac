"""metrics: a registry per node, served in Prometheus' text format; operation names bounded."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from cqrs_flow.telemetry import Metrics, OperationNames
from cqrs_flow.telemetry.metrics import OTHER


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for s in family.samples
    }


def test_each_node_counts_in_a_registry_of_its_own():
    one, two = Metrics(), Metrics()
    one.published.labels("CONTACT/ADD").inc(2)
    assert samples(one)[("cqrs_flow_commands_published_total", (("topic", "CONTACT/ADD"),))] == 2
    assert ("cqrs_flow_commands_published_total", (("topic", "CONTACT/ADD"),)) not in samples(two)


def test_no_created_series():
    metrics = Metrics()
    metrics.applied.labels("T").inc()
    assert not [name for name, _ in samples(metrics) if name.endswith("_created")]


def test_gauges_may_read_the_state_when_scraped():
    metrics, queue = Metrics(), [1, 2, 3]
    metrics.queue_depth.set_function(lambda: len(queue))
    assert samples(metrics)[("cqrs_flow_writer_queue_depth", ())] == 3


def test_operation_names_are_bounded():
    names = OperationNames(limit=2)
    assert [names(n) for n in ("A", "B", "A", "C", None, "not a name!")] == [
        "A",
        "B",
        "A",
        OTHER,
        "(anonymous)",
        OTHER,
    ]
