"""diagram: the topology as a Mermaid flowchart and as Graphviz DOT, and `cqrs-flow graph`: nodes,
topics, entities and their relations."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from click.testing import CliRunner

from cqrs_flow.cli import main
from cqrs_flow.topology import Topology
from cqrs_flow.topology.diagram import dot, mermaid
from cqrs_flow.topology.model import frozen_map

from ..helpers import ROOT

# -- Mermaid: the statements `mermaid()` writes, one per line ---------------------------------

_ID = r"[A-Za-z0-9_]+"
_LABEL = r'"[^"]*"'  # quoted; a '"' in a name is written as an entity code
_MERMAID_LINE = re.compile(
    "|".join(
        [
            r"flowchart LR",
            r"  %% .*",
            rf"  subgraph {_ID} \[{_LABEL}\]",
            r"  end",
            rf" {{2,4}}{_ID}\[{_LABEL}\]",  # a node
            rf" {{2,4}}{_ID}\(\[{_LABEL}\]\)",  # a topic
            rf"  {_ID}\[\({_LABEL}\)\]",  # an entity
            rf"  {_ID} (==>|-\.->|-->)\|{_LABEL}\| {_ID}",
            r"  linkStyle \d+(,\d+)* stroke:#[0-9a-f]{6}",
        ]
    )
)
_MERMAID_LINK = re.compile(rf'^  ({_ID}) (==>|-\.->|-->)\|"([^"]*)"\| ({_ID})$', re.M)
_MERMAID_BOX = re.compile(rf'^ +({_ID})(?:\[|\(\[|\[\()"([^"]*)"', re.M)
_MERMAID_ARROWS = {"==>": "write", "-.->": "read", "-->": "data"}


def mermaid_links(text: str) -> set[tuple[str, str, str, str]]:
    """(source, label, target, side) of every arrow."""
    return {
        (s, label, t, _MERMAID_ARROWS[arrow]) for s, arrow, label, t in _MERMAID_LINK.findall(text)
    }


def check_mermaid(text: str) -> None:
    """Every line is a statement of a `flowchart LR`; subgraphs close; linkStyle covers each
    link once."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    for line in lines:
        assert _MERMAID_LINE.fullmatch(line), f"not a Mermaid statement: {line!r}"
    depth = 0
    for line in lines:
        depth += line.startswith("  subgraph ") - (line == "  end")
        assert depth in (0, 1)
    assert depth == 0
    styled = [
        int(i)
        for line in lines
        if line.startswith("  linkStyle ")
        for i in line.split()[1].split(",")
    ]
    assert sorted(styled) == list(range(len(_MERMAID_LINK.findall(text))))
    ids = [m[0] for m in _MERMAID_BOX.findall(text)] + re.findall(
        rf"^  subgraph ({_ID})", text, re.M
    )
    assert len(ids) == len(set(ids)), "an id is declared twice"
    for source, _, target, _ in mermaid_links(text):
        assert {source, target} <= set(ids), "a link to an undeclared box"


# -- DOT: checked structurally ----------------------------------------------------------------

_DOT_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_DOT_EDGE = re.compile(r'^ +("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*") \[(.*)\];$')
_DOT_NODE = re.compile(r'^ +("(?:[^"\\]|\\.)*") \[label="(?:[^"\\]|\\.)*", shape=\w+\];$')


def check_dot(text: str) -> None:
    """A digraph: one statement a line, balanced braces outside strings, `"a" -> "b" [...]` edges
    between declared nodes."""
    lines = text.splitlines()
    assert re.fullmatch(r'digraph "[^"]*" \{', lines[0]) and lines[-1] == "}"
    depth = 0
    for line in lines:
        bare = _DOT_STRING.sub('""', line)
        depth += bare.count("{") - bare.count("}")
        assert depth >= 0
        if "->" in bare:
            assert _DOT_EDGE.match(line), f"not an edge statement: {line!r}"
        assert bare.endswith(("{", "}", ";")), f"unterminated statement: {line!r}"
    assert depth == 0
    declared = {m.group(1) for line in lines if (m := _DOT_NODE.match(line))}
    for line in lines:
        if m := _DOT_EDGE.match(line):
            assert {m.group(1), m.group(2)} <= declared, f"edge between undeclared nodes: {line!r}"


_DOT_SIDES = {"#c2410c": "write", "#1d4ed8": "read", "#6b7280": "data"}


def dot_links(text: str) -> set[tuple[str, str, str, str]]:
    out = set()
    for line in text.splitlines():
        if m := _DOT_EDGE.match(line):
            label = re.search(r'label="([^"]*)"', m.group(3)).group(1)
            side = _DOT_SIDES[re.search(r'color="(#\w+)"', m.group(3)).group(1)]
            out.add((m.group(1).strip('"'), label, m.group(2).strip('"'), side))
    return out


# -- the shipped topology ---------------------------------------------------------------------

SHIPPED_LINKS = {
    ("n_gateway", "publish", "t_broker_CONTACT_ADD", "write"),
    ("n_gateway", "publish", "t_broker_CONTACT_UPDATE", "write"),
    ("n_gateway", "publish", "t_broker_CONTACT_DELETE", "write"),
    ("t_broker_CONTACT_ADD", "consume, delay 3s", "n_writer", "write"),
    ("t_broker_CONTACT_UPDATE", "consume, delay 3s", "n_writer", "write"),
    ("t_broker_CONTACT_DELETE", "consume, delay 3s", "n_writer", "write"),
    ("n_writer", "write", "n_store", "write"),
    ("n_gateway", "query", "n_reader", "read"),
    ("n_reader", "read", "n_store", "read"),
    ("n_store", "holds", "e_Contact", "data"),
}


def test_mermaid_of_the_shipped_topology_has_every_link_on_its_side(shipped):
    text = mermaid(shipped)
    check_mermaid(text)
    assert mermaid_links(text) == SHIPPED_LINKS


def test_dot_of_the_shipped_topology_has_the_same_links(shipped):
    text = dot(shipped)
    check_dot(text)
    assert dot_links(text) == SHIPPED_LINKS


def test_the_read_and_write_sides_and_the_data_look_different(shipped):
    text = mermaid(shipped)
    styles = dict(re.findall(r"^  linkStyle ([\d,]+) (stroke:#\w+)$", text, re.M))
    assert len(styles) == 3 and len(set(styles.values())) == 3
    looks: dict[str, set[str]] = {}
    for line in dot(shipped).splitlines():
        if m := _DOT_EDGE.match(line):
            side = _DOT_SIDES[re.search(r'color="(#\w+)"', m.group(3)).group(1)]
            looks.setdefault(side, set()).add(re.sub(r'label="[^"]*"', "", m.group(3)))
    assert {side: len(found) for side, found in looks.items()} == {"write": 1, "read": 1, "data": 1}
    assert len(set.union(*looks.values())) == 3  # one look per side, three different ones


def test_every_node_shows_its_name_kind_and_listen_addresses(shipped):
    for text in (mermaid(shipped), dot(shipped)):
        for node in shipped.nodes.values():
            assert f"{node.name} ({node.kind})" in text
            for what, address in node.listens:
                assert f"{what} {address}" in text
    assert (
        'n_store["store (store)<br/>write service 127.0.0.1:50051<br/>'
        'read service 127.0.0.1:50052"]' in mermaid(shipped)
    )


def test_every_command_topic_is_a_box_inside_its_broker(shipped):
    text = mermaid(shipped)
    broker = text[text.index("  subgraph n_broker") : text.index("  end")]
    for name, command in shipped.commands.items():
        assert f'(["{command.topic}<br/>{name}"])' in broker


def test_output_is_deterministic_whatever_the_order_of_the_file(shipped):
    shuffled = replace(
        shipped,
        nodes=frozen_map(dict(reversed(list(shipped.nodes.items())))),
        commands=frozen_map(dict(reversed(list(shipped.commands.items())))),
    )
    assert mermaid(shuffled) == mermaid(shipped) == mermaid(shipped)
    assert dot(shuffled) == dot(shipped) == dot(shipped)


# -- other topologies -------------------------------------------------------------------------


def test_labels_with_quotes_and_markup_are_escaped(edit, parse):
    topology = parse(edit(("topic: CONTACT/ADD", r"""topic: 'a "quoted" <b>&|\ topic'""")))
    text = mermaid(topology)
    check_mermaid(text)
    assert "a #34;quoted#34; #60;b#62;#38;#124;\\ topic<br/>add_contact" in text
    dot_text = dot(topology)
    check_dot(dot_text)
    assert r'label="a \"quoted\" <b>&|\\ topic\nadd_contact"' in dot_text


def test_an_external_broker_shows_its_url_without_the_password(edit, parse):
    topology = parse(
        edit(("listen: 127.0.0.1:1883", "url: mqtt://cqrs:s3cret@mqtt.example.com:1883"))
    )
    for text in (mermaid(topology), dot(topology)):
        assert "broker (broker, external)" in text
        assert "mqtt://cqrs:***@mqtt.example.com:1883" in text
        assert "s3cret" not in text and "mqtt 127.0.0.1:1883" not in text
    check_mermaid(mermaid(topology))


def test_a_broker_carrying_no_topic_is_a_plain_box_and_ids_stay_unique(edit, parse):
    spare = (
        "  spare-1: {kind: broker, listen: 127.0.0.1:1901}\n"
        "  spare_1: {kind: broker, listen: 1902}\n"
    )
    topology = parse(edit(("nodes:\n", "nodes:\n" + spare)))
    text = mermaid(topology)
    check_mermaid(text)
    assert 'n_spare_1["spare-1 (broker)<br/>mqtt 127.0.0.1:1901"]' in text
    assert 'n_spare_1_2["spare_1 (broker)<br/>mqtt 127.0.0.1:1902"]' in text
    check_dot(dot(topology))


def test_a_writer_without_delay(edit, parse):
    text = mermaid(parse(edit(("delay: 3s", "delay: 0"))))
    assert '==>|"consume, no delay"| n_writer' in text
    assert '"consume, delay 500ms"' in mermaid(parse(edit(("delay: 3s", "delay: 500ms"))))


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("examples/*/topology.yaml")), ids=lambda p: p.parent.name
)
def test_the_examples_draw(path):
    from cqrs_flow.topology import load_topology

    topology: Topology = load_topology(path)
    check_mermaid(mermaid(topology))
    check_dot(dot(topology))


# -- entities ---------------------------------------------------------------------------------

LENDING = ROOT / "tests" / "topologies" / "lending.yaml"
LENDING_DATA = {
    ("n_store", "holds", "e_Author", "data"),
    ("n_store", "holds", "e_Book", "data"),
    ("n_store", "holds", "e_Loan", "data"),
    ("e_Author", "books: many by author_id", "e_Book", "data"),
    ("e_Book", "author: one by author_id", "e_Author", "data"),
    ("e_Book", "loans: many by book_id", "e_Loan", "data"),
    ("e_Loan", "book: one by book_id", "e_Book", "data"),
}


def test_entities_their_store_and_their_relations_are_drawn():
    from cqrs_flow.topology import load_topology

    topology = load_topology(LENDING)
    text, dot_text = mermaid(topology), dot(topology)
    check_mermaid(text)
    check_dot(dot_text)
    assert {link for link in mermaid_links(text) if link[3] == "data"} == LENDING_DATA
    assert {link for link in dot_links(dot_text) if link[3] == "data"} == LENDING_DATA
    assert (
        'e_Book[("Book (entity)<br/>lending.Book, key id<br/>'
        'indexes title, author_id, year, genre")]' in text
    )
    assert (
        '"e_Loan" [label="Loan (entity)\\nlending.Loan, key id\\nindexes book_id, member", '
        "shape=cylinder];" in dot_text
    )
    many = [line for line in dot_text.splitlines() if "arrowhead=crow" in line]
    assert [re.search(r'label="([^"]*)"', line).group(1) for line in many] == [
        "books: many by author_id",
        "loans: many by book_id",
    ]  # to many: a crow's foot; to one: a plain arrow


def test_an_entity_related_to_itself():
    from cqrs_flow.topology import parse_topology

    text = LENDING.read_text(encoding="utf-8").replace(
        "      book: {entity: Book, key: book_id}\n",
        "      book: {entity: Book, key: book_id}\n      renewed: {entity: Loan, key: member}\n",
    )
    topology = parse_topology(text, LENDING)
    assert ("e_Loan", "renewed: one by member", "e_Loan", "data") in mermaid_links(
        mermaid(topology)
    )
    check_mermaid(mermaid(topology))
    check_dot(dot(topology))


def test_entities_are_drawn_in_name_order_whatever_the_order_of_the_file():
    from cqrs_flow.topology import load_topology

    topology = load_topology(LENDING)
    shuffled = replace(topology, entities=frozen_map(dict(reversed(topology.entities.items()))))
    assert mermaid(shuffled) == mermaid(topology)
    assert dot(shuffled) == dot(topology)


# -- the command and the README ---------------------------------------------------------------


def test_graph_command_prints_mermaid_by_default_and_dot_on_request(shipped, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    result = runner.invoke(main, ["graph", "topology.yaml"])
    assert result.exit_code == 0, result.output
    assert result.output == mermaid(shipped)
    result = runner.invoke(main, ["graph", "topology.yaml", "--format", "dot"])
    assert result.exit_code == 0, result.output
    assert result.output == dot(shipped)


def test_graph_command_reports_a_broken_topology():
    result = CliRunner().invoke(
        main, ["graph", str(ROOT / "tests/topologies/writer_reads_store.yaml")]
    )
    assert result.exit_code == 1
    assert "read/write segregation" in result.stderr


def test_the_docs_show_the_shipped_topology(shipped):
    doc = (ROOT / "docs" / "TOPOLOGY.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{mermaid(shipped)}```\n" in doc, (
        "docs/TOPOLOGY.md's diagram is not the shipped topology's; paste the output of "
        "`cqrs-flow graph topology.yaml` into its ```mermaid block"
    )


def test_a_projection_follows_on_the_read_side_and_writes_its_read_model():
    from cqrs_flow.topology import load_topology

    library = load_topology(ROOT / "examples" / "library" / "topology.yaml")
    text = mermaid(library)
    check_mermaid(text)
    links = mermaid_links(text)
    assert ("n_loans", "follow", "n_store", "read") in links
    assert ("n_loans", "write MemberLoans", "n_store", "write") in links
    assert ("n_store", "holds", "e_MemberLoans", "data") in links
    assert '"loans (projection)<br/>projections.LoansPerMember"' in text
    check_dot(dot(library))
    assert ("n_loans", "follow", "n_store", "read") in dot_links(dot(library))
