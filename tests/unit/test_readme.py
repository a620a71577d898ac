"""README.md as a newcomer reads it: the two commands as they work, a picture of the shipped
topology that matches it, and links that lead somewhere (a file, and a heading in it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cqrs_flow.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

INSTALL_AND_RUN = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install . && cqrs-flow up topology.yaml"
)
INSTALL_AND_TEST = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest"
)


def test_the_two_commands_are_there_as_written():
    lines = README.splitlines()
    assert f"    {INSTALL_AND_RUN}" in lines
    assert f"    {INSTALL_AND_TEST}" in lines


def test_the_picture_shows_every_node_of_the_shipped_topology_where_it_listens():
    picture = README.split("```\n", 2)[1]  # the first plain code block
    shipped = load_topology(ROOT / "topology.yaml")
    for node in shipped.nodes.values():
        assert node.name in picture, node.name
    addresses = {
        "gateway": [shipped.nodes["gateway"].listen],
        "broker": [shipped.nodes["broker"].listen],
        "reader": [shipped.nodes["reader"].listen],
        "store": [shipped.nodes["store"].write.listen, shipped.nodes["store"].read.listen],
    }
    for name, listens in addresses.items():
        for address in listens:
            assert address.target in picture, (name, address.target)
    for command in shipped.commands.values():
        assert command.topic in picture


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


LINKS = sorted(set(re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", README)))  # (file, anchor)


@pytest.mark.parametrize("link, anchor", LINKS, ids=lambda v: v or "-")
def test_every_link_leads_to_a_file_and_its_heading(link, anchor):
    if link.startswith(("http://", "https://")):
        return
    target = ROOT / link
    assert target.exists(), link
    if anchor:
        headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
        assert anchor in {_slug(h) for h in headings}, (link, anchor)


def test_the_reference_docs_are_linked():
    for doc in (
        "docs/TOPOLOGY.md",
        "docs/TOPOLOGY.md#commands",
        "plugins/README.md",
        "docs/DEPLOYMENT.md",
        "docs/PERFORMANCE.md",
        "docs/OPERATIONS.md",
        "docs/SECURITY.md",
        "docs/CLIENTS.md",
    ):
        assert f"]({doc})" in README, doc
