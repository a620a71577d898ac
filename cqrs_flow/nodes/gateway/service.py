"""The gateway node: GraphQL over HTTP (http.py) answered by the engine of resolvers.py;
mutations become commands published on MQTT (delivery.py), queries go to the reader over gRPC.

`start` opens what the node needs in order (plugins, reader channel, the change log's channel
and feed when it serves live subscriptions, outbox, MQTT client, HTTP listener), registering
each release on the node's `resources` as it goes: `stop`, and a `start` that fails half-way,
release what was opened, in reverse order (HTTP first, so no request arrives with its backends
gone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from cqrs_flow.contracts.gateway import gateway_plan
from cqrs_flow.errors import NodeError
from cqrs_flow.nodes.gateway.auth import GatewayAuth
from cqrs_flow.nodes.gateway.commands import CommandBook
from cqrs_flow.nodes.gateway.consistency import read_your_writes
from cqrs_flow.nodes.gateway.cost import Costs
from cqrs_flow.nodes.gateway.cursors import Cursors
from cqrs_flow.nodes.gateway.delivery import Delivery
from cqrs_flow.nodes.gateway.fanout import SharedEngine
from cqrs_flow.nodes.gateway.feed import ChangeFeed, ChangesClient
from cqrs_flow.nodes.gateway.http import GraphQLHttp, playground_page
from cqrs_flow.nodes.gateway.introspection import RoleViews, serve_role_views
from cqrs_flow.nodes.gateway.limits import RequestGate
from cqrs_flow.nodes.gateway.observe import ObservedEngine, observe_http
from cqrs_flow.nodes.gateway.outbox import Outbox
from cqrs_flow.nodes.gateway.resolvers import Resolvers
from cqrs_flow.nodes.runtime import NodeService
from cqrs_flow.plugins import GatewayPlugin, PluginContext, start_plugins, stop_plugins
from cqrs_flow.security.mqtt_logins import login_from_env
from cqrs_flow.security.tokens import new_secret
from cqrs_flow.stores.base import StoreError
from cqrs_flow.telemetry.server import health_routes, listen_error
from cqrs_flow.topology.model import DOCUMENTS_SERVICE, BrokerNode, GatewayNode, ReaderNode
from cqrs_flow.transport.mqtt import batch_bytes, command_bytes, connect, new_client
from cqrs_flow.transport.rpc import ServiceClient
from cqrs_flow.transport.tls import channel_security, mqtt_client_context

__all__ = ["GatewayService"]


class GatewayService(NodeService):
    node: GatewayNode

    async def setup(self) -> None:
        await self._open(self.resources)

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        plan = self.contract(gateway_plan)
        auth = GatewayAuth()
        if plan.auth is not None:  # end-user tokens: keys read (and fetched) before serving
            from cqrs_flow.nodes.gateway.tokens import Keys, Tokens  # PyJWT: only with `auth`

            keys = Keys.of(plan.auth.auth, self.topology, f"nodes.{self.node.name}.auth")
            await keys.start()
            auth = GatewayAuth(plan.auth, Tokens(plan.auth.auth, keys))
        reader_node = self.topology.nodes[self.node.reader]
        broker = self.topology.nodes[self.node.broker]
        assert isinstance(reader_node, ReaderNode) and isinstance(broker, BrokerNode)
        plugins = await start_plugins(
            self.node, PluginContext(self.topology, self.node, self.protos, self.log)
        )
        stack.push_async_callback(stop_plugins, plugins, self.log)
        reader = ServiceClient(
            self.protos,
            self.protos.service(reader_node.service),
            reader_node.listen.target,
            self.credentials,
            timeout=self.node.reader_timeout,
            security=channel_security(self.topology, reader_node.tls, self.node.client_tls),
        )
        stack.push_async_callback(reader.close)
        documents = reader.sibling(self.protos.service(DOCUMENTS_SERVICE))
        feed = None
        if plan.documents.subscriptions:  # live subscriptions: one follow of the change log
            changes = ChangesClient(
                self.protos,
                reader_node.listen.target,
                self.credentials,
                timeout=self.node.reader_timeout,
                security=channel_security(self.topology, reader_node.tls, self.node.client_tls),
            )
            stack.push_async_callback(changes.close)
            followed = sorted({s.entity.name for s in plan.documents.subscriptions})
            feed = ChangeFeed(changes, plan.documents.entities, followed, self.node.limits)
            stack.push_async_callback(feed.close)
        outbox = await self._outbox()
        stack.push_async_callback(outbox.close)
        self._background(stack, outbox.wait_failure(), "outbox")
        mqtt = new_client(
            self.topology.name,
            self.node.name,
            broker,
            persistent=False,
            login=login_from_env(self.topology, self.node.name),
        )
        delivery = Delivery(
            self.topology.status_topic,
            mqtt,
            outbox,
            self.log,
            command_bytes(self.topology, self.node.broker),
            mqtt5=broker.protocol == "5",
            batch_bytes=batch_bytes(self.topology, self.node.broker),
            book=CommandBook(self.node.status_retention, outbox.database),
        )
        self._observe(delivery, outbox, reader)
        stack.push_async_callback(_disconnect, mqtt)
        await connect(mqtt, broker, tls=mqtt_client_context(self.topology, broker))
        self._background(stack, delivery.redeliver(), "redeliver")
        gateway_plugins = [p for p in plugins if isinstance(p, GatewayPlugin)]
        list_count = self.topology.list_count(self.node)
        resolvers = Resolvers(
            reader,
            gateway_plugins,
            delivery,
            list_count,
            self.log,
            documents=documents,
            cursors=Cursors(self.credentials.token if self.credentials else new_secret()),
            page_size=self.node.limits.page_size,
            auth=auth,
            feed=feed,
        )
        engine = await resolvers.engine(plan, f"cqrs-flow:{self.topology.name}:{self.node.name}")
        if plan.auth is not None and plan.auth.roles:  # introspection: each role its own schema
            schema = engine._schema  # the baked schema: tartiflette names it so
            serve_role_views(schema, RoleViews(schema, plan.auth.roles, auth.role))
        connections = frozenset(f"{c.entity.name}Connection" for c in plan.documents.connections)
        costs = Costs.of(engine, list_count, connections, self.node.limits.page_size)
        gate = RequestGate(self.node.limits, self.node.introspection, costs)
        playground = None
        if self.node.playground:
            playground = playground_page(self.topology.name, plan.schema.example_query())
        observed = ObservedEngine(SharedEngine(engine), self.metrics)
        http = GraphQLHttp(
            self.node, observed, gate, playground, lambda: delivery.connected, self.log, auth
        )
        app = http.app()
        app.middlewares.insert(0, observe_http(self.metrics))  # outside every other
        app.middlewares.append(read_your_writes(delivery.book, self.node.reader_timeout))
        health_routes(app, self.telemetry)
        # The keep-alive timeout also bounds how long a client may take to send its headers
        # (aiohttp closes a connection still waiting for a whole request then).
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            keepalive_timeout=self.node.limits.read_timeout,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self.node.listen.host, self.node.listen.port)
        try:
            await site.start()
        except OSError as exc:
            raise NodeError(listen_error(self.node.name, "http", self.node.listen, exc)) from None
        self.log.info(
            "GraphQL on %s (reader %s, broker %s; %s)",
            self.node.url,
            reader_node.listen,
            broker.address,
            _auth_summary(plan.auth.auth if plan.auth else None),
        )

    def _observe(self, delivery: Delivery, outbox: Outbox, reader: ServiceClient) -> None:
        """Metrics that read the gateway's state when scraped, and its readiness."""
        self.metrics.outbox.set_function(lambda: len(outbox))
        self.metrics.mqtt_connected.set_function(lambda: 1 if delivery.connected else 0)
        self.telemetry.facts["queue_depth"] = lambda: len(outbox)
        self.telemetry.readiness = lambda: {
            "broker": delivery.connected,
            "reader": reader.reachable(),
        }

    async def _outbox(self) -> Outbox:
        redeliver_after = self.topology.redeliver_after(self.node)
        if self.node.data is None:
            return Outbox(redeliver_after, self.node.outbox_size)
        try:
            return await Outbox.open(
                self.topology.root / self.node.data,
                redeliver_after,
                self.node.outbox_size,
                now=asyncio.get_running_loop().time(),
            )
        except StoreError as exc:
            raise NodeError(str(exc)) from None

    def _background(
        self, stack: contextlib.AsyncExitStack, work: Coroutine[Any, Any, Any], name: str
    ) -> None:
        """Run `work` in the background (spawn) until what comes after it on `stack` is released."""
        task = self.spawn(work, name)
        stack.push_async_callback(_cancel, task)


def _auth_summary(auth: Any) -> str:
    """What the start-up line says of end-user tokens."""
    if auth is None:
        return "no end-user tokens: every caller may run every operation"
    keys = auth.jwks_url or (f"JWKS {auth.jwks_file}" if auth.jwks_file else "an HS256 secret")
    anonymous = f"anonymous role {auth.anonymous}" if auth.anonymous else "a token required"
    return f"tokens of {auth.issuer} checked against {keys}, {anonymous}"


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _disconnect(mqtt: Any) -> None:
    """Disconnect the gateway's gmqtt client if it got connected."""
    if mqtt.is_connected:
        await mqtt.disconnect()
