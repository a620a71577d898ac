"""A topology as a picture: Mermaid flowchart or Graphviz DOT text, from the model alone.

`drawing(topology)` lays the topology out once, format-neutral: a box per node, each broker as
a cluster holding the command topics carried on it, a box per entity, and the links between
them, each on the write side (publish, consume, write) or the read side (query, read) of the
system, or among the data (a store holds an entity; a relation leads from one entity to another,
to one or to many, by a key field). `mermaid()` and `dot()` only spell that out. Everything is
sorted, so the same topology gives the same text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from cqrs_flow.topology.model import (
    BrokerNode,
    Entity,
    GatewayNode,
    Node,
    ProjectionNode,
    ReaderNode,
    Relation,
    StoreNode,
    Topology,
    WriterNode,
)

__all__ = ["FORMATS", "Box", "Cluster", "Drawing", "Link", "dot", "drawing", "mermaid"]

WRITE, READ, DATA = "write", "read", "data"

# Write side in a warm solid line, read side in a cool dashed one, the data (entities and their
# relations) in a thin grey one, in both formats.
_COLOURS = {WRITE: "#c2410c", READ: "#1d4ed8", DATA: "#6b7280"}


@dataclass(frozen=True)
class Box:
    """One drawn thing: a node (`shape` "node"), a command topic ("topic") or an entity
    ("entity")."""

    id: str
    lines: tuple[str, ...]
    shape: str = "node"


@dataclass(frozen=True)
class Cluster:
    """A broker drawn as a frame around the topics it carries."""

    id: str
    lines: tuple[str, ...]
    topics: tuple[Box, ...]


@dataclass(frozen=True)
class Link:
    """An arrow between two boxes, on the write or the read side or among the data; `many`: a
    relation to many."""

    source: str
    target: str
    label: str
    side: str
    many: bool = False


@dataclass(frozen=True)
class Drawing:
    title: str
    clusters: tuple[Cluster, ...]
    boxes: tuple[Box, ...]
    links: tuple[Link, ...]


def drawing(topology: Topology) -> Drawing:
    """Lay out the topology: what to draw, independent of the output format."""
    ids = _Ids()
    nodes = [topology.nodes[name] for name in sorted(topology.nodes)]
    for node in nodes:  # ids in name order, whatever order the links below ask for them
        ids.get("n", node.name)
    topics: dict[tuple[str, str], set[str]] = {}  # (broker, topic) -> command names
    links: list[Link] = []

    def topic_id(broker: str, command: str) -> str | None:
        found = topology.commands.get(command)
        if found is None:
            return None
        topics.setdefault((broker, found.topic), set()).add(command)
        return ids.get("t", f"{broker}.{found.topic}")

    # In the order a command and then a query travel.
    for gateway in _of(nodes, GatewayNode):
        for command in sorted({m.command for m in gateway.mutations.values()}):
            target = topic_id(gateway.broker, command)
            if target:
                links.append(Link(ids.get("n", gateway.name), target, "publish", WRITE))
    for writer in _of(nodes, WriterNode):
        for command in sorted(topology.commands_of(writer)):  # by name or by topic filter
            source = topic_id(writer.broker, command)
            if source:
                links.append(Link(source, ids.get("n", writer.name), _consume(writer.delay), WRITE))
    for writer in _of(nodes, WriterNode):
        links.append(
            Link(
                ids.get("n", writer.name),
                ids.get("n", writer.store.node),
                writer.store.side,
                writer.store.side,
            )
        )
    for gateway in _of(nodes, GatewayNode):
        links.append(Link(ids.get("n", gateway.name), ids.get("n", gateway.reader), "query", READ))
    for reader in _of(nodes, ReaderNode):
        links.append(
            Link(
                ids.get("n", reader.name),
                ids.get("n", reader.store.node),
                reader.store.side,
                reader.store.side,
            )
        )
    for projection in _of(nodes, ProjectionNode):  # reads a change log, writes its read model
        if projection.follows in topology.nodes:
            links.append(
                Link(
                    ids.get("n", projection.name), ids.get("n", projection.follows), "follow", READ
                )
            )
        if projection.store.node in topology.nodes:
            label = f"write {projection.entity}" if projection.entity else "write"
            links.append(
                Link(
                    ids.get("n", projection.name), ids.get("n", projection.store.node), label, WRITE
                )
            )
    entities = [topology.entities[name] for name in sorted(topology.entities)]
    for entity in entities:
        ids.get("e", entity.name)
    for store in _of(nodes, StoreNode):
        for name in sorted(store.entities):
            if name in topology.entities:
                links.append(Link(ids.get("n", store.name), ids.get("e", name), "holds", DATA))
    for entity in entities:
        for relation in sorted(entity.relations.values(), key=lambda r: r.name):
            if relation.entity in topology.entities:
                links.append(
                    Link(
                        ids.get("e", entity.name),
                        ids.get("e", relation.entity),
                        _relation_label(relation),
                        DATA,
                        relation.many,
                    )
                )

    topic_boxes = {
        (broker, topic): Box(
            ids.get("t", f"{broker}.{topic}"), (topic, ", ".join(sorted(commands))), "topic"
        )
        for (broker, topic), commands in sorted(topics.items())
    }
    clusters, boxes = [], []
    for node in nodes:
        carried = tuple(box for (broker, _), box in topic_boxes.items() if broker == node.name)
        if isinstance(node, BrokerNode) and carried:
            clusters.append(Cluster(ids.get("n", node.name), _node_lines(node), carried))
        else:
            boxes.append(Box(ids.get("n", node.name), _node_lines(node)))
    brokers = {node.name for node in _of(nodes, BrokerNode)}
    boxes += [
        box for (broker, _), box in topic_boxes.items() if broker not in brokers
    ]  # drawn loose
    boxes += [Box(ids.get("e", e.name), _entity_lines(e), "entity") for e in entities]
    return Drawing(topology.name, tuple(clusters), tuple(boxes), tuple(links))


# -- Mermaid ----------------------------------------------------------------------------------

_MERMAID_SHAPES = {"node": ('["', '"]'), "topic": ('(["', '"])'), "entity": ('[("', '")]')}
_MERMAID_ARROWS = {WRITE: "==>", READ: "-.->", DATA: "-->"}


def mermaid(topology: Topology) -> str:
    """The topology as a Mermaid flowchart (`flowchart LR`), every label quoted and escaped."""
    picture = drawing(topology)
    out = ["flowchart LR", f"  %% {_mermaid_comment(picture.title)}: cqrs-flow graph"]
    for cluster in picture.clusters:
        out.append(f'  subgraph {cluster.id} ["{_mermaid_label(cluster.lines)}"]')
        out += [f"    {_mermaid_box(box)}" for box in cluster.topics]
        out.append("  end")
    out += [f"  {_mermaid_box(box)}" for box in picture.boxes]
    for link in picture.links:
        arrow = _MERMAID_ARROWS[link.side]
        out.append(f'  {link.source} {arrow}|"{_mermaid_text(link.label)}"| {link.target}')
    for side in (WRITE, READ, DATA):
        indexes = [str(i) for i, link in enumerate(picture.links) if link.side == side]
        if indexes:
            out.append(f"  linkStyle {','.join(indexes)} stroke:{_COLOURS[side]}")
    return "\n".join(out) + "\n"


def _mermaid_box(box: Box) -> str:
    opening, closing = _MERMAID_SHAPES[box.shape]
    return f"{box.id}{opening}{_mermaid_label(box.lines)}{closing}"


def _mermaid_label(lines: tuple[str, ...]) -> str:
    return "<br/>".join(_mermaid_text(line) for line in lines)


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label: quotes, markup and '#' as entity codes."""
    return "".join(f"#{ord(c)};" if c in '"#&<>|`' else " " if c < " " else c for c in text)


def _mermaid_comment(text: str) -> str:
    return re.sub(r"[\x00-\x1f%]", " ", text)


# -- Graphviz DOT -----------------------------------------------------------------------------

_DOT_SHAPES = {"node": "box", "topic": "ellipse", "entity": "cylinder"}
_DOT_LINE_STYLES = {WRITE: "solid", READ: "dashed", DATA: "solid"}


def dot(topology: Topology) -> str:
    """The topology as a Graphviz digraph, left to right; one statement per line."""
    picture = drawing(topology)
    out = [
        f"digraph {_dot_quote(picture.title)} {{",
        "  rankdir=LR;",
        '  fontname="Helvetica";',
        '  node [shape=box, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for cluster in picture.clusters:
        out.append(f"  subgraph {_dot_quote('cluster_' + cluster.id)} {{")
        out.append(f"    label={_dot_label(cluster.lines)};")
        out.append("    style=rounded;")
        out += [f"    {_dot_box(box)}" for box in cluster.topics]
        out.append("  }")
    out += [f"  {_dot_box(box)}" for box in picture.boxes]
    for link in picture.links:
        out.append(
            f"  {_dot_quote(link.source)} -> {_dot_quote(link.target)} "
            f'[label={_dot_quote(link.label)}, color="{_COLOURS[link.side]}", '
            f'fontcolor="{_COLOURS[link.side]}", style={_DOT_LINE_STYLES[link.side]}'
            f"{', arrowhead=crow' if link.many else ''}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_box(box: Box) -> str:
    return f"{_dot_quote(box.id)} [label={_dot_label(box.lines)}, shape={_DOT_SHAPES[box.shape]}];"


def _dot_label(lines: tuple[str, ...]) -> str:
    return '"' + "\\n".join(_dot_text(line) for line in lines) + '"'


def _dot_quote(text: str) -> str:
    return f'"{_dot_text(text)}"'


def _dot_text(text: str) -> str:
    """Text safe inside a DOT quoted string (backslashes would start DOT's own escapes)."""
    return "".join("\\" + c if c in '"\\' else " " if c < " " else c for c in text)


FORMATS: dict[str, Callable[[Topology], str]] = {"mermaid": mermaid, "dot": dot}


# -- shared helpers ---------------------------------------------------------------------------


class _Ids:
    """Stable identifiers: a prefix plus the name with anything but letters and digits as '_';
    a name that would clash with an earlier one gets a number."""

    def __init__(self) -> None:
        self.given: dict[tuple[str, str], str] = {}
        self.taken: set[str] = set()

    def get(self, prefix: str, name: str) -> str:
        key = (prefix, name)
        if key not in self.given:
            base = f"{prefix}_{re.sub(r'[^A-Za-z0-9]', '_', name)}"
            found, count = base, 1
            while found in self.taken:
                count += 1
                found = f"{base}_{count}"
            self.given[key] = found
            self.taken.add(found)
        return self.given[key]


_Kind = TypeVar("_Kind", bound=Node)


def _of(nodes: list[Node], kind: type[_Kind]) -> list[_Kind]:
    return [n for n in nodes if isinstance(n, kind)]


def _node_lines(node: Node) -> tuple[str, ...]:
    """Name and kind, then one line per listen address; an external broker shows its url."""
    # A broker given by `url` is an MQTT broker cqrs-flow does not run. (Read with getattr: the
    # key is new on brokers; GatewayNode.url is something else, the GraphQL endpoint.)
    url = getattr(node, "url", None) if isinstance(node, BrokerNode) else None
    if url:
        return f"{node.name} ({node.kind}, external)", _without_password(str(url))
    if isinstance(node, ProjectionNode) and node.plugin.use:
        return f"{node.name} ({node.kind})", node.plugin.use
    return (f"{node.name} ({node.kind})",) + tuple(
        f"{what} {address}" for what, address in node.listens
    )


def _entity_lines(entity: Entity) -> tuple[str, ...]:
    """Name, its document and key, then the fields lists filter and order on."""
    lines = (f"{entity.name} (entity)", f"{entity.document}, key {entity.key}")
    return lines + ((f"indexes {', '.join(entity.indexes)}",) if entity.indexes else ())


def _relation_label(relation: Relation) -> str:
    """'author: one by author_id' (a field of this entity's documents holds the other's key),
    'books: many by author_id' (a field of the others' documents holds this one's key)."""
    if relation.many:
        return f"{relation.name}: many by {relation.by}"
    return f"{relation.name}: one by {relation.key or '?'}"


def _without_password(url: str) -> str:
    """A diagram ends up in READMEs and tickets: never print a password from a broker url."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def _consume(delay: float) -> str:
    if delay == 0:
        return "consume, no delay"
    return f"consume, delay {delay * 1000:g}ms" if delay < 1 else f"consume, delay {delay:g}s"
