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

A reload (SIGHUP, or a change `up --watch` saw; reload.py says which nodes it affects) stops the
affected nodes in reverse dependency order, each as at the end (SIGTERM: a writer applies the
commands it holds), and starts them again, and added ones, in dependency order with the same
probes; a topology that does not validate is reported and changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Protocol

from cqrs_flow.contracts.process import ENV_GO_FD, ENV_RESTARTS, HELD
from cqrs_flow.errors import CqrsFlowError, StartError, TopologyError
from cqrs_flow.launcher.ports import ports_in_use
from cqrs_flow.launcher.printer import Printer
from cqrs_flow.launcher.probes import Probe
from cqrs_flow.launcher.process import NodeProcess, Process
from cqrs_flow.launcher.reload import Reload, Reloader
from cqrs_flow.launcher.watch import Debouncer, FileWatcher
from cqrs_flow.security.mqtt_logins import MqttLogin, derive_mqtt_password, mqtt_launch_environment
from cqrs_flow.security.secret import read_secret, secret_variables
from cqrs_flow.security.tokens import (
    ENV_SECRET,
    guests_environment,
    launch_environment,
    new_secret,
)
from cqrs_flow.topology.access import mqtt_access
from cqrs_flow.topology.graph import launch_sorter, needed_by, start_order
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
        reloader: Reloader | None = None,
        watch: bool = False,
        preflight: Callable[[], None] | None = None,
    ) -> None:
        self.topology = topology
        # Checks of the topology run once its processes are spawned, held (see run).
        self.preflight = preflight
        self.only = None if only is None else set(only)
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
        # a reader placed in its gateway's process runs wherever that process runs
        self.local |= {topology.host_of(n) for n in self.local}
        self.local |= {g for n in list(self.local) for g in topology.guests_of(n)}
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
        # Reloading: the running version and loading the next (None: SIGHUP is only reported),
        # the requests not served yet (why each was asked), and the nodes a reload could not
        # start (each later reload tries them again).
        self.reloader = reloader
        self.watch = watch
        self._reloads: asyncio.Queue[str] = asyncio.Queue()
        self._unstarted: set[str] = set()
        self._watcher: FileWatcher | None = None

    def request_reload(self, why: str) -> None:
        """Load the topology again once the launcher is free to (SIGHUP, a watched file)."""
        self._reloads.put_nowait(why)

    async def run(self) -> int:
        """Start everything, run until told to stop or a node exits; the exit status for `up`."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload, "SIGHUP")
        self._set_names()
        status = 0
        watching: list[asyncio.Task[None]] = []
        try:
            started = self.clock()
            await self._preflight()
            watching = self._start_watching()
            await self._start_all()
            self.printer.system(self._ready_line(self.clock() - started))
            status = await self._supervise()
        except _Interrupted:
            self.printer.system("interrupted during start-up")
        except StartError as exc:
            self.printer.system(f"error: {exc}")
            status = 1
        finally:
            for task in watching:
                task.cancel()
            await asyncio.gather(*watching, return_exceptions=True)
            await self._stop_all()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return status

    def _set_names(self) -> None:
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

    def _start_watching(self) -> list[asyncio.Task[None]]:
        """With --watch: watch the files the topology uses, one reload per burst of changes."""
        if not self.watch or self.reloader is None:
            return []
        debouncer = Debouncer()
        self._watcher = FileWatcher(self.reloader.watched, debouncer)

        async def reload_on_change() -> None:
            while True:
                changed = await debouncer.next()
                self.request_reload(", ".join(sorted(self._shown(p) for p in changed)))

        self.printer.system(
            f"watching {len(self._watcher.files)} files of {self.topology.source.name} for changes"
        )
        return [
            asyncio.ensure_future(self._watcher.run()),
            asyncio.ensure_future(reload_on_change()),
        ]

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.topology.root.resolve()))
        except ValueError:
            return str(path)

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

    async def _preflight(self) -> None:
        """Check what must hold before anything starts: the ports free (StartError), then, with
        a `preflight` (the topology against its protos, schema and plugins: a third of a
        second of CPU), that too, with every process already spawned, held, so that the
        checks overlap the processes' imports instead of coming before them. Nothing has
        connected or listened yet but their metrics: if a check fails, the held processes are
        killed unheard (their own report of the same problem is not printed) and the error
        goes up, as if nothing had been spawned."""
        in_use = self.port_check(self.topology, sorted(self.local))
        if in_use:
            raise StartError("; ".join(in_use))
        check, self.preflight = self.preflight, None
        if check is None:
            return
        await self._spawn_held(self.local | self.remote)
        try:
            check()
        except BaseException:
            held = sorted(self._held)
            self.printer.mute(held)
            for name in held:
                self.processes[name].send_signal(signal.SIGKILL)
            await asyncio.gather(*(self.processes[name].wait() for name in held))
            for name in held:
                del self.processes[name], self._node_of[name]
            self._held.clear()
            raise

    async def _start_all(self, names: Collection[str] | None = None) -> None:
        """Start the nodes (`names`, or all) in dependency order, each once those it depends on
        are ready; the others are taken as running."""
        graph = launch_sorter(self.topology)
        wanted = self.local | self.remote if names is None else set(names)
        starting: dict[asyncio.Task[None], str] = {}
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            await self._spawn_held(wanted)
            while graph.is_active():
                batch = sorted(graph.get_ready())
                for name in [n for n in batch if n not in wanted]:
                    graph.done(name)  # runs elsewhere, runs already, or nothing here needs it
                    batch.remove(name)
                if not batch and not starting:
                    continue  # what was skipped may have made others ready
                here = [self._placed(n) for n in batch if n in self.local]
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

    async def _spawn_held(self, wanted: Collection[str]) -> None:
        """Spawn the process of every node of `wanted` run here and not running yet, held (see
        the module's docstring)."""
        for name in self.topology.nodes:
            node = self.topology.nodes[name]
            if name not in wanted or name not in self.local:
                continue
            if isinstance(node, BrokerNode) and node.external:
                continue
            for instance, replica in self._instances(name):
                if instance not in self.processes:
                    await self._spawn(name, instance, replica, held=True)
                    self._held.add(instance)

    def _instances(self, name: str) -> list[tuple[str, int | None]]:
        """The processes of a node run here: (process name, replica number or None); a node
        run in another's process has none of its own."""
        node = self.topology.nodes[name]
        if self.topology.host_of(name) != name:
            return []
        if isinstance(node, WriterNode) and node.replicas > 1:
            return [(f"{name}.{i}", i) for i in range(1, node.replicas + 1)]
        return [(name, None)]

    def _placed(self, name: str) -> str:
        """The node's name, and whose process it runs in if not its own."""
        host = self.topology.host_of(name)
        return name if host == name else f"{name} (in {host}'s process)"

    async def _start_node(self, name: str) -> None:
        node = self.topology.nodes[name]
        if isinstance(node, BrokerNode) and node.external:
            self.printer.system(f"waiting for {name} ({node.kind}, external: {node.url})")
            await self._wait_ready(name, node, None)
        elif name in self.remote:
            where = ", ".join(str(address) for _, address in node.listens)
            self.printer.system(f"waiting for {name} ({node.kind}, on another host: {where})")
            await self._wait_ready(name, node, None)
        elif (host := self.topology.host_of(name)) != name:
            # a guest: its host's process runs it (and the host, which waits for it)
            await self._start_process(host, host, None, ready=name)
        elif name in self.processes and self.topology.guests_of(name):
            # started with its guest: wait for the host itself too
            await self._wait_ready(name, node, self.processes[name])
        else:
            await asyncio.gather(
                *(
                    self._start_process(name, instance, replica)
                    for instance, replica in self._instances(name)
                )
            )

    async def _start_process(
        self, name: str, instance: str, replica: int | None, ready: str | None = None
    ) -> None:
        """Let go of the held process of node `name` (`instance` names it), or spawn one, and
        wait until it is ready (`ready`: until that node of the process is: a guest of `name`)."""
        if instance in self._held:
            self._held.discard(instance)
            process = self.processes[instance]
            process.release()
        else:
            process = await self._spawn(name, instance, replica)
        for guest in self.topology.guests_of(name) if ready is None else [ready]:
            await self._wait_ready(guest, self.topology.nodes[guest], process)
        if ready is None:
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
            **guests_environment(self.topology, name, self.secret),
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
        reload_wait = asyncio.ensure_future(self._reloads.get())
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
                    [*waits, *restarts, stop_wait, reload_wait],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in waits:
                    task.cancel()
                if stop_wait in done:
                    self.printer.system("stopping")
                    return 0
                if reload_wait in done:
                    why = [reload_wait.result()]
                    while not self._reloads.empty():  # asked again meanwhile: one reload serves all
                        why.append(self._reloads.get_nowait())
                    await self._reload(", ".join(dict.fromkeys(why)), restarts)
                    reload_wait = asyncio.ensure_future(self._reloads.get())
                    continue
                for task in [t for t in restarts if t in done]:
                    restarts.pop(task)
                    if not task.result():  # the node may not be restarted
                        return 1
                for task in [t for t in waits if t in done]:
                    name = waits[task]
                    restarts[asyncio.ensure_future(self._restart(name))] = name
        finally:
            stop_wait.cancel()
            reload_wait.cancel()
            for task in restarts:
                task.cancel()
            await asyncio.gather(*restarts, return_exceptions=True)

    # -- reload --------------------------------------------------------------------------------

    async def _reload(self, why: str, restarts: dict[asyncio.Task[bool], str]) -> None:
        """Load the topology again; if it validates, restart the nodes the change affects (and
        start added ones, stop removed ones); if not, say why and change nothing."""
        if self.reloader is None:
            self.printer.system(f"{why}: this launcher cannot reload its topology; ignored")
            return
        source = self.topology.source.name
        try:
            step = await asyncio.to_thread(self.reloader.next)
        except TopologyError as exc:
            for problem in exc.problems:
                self.printer.system(f"error: {problem.format(source)}")
            count = len(exc.problems)
            self.printer.system(
                f"error: {source}: {count} problem{'s' if count != 1 else ''} — not reloaded, "
                "still running the previous version"
            )
            return
        except Exception as exc:  # a proto that does not compile, a file that cannot be read
            message = str(exc) if isinstance(exc, CqrsFlowError) else f"{type(exc).__name__}: {exc}"
            self.printer.system(
                f"error: {message} — not reloaded, still running the previous version"
            )
            return
        affected = step.affected
        if not affected and not self._unstarted:
            self._adopt(step)
            self.printer.system(f"{source} reloaded ({why}): no node affected")
            return
        parts = []
        if affected.restarted:
            parts.append(f"restarting {', '.join(self._in_order(set(affected.restarted)))}")
        if affected.added:
            parts.append(f"adding {', '.join(affected.added)}")
        if affected.removed:
            parts.append(f"removing {', '.join(affected.removed)}")
        if self._unstarted:
            parts.append(f"starting {', '.join(sorted(self._unstarted))} again")
        self.printer.system(f"topology changed ({why}): {'; '.join(parts)}")
        for name, reason in affected.restarted.items():
            self.printer.system(f"  {name}: {reason}")
        # What a reload could not start before is started again, from a clean slate: a restart
        # under way of a node about to be stopped is this reload's to finish.
        stopping = affected.to_stop | self._unstarted
        for task, process in list(restarts.items()):
            if self._node_of[process][0] in stopping:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                restarts.pop(task)
        await self._stop_all(stopping)
        for process, (node, _) in list(self._node_of.items()):
            if node in stopping:
                del self.processes[process], self._node_of[process]
                self._held.discard(process)
        self._adopt(step)
        await self._start_again(affected.to_start | self._unstarted)
        running = {node for node, _ in self._node_of.values()}
        self.ready_order = [n for n in start_order(self.topology) if n in running]

    def _adopt(self, step: Reload) -> None:
        """`step` is the running version from now on."""
        assert self.reloader is not None
        self.reloader.accept(step)
        self.topology = step.topology
        self.local = set(self.topology.nodes) if self.only is None else self.only
        self.local &= set(self.topology.nodes)
        self.remote = needed_by(self.topology, self.local) - self.local
        self._unstarted &= self.local
        if self._watcher is not None:
            self._watcher.watch(self.reloader.watched)
        self._set_names()

    async def _start_again(self, names: set[str]) -> None:
        """Start `names` (of the nodes run here) in dependency order with their probes; what
        cannot start is said, and tried again at the next reload."""
        names &= self.local
        self._unstarted = set(names)
        in_use = self.port_check(self.topology, sorted(names))
        if in_use:
            for line in in_use:
                self.printer.system(f"error: {line}")
            self.printer.system(
                f"error: {', '.join(sorted(names))} not started; free the ports and reload"
            )
            return
        started = self.clock()
        try:
            await self._start_all(names)
        except StartError as exc:
            self.printer.system(f"error: {exc}")
        except _Interrupted:
            return  # stopping: the supervisor sees it next
        self._unstarted = {
            n
            for n in names
            if not any(
                node == n and self.processes[p].returncode is None
                for p, (node, _) in self._node_of.items()
            )
        }
        # Not restarted by its policy: the topology made it fail, the next reload starts it.
        await self._stop_all(self._unstarted)
        for process, (node, _) in list(self._node_of.items()):
            if node in self._unstarted:
                del self.processes[process], self._node_of[process]
                self._held.discard(process)
        if self._unstarted:
            self.printer.system(
                f"error: {', '.join(sorted(self._unstarted))} not running after the reload; "
                "fix the topology and save it again (or send SIGHUP)"
            )
        else:
            self.printer.system(
                f"reloaded: {', '.join(self._in_order(names))} ready in "
                f"{self.clock() - started:.1f}s"
            )

    def _in_order(self, names: set[str]) -> list[str]:
        """`names` in the topology's start order (unknown ones last)."""
        order = {n: i for i, n in enumerate(start_order(self.topology))}
        return sorted(names, key=lambda n: (order.get(n, len(order)), n))

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

    async def _stop_all(self, nodes: Collection[str] | None = None) -> None:
        """Stop nodes (`nodes`, or all) in reverse start order (a node's replicas together),
        each given the grace period before SIGKILL. External and remote nodes are not ours to
        stop."""
        order = {node: i for i, node in enumerate(reversed(self.ready_order))}
        groups: dict[int, list[str]] = {}
        for name, (node, _) in self._node_of.items():  # nodes not ready yet go first
            if nodes is None or node in nodes:
                groups.setdefault(order.get(node, -1), []).append(name)
        for _, names in sorted(groups.items()):
            running = [n for n in names if self.processes[n].returncode is None]
            if running:
                self.printer.system(f"stopping {', '.join(running)}")
            await asyncio.gather(*(self._stop_process(n) for n in names))
        if self.processes and nodes is None:
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
