"""The gateway node: GraphQL over HTTP (http.py) answered by the engine of resolvers.py;
mutations become commands published on MQTT (delivery.py), queries go to the reader over gRPC.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from cqrs_flow.contracts.plans import Report, gateway_plan
from cqrs_flow.errors import NodeError, TopologyError
from cqrs_flow.nodes.gateway.cost import Costs
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.http import GraphQLHttp, playground_page
from cqrs_flow.nodes.gateway.limits import RequestGate
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.resolvers import Resolvers
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.plugins import GatewayPlugin, PluginContext, start_plugins, stop_plugins
from cqrs_flow.security.mqtt_logins import login_from_env
from cqrs_flow.stores.journal import JournalError
from cqrs_flow.topology.model import BrokerNode, GatewayNode, ReaderNode
from cqrs_flow.transport.mqtt import connect, new_client
from cqrs_flow.transport.rpc import ServiceClient
from cqrs_flow.transport.tls import channel_security, mqtt_client_context

__all__ = ["GatewayService"]


class GatewayService(NodeService):
    node: GatewayNode

    async def start(self) -> None:
        report = Report(self.topology)
        plan = gateway_plan(self.topology, self.node, self.protos, report)
        if report.problems or plan is None:
            raise TopologyError(report.problems, str(self.topology.source))
        reader = self.topology.nodes[self.node.reader]
        broker = self.topology.nodes[self.node.broker]
        assert isinstance(reader, ReaderNode) and isinstance(broker, BrokerNode)
        self.reader = ServiceClient(
            self.protos,
            self.protos.service(reader.service),
            reader.listen.target,
            self.credentials,
            timeout=self.node.reader_timeout,
            security=channel_security(self.topology, reader.tls, self.node.client_tls),
        )
        self.plugins = await start_plugins(
            self.node, PluginContext(self.topology, self.node, self.protos, self.log)
        )
        self.outbox = await self._outbox()
        self.spawn(self.outbox.wait_failure(), "outbox")
        self.mqtt = new_client(
            self.topology.name,
            self.node.name,
            broker,
            persistent=False,
            login=login_from_env(self.topology, self.node.name),
        )
        self.delivery = Delivery(self.topology.status_topic, self.mqtt, self.outbox, self.log)
        await connect(self.mqtt, broker, tls=mqtt_client_context(self.topology, broker))
        self.spawn(self.delivery.redeliver(), "redeliver")
        resolvers = Resolvers(
            self.reader,
            [p for p in self.plugins if isinstance(p, GatewayPlugin)],
            self.delivery,
            self.topology.list_count(self.node),
            self.log,
        )
        engine = await resolvers.engine(plan, f"cqrs-flow:{self.topology.name}:{self.node.name}")

        def parsed(query: str) -> object:
            """The engine's parse of a query (cached by the engine, so the execution that
            follows does not parse it again), or None when it does not parse or validate."""
            document, _ = engine._cached_parse_and_validate_query(query, engine._schema)
            return document

        gate = RequestGate(
            self.node.limits,
            self.node.introspection,
            Costs(engine._schema, parsed, self.topology.list_count(self.node)),
        )
        playground = None
        if self.node.playground:
            playground = playground_page(self.topology.name, plan.schema.example_query())
        http = GraphQLHttp(
            self.node, engine, gate, playground, lambda: self.delivery.connected, self.log
        )
        self.runner = web_runner = _runner(http)
        await web_runner.setup()
        site = web.TCPSite(web_runner, self.node.listen.host, self.node.listen.port)
        try:
            await site.start()
        except OSError as exc:
            raise NodeError(
                f"HTTP server cannot listen on {self.node.listen}: {exc.strerror or exc}"
            ) from None
        self.log.info(
            "GraphQL on %s (reader %s, broker %s)", self.node.url, reader.listen, broker.address
        )

    async def _outbox(self) -> Outbox:
        redeliver_after = self.topology.redeliver_after(self.node)
        if self.node.data is None:
            return Outbox(redeliver_after)
        try:
            return await Outbox.open(
                self.topology.root / self.node.data,
                redeliver_after,
                now=asyncio.get_running_loop().time(),
            )
        except JournalError as exc:
            raise NodeError(str(exc)) from None

    async def stop(self) -> None:
        # HTTP first so no request arrives with its backends gone, then the backends.
        if hasattr(self, "runner"):
            await self.runner.cleanup()
        if hasattr(self, "mqtt") and self.mqtt.is_connected:
            await self.mqtt.disconnect()
        if hasattr(self, "outbox"):
            await self.outbox.close()
        if hasattr(self, "reader"):
            await self.reader.close()
        await stop_plugins(getattr(self, "plugins", []), self.log)


def _runner(http: GraphQLHttp) -> web.AppRunner:
    return web.AppRunner(http.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
