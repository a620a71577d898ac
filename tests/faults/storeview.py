"""What the store itself says, read over gRPC as the nodes read it: its change log (the Changes
service generated from changes.proto, with the reader's credentials, as tests/e2e/changelog.py
reads it), its documents (Documents.Find) and where a projection's read model stands
(Projections.State, with the projection's credentials). The checker compares these with the
history of what clients were answered (checker.check_log, checker.check_projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from checker import Logged
from system import SECRET

from cqrs_flow.protobuf.compiler import (
    CHANGES_SERVICE,
    DOCUMENTS_SERVICE,
    PROJECTIONS_SERVICE,
    compile_protos,
)
from cqrs_flow.protobuf.conversions import data_converter
from cqrs_flow.security.tokens import Credentials, derive_token
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import ProjectionNode, ReaderNode, StoreNode
from cqrs_flow.transport.rpc import ServiceClient

__all__ = ["StoreView"]

# what a read of the store may meet while a node is away or just back
UNREACHABLE = (grpc.aio.AioRpcError, OSError, TimeoutError)


@dataclass
class StoreView:
    """Clients of the system's one store (the topology file as the cluster runs it)."""

    file: Path

    def __post_init__(self) -> None:
        self.topology = load_topology(self.file)
        self.protos = compile_protos(list(self.topology.protos), self.topology.root)
        nodes = self.topology.nodes.values()
        self.store = next(n for n in nodes if isinstance(n, StoreNode))
        reader = next((n.name for n in nodes if isinstance(n, ReaderNode)), self.store.name)
        self.projections = [n for n in nodes if isinstance(n, ProjectionNode)]
        self._as = Credentials(reader, derive_token(SECRET, reader))
        self._decoders: dict[str, Any] = {}
        self._last: dict[tuple[str, ...], int] = {}  # entities -> their last change seen

    def _client(self, service: str, target: str, credentials: Credentials) -> ServiceClient:
        return ServiceClient(self.protos, self.protos.service(service), target, credentials)

    def decode(self, entity: str, data: bytes) -> dict[str, Any]:
        if entity not in self._decoders:
            cls = self.protos.message_class(self.topology.entities[entity].document)
            self._decoders[entity] = (cls, data_converter(cls.DESCRIPTOR))
        cls, convert = self._decoders[entity]
        return convert(cls.FromString(data))  # type: ignore[no-any-return]

    async def log(self, timeout: float = 60.0) -> list[Logged]:
        """Every change the store's log holds, in order (Follow without waiting)."""
        changes = self._client(CHANGES_SERVICE, self.store.read.listen.target, self._as)
        found = []
        try:
            request = changes.request_class("Follow")(after=0, wait=False)
            async for change in changes.stream("Follow", request, timeout=timeout):
                found.append(
                    Logged(
                        change.position,
                        change.entity,
                        change.key,
                        change.op,
                        change.command_id,
                        None
                        if change.op == "delete"
                        else self.decode(change.entity, change.document),
                    )
                )
        finally:
            await changes.close()
        return found

    async def last_position(self) -> int:
        changes = self._client(CHANGES_SERVICE, self.store.read.listen.target, self._as)
        try:
            info = await changes.call("Info", changes.request_class("Info")(), timeout=5.0)
            return int(info.last)
        finally:
            await changes.close()

    async def documents(self, entities: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """entity -> key -> document, every document of each of `entities` (Find, paged)."""
        client = self._client(DOCUMENTS_SERVICE, self.store.read.listen.target, self._as)
        found: dict[str, dict[str, dict[str, Any]]] = {}
        try:
            for entity in entities:
                key, docs, after = self.topology.entities[entity].key, {}, None
                while True:
                    query: dict[str, Any] = {"entity": entity, "first": 500}
                    if after is not None:
                        query["after"] = after
                    request = client.request_class("Find")(queries=[query])
                    page = (await client.call("Find", request, timeout=30)).pages[0]
                    for data in page.documents:
                        document = self.decode(entity, data)
                        docs[document[key]] = document
                    if not page.has_next:
                        break
                    after = page.positions[-1]
                found[entity] = docs
        finally:
            await client.close()
        return found

    async def projection_position(self, node: ProjectionNode) -> int:
        """The last change position the projection's live read model has applied."""
        credentials = Credentials(node.name, derive_token(SECRET, node.name))
        target = self.topology.store_of(node.store).write.listen.target
        client = self._client(PROJECTIONS_SERVICE, target, credentials)
        try:
            state = await client.call("State", client.request_class("State")(), timeout=5.0)
            return int(state.position)
        finally:
            await client.close()

    async def last_of(self, entities: tuple[str, ...]) -> int:
        """The position of the last change of `entities` in the log now (0: none), read on from
        where the previous call for them stopped."""
        after = self._last.get(entities, 0)
        changes = self._client(CHANGES_SERVICE, self.store.read.listen.target, self._as)
        try:
            request = changes.request_class("Follow")(
                after=after, entities=list(entities), wait=False
            )
            async for change in changes.stream("Follow", request, timeout=30.0):
                after = max(after, int(change.position))
        finally:
            await changes.close()
        self._last[entities] = after
        return after

    def projection(self, name: str) -> ProjectionNode:
        return next(n for n in self.projections if n.name == name)
