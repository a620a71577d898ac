"""The `cqrs-flow` command. Library code raises; here errors become one clear message and an
exit status (0 ok, 1 failed, 2 usage)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from cqrs_flow import __version__
from cqrs_flow.errors import CqrsFlowError, TopologyError
from cqrs_flow.topology import Topology, load_topology, start_batches
from cqrs_flow.topology.diagram import FORMATS

__all__ = ["main"]


def _load_checked(path: str):
    """The topology and its compiled protos, with every problem between them reported at once."""
    from cqrs_flow.plans import check_contracts
    from cqrs_flow.protos import compile_protos

    topology = load_topology(path)
    protos = compile_protos(list(topology.protos), topology.root)
    problems = check_contracts(topology, protos)
    if problems:
        raise TopologyError(problems, path)
    return topology, protos


def _fail(exc: CqrsFlowError) -> None:
    click.echo(f"error: {exc}" if not isinstance(exc, TopologyError) else str(exc), err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cqrs-flow")
def main() -> None:
    """Run a CQRS system described by a YAML topology."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check a topology and report every problem, with key path and line."""
    try:
        topology, _ = _load_checked(file)
    except CqrsFlowError as exc:
        _fail(exc)
    click.echo(f"{file}: valid — {_summary(topology)}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
def up(file: str) -> None:
    """Start every node of the topology, in dependency order; Ctrl-C stops them all."""
    from cqrs_flow.launcher import Launcher

    try:
        topology, _ = _load_checked(file)
    except CqrsFlowError as exc:
        _fail(exc)
    sys.exit(asyncio.run(Launcher(topology).run()))


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name")
def node(file: str, name: str) -> None:
    """Run one node of the topology in the foreground (what `up` spawns)."""
    from cqrs_flow.nodes import run_node
    from cqrs_flow.protos import compile_protos

    try:
        topology = load_topology(file)
        protos = compile_protos(list(topology.protos), topology.root)
        run_node(topology, name, protos)
    except CqrsFlowError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="mermaid",
              show_default=True, help="Mermaid flowchart or Graphviz DOT.")
def graph(file: str, fmt: str) -> None:
    """Print the topology as a diagram: nodes, command topics, and the write and read sides."""
    try:
        topology = load_topology(file)  # not the protos: a diagram needs only the wiring
    except CqrsFlowError as exc:
        _fail(exc)
    click.echo(FORMATS[fmt](topology), nl=False)


@main.command()
def schema() -> None:
    """Print the JSON Schema of topology files (cqrs-flow schema > topology.schema.json)."""
    from cqrs_flow.topology.jsonschema import schema_text

    click.echo(schema_text(), nl=False)


def _summary(topology: Topology) -> str:
    order = " -> ".join("{" + ", ".join(b) + "}" if len(b) > 1 else b[0] for b in start_batches(topology))
    return f"{len(topology.nodes)} nodes, {len(topology.commands)} commands; start order: {order}"


if __name__ == "__main__":
    main()
