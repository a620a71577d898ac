"""The library example in-process, for the tests of the change log and projections: its store
(and, when asked, its projection) as real node services on free ports, and gRPC clients with
any node's credentials."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cqrs_flow.nodes.projection import ProjectionService
from cqrs_flow.nodes.store import StoreService
from cqrs_flow.protobuf.compiler import (
    CHANGES_SERVICE,
    DOCUMENTS_SERVICE,
    PROJECTIONS_SERVICE,
    compile_protos,
)
from cqrs_flow.security.tokens import ENV_SECRET, Credentials, credentials_from_env, derive_token
from cqrs_flow.topology import Topology, load_topology
from cqrs_flow.topology.relocate import relocate
from cqrs_flow.transport.rpc import ServiceClient

from ..helpers import ROOT

SECRET = "0123456789abcdef" * 4
LIBRARY = ROOT / "examples" / "library" / "topology.yaml"


class Library:
    """A relocated copy of the library example and its nodes, started by the test."""

    def __init__(self, directory: Path, overrides: dict[str, Any] | None = None) -> None:
        self.topology: Topology = load_topology(
            relocate(LIBRARY, directory / "topology.yaml", overrides)
        )
        self.protos = compile_protos(list(self.topology.protos), self.topology.root)
        self.services: list[Any] = []

    def credentials(self, node: str) -> Credentials:
        return Credentials(node, derive_token(SECRET, node))

    async def start_store(self) -> StoreService:
        credentials = credentials_from_env(self.topology, "store", {ENV_SECRET: SECRET})
        store = StoreService(self.topology, self.topology.nodes["store"], self.protos, credentials)
        await store.start()
        self.services.append(store)
        return store

    async def start_projection(self, name: str = "loans") -> ProjectionService:
        credentials = credentials_from_env(self.topology, name, {ENV_SECRET: SECRET})
        node = self.topology.nodes[name]
        projection = ProjectionService(self.topology, node, self.protos, credentials)
        await projection.start()
        self.services.append(projection)
        return projection

    async def stop(self) -> None:
        for service in reversed(self.services):
            await service.stop()
        self.services.clear()

    def run(self, scenario: Any) -> None:
        """Run `scenario(self)` in a new event loop; every node it started is stopped after."""

        async def main() -> None:
            try:
                await scenario(self)
            finally:
                await self.stop()

        asyncio.run(main())

    def client(self, service: str, side: str, as_node: str) -> ServiceClient:
        store = self.topology.nodes["store"]
        address = store.read.listen if side == "read" else store.write.listen
        names = {"changes": CHANGES_SERVICE, "documents": DOCUMENTS_SERVICE}
        names["projections"] = PROJECTIONS_SERVICE
        names["write"] = store.write.name
        return ServiceClient(
            self.protos,
            self.protos.service(names.get(service, service)),
            address.target,
            self.credentials(as_node),
        )

    def loan(self, id: str, member: str = "ada", returned: bool = False, due: str = "2027-02-01"):
        return self.protos.message_class("library.Loan")(
            id=id, book_id="b1", member=member, due=due, returned=returned
        )

    async def lend(self, writer: ServiceClient, *loans: Any) -> None:
        for loan in loans:
            request = writer.request_class("AddLoan")(loan=loan)
            await writer.call("AddLoan", request)
