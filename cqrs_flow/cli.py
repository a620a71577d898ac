"""The `cqrs-flow` command. Library code raises; here errors become one clear message and an
exit status (0 ok, 1 failed, 2 usage)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cqrs_flow import __version__
from cqrs_flow.errors import CqrsFlowError, TopologyError
from cqrs_flow.telemetry.logs import ENV_LOG_FORMAT, ENV_LOG_LEVEL, LOG_FORMATS
from cqrs_flow.topology import Topology, load_topology, start_batches
from cqrs_flow.topology.diagram import FORMATS
from cqrs_flow.topology.problems import suggest

if TYPE_CHECKING:
    from cqrs_flow.scaffold import Entity

__all__ = ["main"]


def _load_checked(path: str, import_plugins: bool = True):
    """The topology and its compiled protos, with every problem between them reported at once.
    Plugins are imported, which runs their modules' code, only with `import_plugins`."""
    topology = load_topology(path)
    return topology, _checked(topology, path, import_plugins)


def _checked(topology: Topology, path: str, import_plugins: bool = True):
    """The compiled protos of a loaded topology; TopologyError with every problem between the
    topology and its protos, schema and plugins (the contract checks), reported at once."""
    from cqrs_flow.contracts.check import check_contracts
    from cqrs_flow.protobuf.compiler import compile_protos

    protos = compile_protos(list(topology.protos), topology.root)
    problems = check_contracts(topology, protos, import_plugins)
    if problems:
        raise TopologyError(problems, path)
    return protos


def _warn_exposure(topology: Topology, file: str) -> None:
    """Links open to the network without TLS or a login: allowed, but never by accident."""
    from cqrs_flow.topology.exposure import exposure_warnings

    for warning in exposure_warnings(topology):
        click.echo(f"warning: {warning.format(file)}", err=True)


def _fail(exc: CqrsFlowError) -> None:
    click.echo(f"error: {exc}" if not isinstance(exc, TopologyError) else str(exc), err=True)
    sys.exit(1)


_log_format_option = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    help=f"text (default: one line per event, prefixed with the node's name) or json (one JSON "
    f"object per line); also ${ENV_LOG_FORMAT}. The level is ${ENV_LOG_LEVEL} (default INFO).",
)


def _set_log_format(log_format: str | None) -> None:
    """The nodes read it from their environment, which they inherit."""
    if log_format is not None:
        os.environ[ENV_LOG_FORMAT] = log_format


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cqrs-flow")
def main() -> None:
    """Run a CQRS system described by a YAML topology.

    \b
    Environment:
      CQRS_FLOW_LOG_LEVEL   DEBUG, INFO (default), WARNING or ERROR
      CQRS_FLOW_LOG_FORMAT  text (default) or json, as --log-format
      CQRS_FLOW_SECRET      the system secret nodes' credentials derive from
    Operating a running system (metrics, traces, logs, health): docs/OPERATIONS.md."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--import-plugins",
    is_flag=True,
    help="Also import the plugins the topology names (which runs their modules' code) and check "
    "them: that each exists and serves its kind of node.",
)
def validate(file: str, import_plugins: bool) -> None:
    """Check a topology and report every problem, with key path and line. Runs no code of the
    project's own unless --import-plugins is given."""
    try:
        topology, _ = _load_checked(file, import_plugins)
    except CqrsFlowError as exc:
        _fail(exc)
    _warn_exposure(topology, file)
    plugins = sum(len(getattr(node, "plugins", ())) for node in topology.nodes.values())
    unchecked = (
        f" ({plugins} plugin(s) not imported: --import-plugins checks them)"
        if plugins and not import_plugins
        else ""
    )
    click.echo(f"{file}: valid — {_summary(topology)}{unchecked}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--only",
    metavar="NODE[,NODE...]",
    help="Run just these nodes on this host; the nodes they depend on run on other hosts and are "
    "waited for where the topology says they listen. Needs CQRS_FLOW_SECRET, the same on every "
    "host.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Reload when the topology, its GraphQL schema, a .proto file or a plugin module changes: "
    "restart only the nodes the change affects (stopped in reverse dependency order, a writer "
    "applying the commands it holds; started in dependency order). A change that does not "
    "validate is reported and the running system is left as it was.",
)
@_log_format_option
def up(file: str, only: str | None, watch: bool, log_format: str | None) -> None:
    """Start every node of the topology, in dependency order; Ctrl-C (or SIGTERM) stops them
    all, in reverse order.

    SIGHUP reloads the topology once, as --watch does on a change (kill -HUP PID).

    Each node serves Prometheus metrics and its health on its metrics address (the topology's
    `metrics`; docs/OPERATIONS.md, which also tells about reloading). The log level is
    CQRS_FLOW_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR; default INFO)."""
    from cqrs_flow.launcher import Launcher
    from cqrs_flow.launcher.printer import Printer
    from cqrs_flow.launcher.reload import Reloader

    _set_log_format(log_format)
    names = [n.strip() for n in only.split(",") if n.strip()] if only is not None else None
    try:
        topology = load_topology(file)  # its own problems: nothing is spawned
        printer = Printer(json_lines=os.environ.get(ENV_LOG_FORMAT) == "json")
        launcher = Launcher(topology, printer, only=names, watch=watch)  # reads the secret
    except CqrsFlowError as exc:
        _fail(exc)

    def preflight() -> None:
        """The contract checks, run by the launcher while the held processes import."""
        protos = _checked(topology, file)
        launcher.reloader = Reloader(lambda: _load_checked(file), topology, protos)

    launcher.preflight = preflight
    _warn_exposure(topology, file)
    try:
        status = asyncio.run(launcher.run())
    except CqrsFlowError as exc:  # a contract problem found by the preflight checks
        _fail(exc)
    sys.exit(status)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per node process.")
def status(file: str, as_json: bool) -> None:
    """Show every node of a running system: ready or not (and what it misses), pid, restarts,
    queue depth, listen addresses, as each node's health endpoint tells. Exits 1 unless every
    node is ready."""
    import json
    from dataclasses import asdict

    from cqrs_flow.launcher.status import format_status, system_status

    try:
        topology = load_topology(file)
    except CqrsFlowError as exc:
        _fail(exc)
    rows = asyncio.run(system_status(topology))
    if as_json:
        for row in rows:
            click.echo(json.dumps({k: v for k, v in asdict(row).items() if k != "details"}))
    else:
        click.echo(format_status(rows))
    sys.exit(0 if all(r.state in ("ready", "external") for r in rows) else 1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name")
@click.option(
    "--replica",
    type=click.IntRange(min=1),
    help="Which of a writer's replicas this is (1, 2, ...).",
)
@_log_format_option
def node(file: str, name: str, replica: int | None, log_format: str | None) -> None:
    """Run one node of the topology in the foreground (what `up` spawns). The log level is
    CQRS_FLOW_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR; default INFO)."""
    _set_log_format(log_format)
    from cqrs_flow.contracts.process import ENV_REPLICA
    from cqrs_flow.nodes import run_node
    from cqrs_flow.protobuf.compiler import compile_protos

    if replica is not None:
        os.environ[ENV_REPLICA] = str(replica)
    try:
        topology = load_topology(file)
        protos = compile_protos(list(topology.protos), topology.root)
        run_node(topology, name, protos)
    except CqrsFlowError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


@main.command("test")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("cases", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "-k",
    "keywords",
    multiple=True,
    metavar="TEXT",
    help="Run only the cases whose name contains TEXT (any case); 'not TEXT' leaves them out. "
    "Several -k: a case named by any of them.",
)
@click.option(
    "--junit-xml",
    "junit",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results as JUnit XML to this file (for CI).",
)
def test_command(
    file: str, cases: tuple[Path, ...], keywords: tuple[str, ...], junit: Path | None
) -> None:
    """Run given/when/then cases against the topology's real nodes, started in this process on
    free ports, each case on a fresh system, with the write delay on a virtual clock.

    CASES are case files (docs/TESTING.md); by default FILE's <stem>.cases.yaml and
    <stem>.*.cases.yaml beside it. Exits 0 when every case passed, 1 otherwise."""
    from cqrs_flow.testing import case_files, run_session

    try:
        _load_checked(file)
        files = list(cases) or case_files(Path(file))
        status = run_session(Path(file), files, keywords, junit, click.echo)
    except CqrsFlowError as exc:
        _fail(exc)
    sys.exit(status)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="mermaid",
    show_default=True,
    help="Mermaid flowchart or Graphviz DOT.",
)
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


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("name", metavar="NODE")
def replay(file: str, name: str) -> None:
    """Rebuild the read model of projection NODE from the start of the change log, into a fresh
    collection, while the one it has keeps answering queries; switch to the new one once it has
    caught up (the running projection goes on from there). Needs the system secret `up` uses."""
    import logging

    from cqrs_flow.contracts.projection import projection_plan
    from cqrs_flow.nodes.projection import replay as run_replay
    from cqrs_flow.security.tokens import Credentials, derive_token
    from cqrs_flow.topology.model import ProjectionNode
    from cqrs_flow.topology.problems import Problems

    try:
        topology, protos = _load_checked(file)
        node = topology.nodes.get(name)
        if not isinstance(node, ProjectionNode):
            projections = ", ".join(n.name for n in topology.nodes_of(ProjectionNode))
            raise CqrsFlowError(
                f"'{name}' is not a projection node; projections: {projections or 'none'}"
            )
        plan = projection_plan(topology, node, protos, Problems(topology.located))
        assert plan is not None, "_load_checked checked the projection's contract"
        token = derive_token(_secret_for(topology, "node credentials"), name)
        done = asyncio.run(
            run_replay(
                topology,
                node,
                protos,
                Credentials(name, token),
                click.echo,
                plan,
                logging.getLogger("cqrs_flow.replay"),
            )
        )
    except CqrsFlowError as exc:
        _fail(exc)
    except Exception as exc:  # a handler that raised, a store that went away: say which
        _fail(CqrsFlowError(f"replay of {name} failed: {type(exc).__name__}: {exc}"))
    rate = done.changes / done.seconds if done.seconds else 0.0
    click.echo(
        f"replayed {done.changes:,} changes into generation {done.generation} in "
        f"{done.seconds:.1f}s ({rate:,.0f} changes/s); it is live now, at position "
        f"{done.position:,}"
    )


def _secret_for(topology: Topology, what: str) -> str:
    from cqrs_flow.security.secret import read_secret
    from cqrs_flow.security.tokens import ENV_SECRET

    secret = read_secret(topology)
    if secret is None:
        raise CqrsFlowError(
            f"{what} derive from the system secret, and there is none: set {ENV_SECRET} or "
            "the topology's 'secret' ({env: NAME} or {file: path}) to the secret `up` and the "
            "nodes use"
        )
    return secret


def _broker(topology: Topology, name: str | None):
    from cqrs_flow.topology.model import BrokerNode

    brokers = {b.name: b for b in topology.nodes_of(BrokerNode)}
    if name is None and len(brokers) == 1:
        return next(iter(brokers.values()))
    if name in brokers:
        return brokers[name]
    raise click.BadParameter(
        f"choose one of the brokers: {', '.join(brokers)}", param_hint="'--broker'"
    )


@main.command("mosquitto-auth")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--broker", "broker_name", help="The broker node (default: the only one).")
def mosquitto_auth(file: str, directory: Path, broker_name: str | None) -> None:
    """Write a Mosquitto password file and ACL for the topology's broker into DIR.

    The passwords are the nodes' (and the broker's `clients`'), derived from the system secret:
    run it with the CQRS_FLOW_SECRET (or topology `secret`) that `up` will use. The ACL lets each
    user publish and subscribe only where the topology says.
    """
    from cqrs_flow.security.mosquitto import write_auth_files

    try:
        topology = load_topology(file)
        broker = _broker(topology, broker_name)
        passwords, acl = write_auth_files(
            topology, broker, _secret_for(topology, "MQTT passwords"), directory
        )
    except CqrsFlowError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(CqrsFlowError(f"cannot write {directory}: {exc.strerror or exc}"))
    click.echo(
        f"wrote {passwords} and {acl}; in mosquitto.conf:\n"
        f"  allow_anonymous false\n  password_file {passwords.resolve()}\n  acl_file "
        f"{acl.resolve()}"
    )


@main.command("mqtt-password")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("user")
@click.option("--broker", "broker_name", help="The broker node (default: the only one).")
def mqtt_password(file: str, user: str, broker_name: str | None) -> None:
    """Print the MQTT password of USER, a node or one of the broker's `clients`, for your own
    MQTT client (it logs in with user name USER)."""
    from cqrs_flow.security.mqtt_logins import derive_mqtt_password
    from cqrs_flow.topology.access import mqtt_access

    try:
        topology = load_topology(file)
        broker = _broker(topology, broker_name)
        users = mqtt_access(topology, broker)
        if user not in users:
            raise CqrsFlowError(
                f"'{user}' is not a user of broker '{broker.name}'; users: "
                f"{', '.join(sorted(users))} "
                f"(declare other clients under nodes.{broker.name}.clients)"
            )
        click.echo(derive_mqtt_password(_secret_for(topology, "MQTT passwords"), user))
    except CqrsFlowError as exc:
        _fail(exc)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.argument(
    "entity_spec", nargs=-1, type=click.UNPROCESSED, metavar="--entity NAME FIELD:TYPE..."
)
@click.option(
    "--port-base",
    type=click.IntRange(1024, 65535 - 883),
    default=18000,
    show_default=True,
    help="Ports: broker +883, store write/read +51/+52, reader +53, gateway +80.",
)
@click.option(
    "--name",
    "name",
    help="Project name (proto package, plugin module, topics); default: DIR's name.",
)
@click.option(
    "--optional",
    "optional",
    multiple=True,
    metavar="FIELD[,FIELD]",
    help="Fields that may be left out (null when not given), as FIELD or ENTITY.FIELD; every "
    "other field is required. Given, init asks nothing.",
)
@click.option(
    "--ask/--no-ask",
    default=None,
    help="Ask which fields of each entity are required (default: when run in a terminal "
    "without --optional; otherwise every field not named by --optional is required).",
)
def init(
    directory: Path,
    entity_spec: tuple[str, ...],
    port_base: int,
    name: str | None,
    optional: tuple[str, ...],
    ask: bool | None,
) -> None:
    """Scaffold a new project in DIR (new or empty) that `cqrs-flow up DIR/topology.yaml` runs.

    Describe each entity with --entity NAME (PascalCase) and its fields as NAME:TYPE, TYPE being
    String, Int, Float, Boolean or ID, or a list such as [String] (quote it in a shell), or
    another entity: author:Author stores the key of one Author (author_id) and relates the two
    both ways (Book.author, Author.books). The id key and the updated_at timestamp are added.

    In a terminal, init asks which fields of each entity are required; a required field is
    non-null in the GraphQL schema and the mutations demand it, an optional one may be left out
    and reads as null. In scripts, name the optional ones with --optional.

    \b
    Examples:
      cqrs-flow init bookshop --entity Book title:String year:Int 'tags:[String]'
      cqrs-flow init crm --entity Contact name:String nickname:String --optional nickname
      cqrs-flow init library --entity Author name:String \\
          --entity Book title:String author:Author --entity Loan book:Book member:String
    """
    from cqrs_flow import scaffold

    if str(directory).startswith("-"):
        raise click.UsageError("DIR comes first: cqrs-flow init DIR --entity NAME FIELD:TYPE...")
    try:
        project_name = scaffold.project_name(directory, name)
    except scaffold.ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="'--name'" if name else "'DIR'") from None
    try:
        entities = scaffold.parse_entities(entity_spec)
    except scaffold.UnknownOption as exc:
        options = ["--entity", "--port-base", "--name", "--optional", "--ask", "--no-ask"]
        close = suggest(exc.option, options)
        raise click.NoSuchOption(exc.option, possibilities=[close] if close else []) from None
    except scaffold.ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="'--entity'") from None
    try:
        entities = scaffold.make_optional(entities, optional)
    except scaffold.ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="'--optional'") from None
    if ask is None:  # a person at a terminal is asked; a script says --optional, or nothing
        ask = not optional and sys.stdin.isatty()
    if ask:
        entities = [_ask_required(entity) for entity in entities]
    try:
        project = scaffold.make_project(project_name, entities, port_base)
    except scaffold.ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="'--entity'") from None
    try:
        written = scaffold.write_project(directory, scaffold.render(project))
    except scaffold.ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="'DIR'") from None
    except OSError as exc:
        _fail(CqrsFlowError(f"cannot write {directory}: {exc.strerror or exc}"))
    for path in written:
        click.echo(f"created {path}")
    topology_file = directory / "topology.yaml"
    click.echo(
        f"\nRun it:  cqrs-flow up {topology_file}\n"
        f"GraphQL: http://127.0.0.1:{project.port('gateway')}/graphql (see "
        f"{directory / 'README.md'})"
    )


def _ask_required(entity: Entity) -> Entity:
    """Ask which fields of `entity` are required (a prompt; `all` when the user just presses
    Enter); asked again after an answer naming a field the entity does not have."""
    from cqrs_flow import scaffold

    def answer(text: str) -> Entity:
        try:
            return scaffold.parse_required(entity, text)
        except scaffold.ScaffoldError as exc:
            raise click.UsageError(str(exc)) from None

    fields = ", ".join(f.name for f in entity.fields)
    asked: Entity = click.prompt(
        f"Required fields of {entity.name} ({fields}): all, none, or their names",
        default="all",
        value_proc=answer,
    )
    return asked


def _summary(topology: Topology) -> str:
    order = " -> ".join(
        "{" + ", ".join(b) + "}" if len(b) > 1 else b[0] for b in start_batches(topology)
    )
    return f"{len(topology.nodes)} nodes, {len(topology.commands)} commands; start order: {order}"


if __name__ == "__main__":
    main()
