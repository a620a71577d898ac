"""Every metric a node exports, in one place: names, help texts, labels and buckets.

Each node has its own registry (a `Metrics`), so that nodes run side by side in one process (as
tests do) keep their counts apart; a node process serves its registry on `/metrics`
(server.py). The list with what each metric means is in docs/OPERATIONS.md.

Label values come from the topology (topics, commands, RPCs, entities, routes), never from
what a client sends: a client-chosen value would make a series per value. The one exception,
GraphQL operation names, is bounded by `OperationNames`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["LATENCY_BUCKETS", "OTHER", "Children", "Metrics", "OperationNames"]

# A `_created` series per counter doubles what a scrape carries, and Prometheus does not need it.
# (prometheus_client leaves this one function without annotations; it takes and returns nothing.)
cast(Callable[[], None], disable_created_metrics)()

# Seconds: from a fast in-process call to a query that hits a limit's timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
OTHER = "(other)"  # the label value of anything not named by the topology


class Children:
    """A labelled metric's children, each looked up in prometheus_client once: its `labels()`
    builds a key and takes a lock on every call, which a request or a command need not pay
    (the hot paths hold one of these per metric: `requests = Children(metrics.http_requests)`,
    then `requests("GET", "/graphql", "200").inc()`). Holds what the metric holds anyway: one
    child per set of label values."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Counter | Histogram | Gauge) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class Metrics:
    """The metric families of one node, in a registry of their own. A family a node kind does
    not use stays empty (its HELP and TYPE lines only)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        # -- the node -------------------------------------------------------------------------
        self.info = Gauge(
            "cqrs_flow_node_info",
            "The node this process runs (always 1)",
            ["node", "kind", "replica"],
            registry=r,
        )
        self.ready = Gauge(
            "cqrs_flow_node_ready",
            "1 while the node and what it depends on can serve, else 0 (its readiness)",
            registry=r,
        )
        self.restarts = Gauge(
            "cqrs_flow_node_restarts",
            "How many times `up` restarted this node (this replica) before this process",
            registry=r,
        )
        # -- commands -------------------------------------------------------------------------
        self.published = Counter(
            "cqrs_flow_commands_published",
            "Commands a gateway published, by topic",
            ["topic"],
            registry=r,
        )
        self.republished = Counter(
            "cqrs_flow_commands_republished",
            "Commands a gateway published again (no writer reported on them in time, or what "
            "held them may have lost them), by topic",
            ["topic"],
            registry=r,
        )
        self.received = Counter(
            "cqrs_flow_commands_received",
            "Messages a writer took off its topics, by topic",
            ["topic"],
            registry=r,
        )
        self.applied = Counter(
            "cqrs_flow_commands_applied",
            "Commands a writer applied to the store, by topic",
            ["topic"],
            registry=r,
        )
        self.refused = Counter(
            "cqrs_flow_commands_refused",
            "Commands not applied (writer: set aside) or not published (gateway), by topic and "
            "reason",
            ["topic", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "cqrs_flow_commands_dead_lettered",
            "Commands a writer sent to its dead-letter topic, by the topic they came on",
            ["topic"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "cqrs_flow_writer_queue_depth",
            "Commands a writer holds: waiting out the write delay, queued behind another "
            "command on the same entity, or being applied",
            registry=r,
        )
        self.outbox = Gauge(
            "cqrs_flow_outbox_commands",
            "Commands a gateway keeps until a writer reports on them",
            registry=r,
        )
        # -- store ----------------------------------------------------------------------------
        self.store_operations = Counter(
            "cqrs_flow_store_operations",
            "Store operations, by entity, operation, RPC and outcome (ok, or the gRPC code)",
            ["entity", "operation", "rpc", "outcome"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "cqrs_flow_store_operation_seconds",
            "Time a store operation took, by entity and RPC",
            ["entity", "rpc"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.find_queries = Counter(
            "cqrs_flow_store_find_queries",
            "Queries of the document service (cqrs_flow.Documents/Find: lists, lookups by key, "
            "relations), by entity",
            ["entity"],
            registry=r,
        )
        self.find_calls = Counter(
            "cqrs_flow_store_find_calls",
            "Calls of the document service (each carries one or more queries), by outcome",
            ["outcome"],
            registry=r,
        )
        self.find_seconds = Histogram(
            "cqrs_flow_store_find_seconds",
            "Time a call of the document service took",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # -- gRPC, HTTP, GraphQL, WebSocket ---------------------------------------------------
        self.grpc_requests = Counter(
            "cqrs_flow_grpc_server_requests",
            "gRPC calls served, by service, method and status code",
            ["service", "method", "code"],
            registry=r,
        )
        self.grpc_seconds = Histogram(
            "cqrs_flow_grpc_server_request_seconds",
            "Time a gRPC call took to answer",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "cqrs_flow_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "cqrs_flow_http_request_seconds",
            "Time an HTTP request took to answer (a WebSocket: how long it was open)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.graphql_operations = Counter(
            "cqrs_flow_graphql_operations",
            "GraphQL operations run, by operation name and outcome (ok, or error)",
            ["operation", "outcome"],
            registry=r,
        )
        self.graphql_seconds = Histogram(
            "cqrs_flow_graphql_operation_seconds",
            "Time a GraphQL operation took to run",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.websockets = Gauge(
            "cqrs_flow_websocket_connections", "WebSocket connections open now", registry=r
        )
        self.websockets_opened = Counter(
            "cqrs_flow_websocket_connections_opened", "WebSocket connections accepted", registry=r
        )
        # -- MQTT -----------------------------------------------------------------------------
        self.model_lag = Gauge(
            "cqrs_flow_reader_model_lag_changes",
            "Changes a reader's read model is behind its store's change log, as the last look "
            "at the log's head saw",
            registry=r,
        )
        self.model_staleness = Gauge(
            "cqrs_flow_reader_model_staleness_seconds",
            "Seconds since a reader's read model was last known caught up with its store "
            "(answers come from the store beyond the read_model.staleness bound)",
            registry=r,
        )
        self.model_answers = Counter(
            "cqrs_flow_reader_model_answers",
            "Reads a reader with a read model answered, by where the answer came from: model, "
            "store (the second hop: the model was stale or could not tell), stale (the model "
            "beyond its bound, the store being unreachable)",
            ["source"],
            registry=r,
        )
        self.model_bootstraps = Counter(
            "cqrs_flow_reader_model_bootstraps",
            "Times a reader read its model's documents from the store (at start, and when the "
            "log could not be followed on)",
            registry=r,
        )
        self.broker_clients = Gauge(
            "cqrs_flow_broker_connections",
            "MQTT clients connected to the embedded broker now",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "cqrs_flow_mqtt_connected",
            "1 while this node is connected to its MQTT broker",
            registry=r,
        )
        self.mqtt_connects = Counter(
            "cqrs_flow_mqtt_connects",
            "Connections this node made to its MQTT broker (the first, and each reconnect)",
            registry=r,
        )

    def add_process(self) -> None:
        """Export this process's CPU time, memory and open files too (process_*)."""
        ProcessCollector(registry=self.registry)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


_OPERATION_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")


class OperationNames:
    """GraphQL operation names as label values: clients choose them, so only the first `limit`
    distinct names get a series each; any later one, and anything that is not a GraphQL name,
    counts as "(other)"; an operation without a name as "(anonymous)"."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str | None) -> str:
        if not name:
            return "(anonymous)"
        if name in self._known:
            return name
        if not _OPERATION_NAME.fullmatch(name):
            return OTHER
        with self._lock:
            if len(self._known) >= self.limit:
                return OTHER
            self._known.add(name)
        return name
