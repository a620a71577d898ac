"""`cqrs-flow up`: start every node of a topology in dependency order, then stop them in reverse.

A node starts once all the nodes it depends on are ready (by probe, never by sleeping); nodes
whose dependencies are met start together. Every process is spawned at once, held: it imports
its libraries and loads the topology while the nodes before it start, and sets up (connects,
listens) when the launcher lets it go on, so that start-up pays one import, not one per stage.
A node that exits is restarted as its `restart` policy says; Ctrl-C or SIGTERM, or a node that
may not be restarted, stops the nodes that run, latest first: SIGTERM, then SIGKILL after the
grace period.

With `only` (`up --only`), this host runs just those nodes: the nodes they depend on run on
other hosts, and are waited for by probing them where the topology says they listen; nodes
nobody here depends on are left alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol

from cqrs_flow.contracts.process import ENV_GO_FD, ENV_RESTARTS, HELD
from cqrs_flow.errors import CqrsFlowError, StartError
from cqrs_flow.launcher.ports import ports_in_use
from cqrs_flow.launcher.printer import Printer
from cqrs_flow.launcher.probes import Probe
from cqrs_flow.launcher.process import NodeProcess, Process
from cqrs_flow.security.mqtt_logins import MqttLogin, derive_mqtt_password, mqtt_launch_environment
from cqrs_flow.security.secret import read_secret, secret_variables
from cqrs_flow.security.tokens import ENV_SECRET, launch_environment, new_secret
from cqrs_flow.topology.access import mqtt_access
from cqrs_flow.topology.graph import needed_by, sorter
from cqrs_flow.topology.model import BrokerNode, GatewayNode, Node, Topology, WriterNode
from cqrs_flow.topology.problems import suggest

__all__ = ["Launcher"]

# The first restart in a row is immediate (a writer's commands wait for it); the second waits
# RESTART_BACKOFF seconds, and each one after that twice as long as the one before.
RESTART_BACKOFF = 0.5
MAX_RESTART_BACKOFF = 10.0
STABLE_AFTER = 30.0  # seconds of running after which a node's restarts in a row count from 0 again


class ReadinessProbe(Protocol):
    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


# The seams of the launcher (the defaults are the real things; tests pass fakes):
# a process of a node, from its name, argv, environment and the printer;
ProcessFactory = Callable[[str, list[str], Mapping[str, str], Printer], Process]
# a node's readiness probe, from the node, its process (None if not ours), the broker login to
# probe with, and the topology;
ProbeFactory = Callable[[Node, Process | None, MqttLogin | None, Topology], ReadinessProbe]
# and time: a clock in seconds, and the sleep every wait of the launcher goes through.
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# and the ports: what is in use of those the given nodes will listen on, one line each.
PortCheck = Callable[[Topology, Collection[str]], list[str]]


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM during start-up."""


class Launcher:
    def __init__(
        self,
        topology: Topology,
        printer: Printer | None = None,
        env: Mapping[str, str] | None = None,
        process_factory: ProcessFactory = NodeProcess,
        clock: Clock = time.monotonic,
        only: Collection[str] | None = None,
        sleep: Sleep = asyncio.sleep,
        probe_factory: ProbeFactory = Probe,
        port_check: PortCheck = ports_in_use,
    ) -> None:
        self.topology = topology
        self.local = set(topology.nodes if only is None else only)  # the nodes this host runs
        unknown = self.local - set(topology.nodes)
        if unknown:
            hints = [
                f"did you mean '{m}'?"
                for u in sorted(unknown)
                if (m := suggest(u, topology.nodes)) is not None
            ]
            raise CqrsFlowError(
                f"no node {', '.join(map(repr, sorted(unknown)))} in {topology.source}"
                + (f" ({'; '.join(hints)})" if hints else "")
                + f"; its nodes: {', '.join(topology.nodes)}"
            )
        self.remote = needed_by(topology, self.local) - self.local  # waited for, run elsewhere
        self.printer = printer or Printer()
        self.env = dict(os.environ if env is None else env)
        self.process_factory = process_factory
        self.probe_factory = probe_factory
        self.port_check = port_check
        self.clock = clock
        self.sleep = sleep
        # The secret exists only in this process; each node gets just its own credentials.
        configured = read_secret(topology, self.env)
        if only is not None and configured is None:
            raise CqrsFlowError(
                "nodes on several hosts must share one secret, and `up --only` has none: set "
                f"{ENV_SECRET} or the topology's `secret` ({{env: NAME}} or {{file: path}}) to the "
                "same value on every host (for example: "
                f"export {ENV_SECRET}=$(openssl rand -hex 32))"
            )
        self.secret = configured or new_secret()
        for name in secret_variables(topology):
            self.env.pop(name, None)
        # By process name: the node's, or <node>.<replica> for a writer's replicas.
        self.processes: dict[str, Process] = {}
        self._node_of: dict[str, tuple[str, int | None]] = {}  # process name -> node, replica
        self.ready_order: list[str] = []
        self._held: set[str] = set()  # processes spawned ahead of their turn, not let go yet
        self._stop = asyncio.Event()
        self._restarts: dict[str, tuple[int, float]] = {}  # process -> (in a row, last restart)
        self.restarted: dict[str, int] = {}  # process -> restarts in all (for its metrics)
        self._stop_requested_at = 0.0

    async def run(self) -> int:
        """Start everything, run until told to stop or a node exits; the exit status for `up`."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        self.printer.set_names(
            [
                "cqrs-flow",
                *(
                    instance
                    for n in self.topology.nodes
                    if n in self.local | self.remote
                    for instance, _ in self._instances(n)
                ),
            ]
        )
        status = 0
        try:
            in_use = self.port_check(self.topology, sorted(self.local))
            if in_use:
                raise StartError("; ".join(in_use))
            started = self.clock()
            await self._start_all()
            self.printer.system(self._ready_line(self.clock() - started))
            status = await self._supervise()
        except _Interrupted:
            self.printer.system("interrupted during start-up")
        except StartError as exc:
            self.printer.system(f"error: {exc}")
            status = 1
        finally:
            await self._stop_all()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return status

    def _on_signal(self) -> None:
        """The first Ctrl-C stops gracefully; another one a second or more later (an impatient
        user, not a supervisor signalling the whole process group) kills what is left at once."""
        if not self._stop.is_set():
            self._stop.set()
            self._stop_requested_at = self.clock()
            return
        if self.clock() - self._stop_requested_at < 1.0:
            return
        self.printer.system("stopping now (second interrupt): killing every node")
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)

    # -- start ---------------------------------------------------------------------------------

    async def _start_all(self) -> None:
        graph = sorter(self.topology)
        starting: dict[asyncio.Task[None], str] = {}
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            await self._spawn_held()
            while graph.is_active():
                batch = sorted(graph.get_ready())
                for name in [n for n in batch if n not in self.local | self.remote]:
                    graph.done(name)  # runs elsewhere, and nothing here needs it
                    batch.remove(name)
                if not batch and not starting:
                    continue  # what was skipped may have made others ready
                here = [n for n in batch if n in self.local]
                if here:
                    self.printer.system(f"starting {', '.join(here)}")
                for name in batch:
                    starting[asyncio.ensure_future(self._start_node(name))] = name
                done, _ = await asyncio.wait(
                    [*starting, stop_wait], return_when=asyncio.FIRST_COMPLETED
                )
                if stop_wait in done:
                    raise _Interrupted()
                for task in [t for t in starting if t in done]:
                    name = starting.pop(task)
                    task.result()  # raises StartError
                    self.ready_order.append(name)
                    graph.done(name)
        finally:
            stop_wait.cancel()
            for task in starting:
                task.cancel()
            await asyncio.gather(*starting, return_exceptions=True)

    async def _spawn_held(self) -> None:
        """Spawn the process of every node run here, held (see the module's docstring)."""
        for name in self.topology.nodes:
            node = self.topology.nodes[name]
            if name not in self.local or (isinstance(node, BrokerNode) and node.external):
                continue
            for instance, replica in self._instances(name):
                await self._spawn(name, instance, replica, held=True)
                self._held.add(instance)

    def _instances(self, name: str) -> list[tuple[str, int | None]]:
        """The processes of a node run here: (process name, replica number or None)."""
        node = self.topology.nodes[name]
        if isinstance(node, WriterNode) and node.replicas > 1:
            return [(f"{name}.{i}", i) for i in range(1, node.replicas + 1)]
        return [(name, None)]

    async def _start_node(self, name: str) -> None:
        node = self.topology.nodes[name]
        if isinstance(node, BrokerNode) and node.external:
            self.printer.system(f"waiting for {name} ({node.kind}, external: {node.url})")
            await self._wait_ready(name, node, None)
        elif name in self.remote:
            where = ", ".join(str(address) for _, address in node.listens)
            self.printer.system(f"waiting for {name} ({node.kind}, on another host: {where})")
            await self._wait_ready(name, node, None)
        else:
            await asyncio.gather(
                *(
                    self._start_process(name, instance, replica)
                    for instance, replica in self._instances(name)
                )
            )

    async def _start_process(self, name: str, instance: str, replica: int | None) -> None:
        """Let go of the held process of node `name` (`instance` names it), or spawn one, and
        wait until it is ready."""
        if instance in self._held:
            self._held.discard(instance)
            process = self.processes[instance]
            process.release()
        else:
            process = await self._spawn(name, instance, replica)
        await self._wait_ready(instance, self.topology.nodes[name], process)

    async def _spawn(
        self, name: str, instance: str, replica: int | None, held: bool = False
    ) -> Process:
        """Spawn one process of node `name`; `held`, it waits for `release` before it sets up."""
        argv = [sys.executable, "-m", "cqrs_flow", "node", str(self.topology.source), name]
        if replica is not None:
            argv += ["--replica", str(replica)]
        env = {
            **self.env,
            **launch_environment(self.topology, name, self.secret),
            **mqtt_launch_environment(self.topology, name, self.secret),
            ENV_RESTARTS: str(self.restarted.get(instance, 0)),
        }
        if held:
            env[ENV_GO_FD] = HELD
        process = self.process_factory(instance, argv, env, self.printer)
        self.processes[instance] = process
        self._node_of[instance] = (name, replica)
        await process.start()
        return process

    async def _wait_ready(self, instance: str, node: Node, process: Process | None) -> None:
        """Probe until the node answers (StartError if it exits or ready_timeout passes first)."""
        began = self.clock()
        probe = self.probe_factory(node, process, self._probe_login(node), self.topology)
        interval = 0.02
        try:
            while True:
                if process is not None and process.returncode is not None:
                    await process.wait()
                    raise StartError(
                        f"node '{instance}' ({node.kind}) exited with status "
                        f"{process.returncode} before it was ready" + _last_words(process)
                    )
                if await probe.ready():
                    self.printer.system(f"{instance} ready in {self.clock() - began:.2f}s")
                    return
                if self.clock() - began > self.topology.ready_timeout:
                    if isinstance(node, BrokerNode) and node.external:
                        what = f"external {node.kind} '{instance}' at {node.url} was not reachable"
                    elif process is None:
                        what = f"{node.kind} '{instance}' on another host was not reachable"
                    else:
                        what = f"node '{instance}' ({node.kind}) was not ready"
                    raise StartError(
                        f"{what} after {self.topology.ready_timeout:g}s (ready_timeout)"
                        + (_last_words(process) if process else "")
                    )
                await self.sleep(interval)
                # A probe is cheap; readiness seen sooner is start-up saved.
                interval = min(interval * 1.5, 0.05)
        finally:
            await probe.close()

    def _probe_login(self, node: Node) -> MqttLogin | None:
        """A broker is probed by logging in as one of its users: a broker that does not know
        them is found now, not by nodes failing one by one."""
        if not isinstance(node, BrokerNode):
            return None
        users = sorted(mqtt_access(self.topology, node))
        return MqttLogin(users[0], derive_mqtt_password(self.secret, users[0])) if users else None

    def _ready_line(self, elapsed: float) -> str:
        gateways = [g for g in self.topology.nodes_of(GatewayNode) if g.name in self.local]
        where = "; ".join(
            f"GraphQL endpoint {g.url}"
            + (f" (playground: http://{g.listen.target}/)" if g.playground else "")
            for g in gateways
        )
        count = len(self.local)
        here = (
            ""
            if count == len(self.topology.nodes)
            else f" on this host (of {len(self.topology.nodes)})"
        )
        return f"all {count} nodes ready{here} in {elapsed:.1f}s" + (f" — {where}" if where else "")

    # -- run and stop --------------------------------------------------------------------------

    async def _supervise(self) -> int:
        """Run until Ctrl-C/SIGTERM (status 0), restarting nodes that exit as their `restart`
        policy says; a node that exits and may not be restarted stops the system (status 1)."""
        stop_wait = asyncio.ensure_future(self._stop.wait())
        # Each restart runs on its own: nodes that died together (a host's worth, say) come back
        # together, and one that waits for a peer to be ready does not hold up the peer's restart.
        restarts: dict[asyncio.Task[bool], str] = {}
        try:
            while True:
                waits = {
                    asyncio.ensure_future(p.wait()): name
                    for name, p in self.processes.items()
                    if name not in restarts.values()
                }
                done, _ = await asyncio.wait(
                    [*waits, *restarts, stop_wait], return_when=asyncio.FIRST_COMPLETED
                )
                for task in waits:
                    task.cancel()
                if stop_wait in done:
                    self.printer.system("stopping")
                    return 0
                for task in [t for t in restarts if t in done]:
                    restarts.pop(task)
                    if not task.result():  # the node may not be restarted
                        return 1
                for task in [t for t in waits if t in done]:
                    name = waits[task]
                    restarts[asyncio.ensure_future(self._restart(name))] = name
        finally:
            stop_wait.cancel()
            for task in restarts:
                task.cancel()
            await asyncio.gather(*restarts, return_exceptions=True)

    async def _restart(self, name: str) -> bool:
        """Restart process `name` (a node, or one replica), which exited, if its policy allows;
        False when it may not."""
        node_name, replica = self._node_of[name]
        node, code = self.topology.nodes[node_name], self.processes[name].returncode
        count, last_start = self._restarts.get(name, (0, 0.0))
        if self.clock() - last_start > STABLE_AFTER:
            count = 0  # it ran long enough: a new crash starts a new series
        if node.restart == "never" or (node.restart == "on-failure" and code == 0):
            self.printer.system(
                f"error: node '{name}' exited with status {code} (restart: {node.restart}); "
                "stopping the others"
            )
            return False
        if count >= node.restart_limit:
            self.printer.system(
                f"error: node '{name}' exited with status {code} after {count} restarts in a "
                f"row (restart_limit {node.restart_limit}); stopping the others"
            )
            return False
        backoff = min(RESTART_BACKOFF * 2 ** (count - 1), MAX_RESTART_BACKOFF) if count else 0.0
        when = f"in {backoff:g}s" if backoff else "now"
        self.printer.system(
            f"node '{name}' exited with status {code}; restarting it {when} "
            f"(restart {count + 1} of at most {node.restart_limit})"
        )
        if backoff:
            await _first(self.sleep(backoff), self._stop.wait())
        if self._stop.is_set():
            return True  # stopping instead: the caller sees the stop request next
        self._restarts[name] = (count + 1, self.clock())
        self.restarted[name] = self.restarted.get(name, 0) + 1
        try:
            await self._start_process(node_name, name, replica)
        except StartError as exc:  # it has exited: the loop sees it
            self.printer.system(f"restart of '{name}' failed: {exc}")
        return True

    def _grace(self, name: str) -> float:
        """A writer finishes the commands it holds before it exits: give it their delay too."""
        node = self.topology.nodes[self._node_of[name][0]]
        extra = node.delay + 2.0 if isinstance(node, WriterNode) else 0.0
        return max(self.topology.stop_timeout, extra)

    async def _stop_all(self) -> None:
        """Stop nodes in reverse start order (a node's replicas together), each given the grace
        period before SIGKILL. External and remote nodes are not ours to stop."""
        order = {node: i for i, node in enumerate(reversed(self.ready_order))}
        groups: dict[int, list[str]] = {}
        for name, (node, _) in self._node_of.items():  # nodes not ready yet go first
            groups.setdefault(order.get(node, -1), []).append(name)
        for _, names in sorted(groups.items()):
            running = [n for n in names if self.processes[n].returncode is None]
            if running:
                self.printer.system(f"stopping {', '.join(running)}")
            await asyncio.gather(*(self._stop_process(n) for n in names))
        if self.processes:
            self.printer.system("all nodes stopped")

    async def _stop_process(self, name: str) -> None:
        """SIGTERM process `name`, SIGKILL it if it has not exited within its grace period, and
        collect its exit status. Safe to call on a process that exited, or never started."""
        process = self.processes[name]
        if process.pid is None:
            return
        if process.returncode is None:
            grace = self._grace(name)
            process.send_signal(signal.SIGTERM)
            await _first(process.exited(), self.sleep(grace))
            if process.returncode is None:
                self.printer.system(f"{name} did not stop within {grace:g}s; killing it")
        process.send_signal(signal.SIGKILL)  # also whatever the node started and left behind
        await process.wait()


async def _first(*waits: Awaitable[object]) -> None:
    """Wait until the first of `waits` is done, and cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _last_words(process: Process) -> str:
    """The node's last log lines that look like the reason it failed."""
    lines = [line for line in process.output if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "CRITICAL", "error:"))]
    tail = (errors or lines)[-3:]
    return (": " + " / ".join(line.strip() for line in tail)) if tail else ""
