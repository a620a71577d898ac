"""The launcher's reload (SIGHUP, `up --watch`), through its seams: fake processes and a virtual
clock (test_supervisor.py's), a reloader whose loader returns the next topology. Only the nodes
a change affects are stopped (reverse dependency order, SIGTERM first) and started again
(dependency order); the others keep their process; a topology that does not validate changes
nothing."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from cqrs_flow.errors import Problem, TopologyError
from cqrs_flow.launcher.reload import Reloader
from cqrs_flow.topology import Topology

from .test_supervisor import Run

NODES = ["broker", "store", "reader", "writer", "gateway"]


class Versions:
    """The loader `up` gives the reloader: each load returns the next version set by `then`
    (a topology, or an exception to raise, as a topology that does not validate)."""

    def __init__(self, first: Topology) -> None:
        self.next: Topology | Exception = first
        self.loads = 0

    def then(self, version: Topology | Exception) -> None:
        self.next = version

    def __call__(self) -> tuple[Topology, None]:
        self.loads += 1
        if isinstance(self.next, Exception):
            raise self.next
        return self.next, None


def reloading(first: Topology) -> tuple[Run, Versions]:
    run = Run(first)
    versions = Versions(first)
    run.launcher.reloader = Reloader(versions, first, None)
    return run, versions


async def settle(run: Run, condition: Callable[[], bool]) -> None:
    """Wait (in real time: the reload loads in a thread) until `condition` holds."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the launcher never got there:\n" + run.output.getvalue())


@pytest.fixture
def shipped(edit, parse) -> Callable[..., Topology]:
    return lambda *edits: parse(edit(*edits))


def test_a_reload_restarts_only_the_affected_nodes_in_dependency_order(shipped):
    run, versions = reloading(shipped())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        # the writer's delay: the writer, and the gateway that waits for its reports
        versions.then(shipped(("    delay: 3s", "    delay: 1s")))
        run.launcher.request_reload("topology.yaml")
        await settle(run, lambda: any(line.startswith("reloaded:") for line in run.lines))
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert {n: len(run.nodes.made[n]) for n in NODES} == {
        "broker": 1,
        "store": 1,
        "reader": 1,
        "writer": 2,
        "gateway": 2,
    }
    starts = run.nodes.events("start")
    assert starts[5:] == ["writer", "gateway"]  # after the first start: dependency order
    first_stops = [(event, name) for _, event, name in run.nodes.log if event == "SIGTERM"][:2]
    assert first_stops == [("SIGTERM", "gateway"), ("SIGTERM", "writer")]  # reverse order
    assert "topology changed (topology.yaml): restarting writer, gateway" in run.lines
    assert "  writer: its settings changed" in run.lines
    assert run.launcher.topology.nodes["writer"].delay == 1.0
    # the final stop still goes in reverse dependency order, with the new processes
    final = [name for _, event, name in run.nodes.log if event == "SIGTERM"][2:]
    assert final == ["gateway", "writer", "reader", "store", "broker"]


def test_a_topology_that_does_not_validate_is_reported_and_changes_nothing(shipped):
    run, versions = reloading(shipped())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        versions.then(
            TopologyError(
                [
                    Problem(
                        52, "nodes.writer.kind", "unknown kind 'writter'; did you mean 'writer'?"
                    )
                ],
                "topology.yaml",
            )
        )
        run.launcher.request_reload("topology.yaml")
        await settle(run, lambda: any("not reloaded" in line for line in run.lines))
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert all(len(run.nodes.made[n]) == 1 for n in NODES)
    assert (
        "error: topology.yaml:52: nodes.writer.kind: unknown kind 'writter'; did you mean "
        "'writer'?" in run.lines
    )
    assert (
        "error: topology.yaml: 1 problem — not reloaded, still running the previous version"
        in run.lines
    )
    # nothing was signalled before the final stop
    assert [name for _, event, name in run.nodes.log if event == "SIGTERM"] == NODES[::-1]


def test_added_and_removed_nodes_are_started_and_stopped(shipped):
    audit = (
        "  gateway:\n",
        "  audit:\n    kind: writer\n    broker: broker\n    store: store.write\n"
        "    commands: [add_contact]\n\n  gateway:\n",
    )
    run, versions = reloading(shipped())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        versions.then(shipped(audit))
        run.launcher.request_reload("SIGHUP")
        await settle(run, lambda: sum(line.startswith("reloaded:") for line in run.lines) == 1)
        assert run.nodes.latest("audit").returncode is None
        versions.then(shipped())
        run.launcher.request_reload("SIGHUP")
        await settle(run, lambda: sum(line.startswith("reloaded:") for line in run.lines) == 2)
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert "topology changed (SIGHUP): restarting broker, store, gateway; adding audit" in run.lines
    assert run.nodes.latest("audit").signals[0] == "SIGTERM"
    assert "audit" not in run.launcher.processes
    assert len(run.nodes.made["reader"]) == 1 and len(run.nodes.made["writer"]) == 1


def test_a_node_that_cannot_start_again_is_said_and_started_at_the_next_reload(shipped):
    run, versions = reloading(shipped())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        run.nodes.exit_at_start["reader"] = 2  # its new settings make it fail
        versions.then(shipped(("    plugins: [plugins.contacts.ReverseName]", "    plugins: []")))
        run.launcher.request_reload("topology.yaml")
        await settle(run, lambda: any("not running after the reload" in x for x in run.lines))
        assert run.nodes.latest("gateway").returncode is None  # untouched: not affected
        del run.nodes.exit_at_start["reader"]  # fixed
        run.launcher.request_reload("SIGHUP")
        await settle(run, lambda: any(line.startswith("reloaded:") for line in run.lines))
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert any(
        line.startswith("error: node 'reader' (reader) exited with status 2 before it was ready")
        for line in run.lines
    )
    assert (
        "error: reader not running after the reload; fix the topology and save it again (or "
        "send SIGHUP)" in run.lines
    )
    assert "topology changed (SIGHUP): starting reader again" in run.lines
    # not restarted by its policy in between: started by the reloads only
    assert len(run.nodes.made["reader"]) == 3
    assert run.nodes.latest("reader").signals == ["SIGTERM", "SIGKILL"]  # at the final stop
    assert run.launcher.ready_order == NODES


def test_sighup_reloads_instead_of_ending_up(shipped):
    run, versions = reloading(shipped())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        os.kill(os.getpid(), signal.SIGHUP)
        await settle(run, lambda: any("reloaded (SIGHUP)" in line for line in run.lines))
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert versions.loads == 1
    assert "topology.yaml reloaded (SIGHUP): no node affected" in run.lines
    assert all(len(run.nodes.made[n]) == 1 for n in NODES)
