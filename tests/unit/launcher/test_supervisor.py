"""The launcher's supervision, through its seams: fake processes (they start, become ready, exit
on command and record the signals they get), a fake probe, and a virtual clock whose sleep moves
time forward instead of waiting. No process is started and nothing sleeps: start order by
batches, restarts by policy with their back-off, the restart limit, a node failing at start-up,
and stopping in reverse order of readiness, SIGTERM first and SIGKILL after the grace period."""

from __future__ import annotations

import asyncio
import io
import itertools
import signal
from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest

from cqrs_flow.contracts.process import ENV_GO_FD, HELD
from cqrs_flow.errors import CqrsFlowError
from cqrs_flow.launcher import Launcher, Printer
from cqrs_flow.topology import Topology

_pids = itertools.count(1000)


class Clock:
    """Virtual time. `sleep` lets whatever is ready run first (a process that exits, a stop
    request), so a sleep that loses such a race is cancelled before time moves; otherwise it
    moves time forward by `seconds` and records them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        self.slept.append(seconds)
        self.now += seconds


class FakeProcess:
    """A node's process: ready as soon as it starts, or, spawned held, once released (unless
    told otherwise); exits on `exit(code)` or on a signal it obeys, and records (time, "start",
    "go" or a signal name, its name)."""

    def __init__(self, name: str, nodes: Nodes, obeys=(signal.SIGTERM, signal.SIGKILL)):
        self.name = name
        self.nodes = nodes
        self.obeys = obeys
        self.pid: int | None = None
        self.returncode: int | None = None
        self.ready_signal = asyncio.Event()
        self.output = [f"{name} says goodbye"]
        self.signals: list[str] = []
        self.held = False
        self._exited = asyncio.Event()

    async def start(self) -> None:
        self.pid = next(_pids)
        self.nodes.log.append((self.nodes.clock(), "start", self.name))
        code = self.nodes.exit_at_start.get(self.name)
        if code is not None:
            self.exit(code)
        elif self.name not in self.nodes.never_ready and not self.held:
            self.ready_signal.set()

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self.nodes.log.append((self.nodes.clock(), "go", self.name))
        if self.returncode is None and self.name not in self.nodes.never_ready:
            self.ready_signal.set()

    async def exited(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def wait(self) -> int:
        return await self.exited()

    def send_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        self.signals.append(name)
        self.nodes.log.append((self.nodes.clock(), name, self.name))
        if self.returncode is None and sig in self.obeys:
            self.exit(-sig)

    def exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()


class FakeProbe:
    def __init__(self, process: FakeProcess | None) -> None:
        self.process = process

    async def ready(self) -> bool:
        return self.process is not None and self.process.ready_signal.is_set()

    async def close(self) -> None:
        pass


class Nodes:
    """The process and probe factories: every process made, by name, in order of making."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.made: dict[str, list[FakeProcess]] = defaultdict(list)
        self.log: list[tuple[float, str, str]] = []  # (time, "start" or a signal, process)
        self.exit_at_start: dict[str, int] = {}
        self.never_ready: set[str] = set()
        self.stubborn: set[str] = set()  # ignore SIGTERM

    def process(self, name, argv, env, printer) -> FakeProcess:
        obeys = (signal.SIGKILL,) if name in self.stubborn else (signal.SIGTERM, signal.SIGKILL)
        process = FakeProcess(name, self, obeys)
        process.env = dict(env)
        process.held = env.get(ENV_GO_FD) == HELD
        self.made[name].append(process)
        return process

    def probe(self, node, process, login, topology) -> FakeProbe:
        return FakeProbe(process)

    def latest(self, name: str) -> FakeProcess:
        return self.made[name][-1]

    def events(self, what: str) -> list[str]:
        return [name for _, event, name in self.log if event == what]


class Run:
    """One `up` of a topology with fakes; `await run.until(...)` lets it get somewhere."""

    def __init__(self, topology: Topology) -> None:
        self.clock = Clock()
        self.nodes = Nodes(self.clock)
        self.output = io.StringIO()
        self.launcher = Launcher(
            topology,
            Printer(self.output, colour=False, clock=lambda: 0.0),
            env={},
            process_factory=self.nodes.process,
            clock=self.clock,
            sleep=self.clock.sleep,
            probe_factory=self.nodes.probe,
            port_check=lambda topology, names: [],
        )

    @property
    def lines(self) -> list[str]:
        """What the launcher printed, without the time and name prefix."""
        return [line.partition(" | ")[2] for line in self.output.getvalue().splitlines()]

    async def until(self, condition: Callable[[], bool]) -> None:
        for _ in range(10_000):
            if condition():
                return
            await asyncio.sleep(0)
        raise AssertionError("the launcher never got there:\n" + self.output.getvalue())

    def ready(self) -> bool:
        return len(self.launcher.ready_order) == len(self.launcher.topology.nodes)

    async def crash(self, name: str, code: int = 1) -> None:
        """The latest process of `name` exits with `code`; wait until its restart is ready."""
        count = len(self.nodes.made[name]) + 1
        self.nodes.latest(name).exit(code)
        await self.until(
            lambda: (
                len(self.nodes.made[name]) == count
                and self.nodes.latest(name).ready_signal.is_set()
            )
        )

    def go(self, scenario: Callable[[Run], Awaitable[None]]) -> int:
        """Run `up` with `scenario` beside it; `up`'s exit status."""

        async def main() -> int:
            up = asyncio.ensure_future(self.launcher.run())
            try:
                await scenario(self)
                # A guard against a hang, not a wait: `up` has nothing left to wait for.
                return await asyncio.wait_for(up, 5)
            finally:
                up.cancel()

        return asyncio.run(main())


async def until_ready_then_interrupt(run: Run) -> None:
    await run.until(run.ready)
    run.launcher._on_signal()  # Ctrl-C


@pytest.fixture
def topology(edit, parse) -> Callable[..., Topology]:
    """The shipped topology, with `stop_timeout` and each node's settings as given:
    topology(stop_timeout="7s", writer={"restart_limit": 8})."""

    def make(stop_timeout: str | None = None, **nodes: dict[str, object]) -> Topology:
        edits = []
        if stop_timeout is not None:
            edits.append(("name: contacts\n", f"name: contacts\nstop_timeout: {stop_timeout}\n"))
        for name, settings in nodes.items():
            lines = "".join(f"    {key}: {value}\n" for key, value in settings.items())
            edits.append(
                (f"  {name}:\n    kind: {name}\n", f"  {name}:\n    kind: {name}\n{lines}")
            )
        return parse(edit(*edits))

    return make


# -- start ------------------------------------------------------------------------------------


def test_nodes_start_in_batches_once_their_dependencies_are_ready(topology):
    run = Run(topology())
    assert run.go(until_ready_then_interrupt) == 0
    batches = [["broker", "store"], ["reader", "writer"], ["gateway"]]
    assert [line for line in run.lines if line.startswith("starting ")] == [
        "starting " + ", ".join(batch) for batch in batches
    ]
    # Every process is spawned at once, held, and let go batch by batch.
    assert run.nodes.events("start") == ["broker", "store", "reader", "writer", "gateway"]
    assert run.nodes.events("go") == [name for batch in batches for name in batch]
    first_go = next(i for i, (_, event, _) in enumerate(run.nodes.log) if event == "go")
    assert all(event == "start" for _, event, _ in run.nodes.log[:first_go])
    assert run.launcher.ready_order == ["broker", "store", "reader", "writer", "gateway"]
    assert run.clock.slept == []  # every node was ready at its first probe


def test_a_node_failing_at_start_up_stops_the_others_and_up_exits_1(topology):
    run = Run(topology())
    run.nodes.exit_at_start["reader"] = 3
    assert run.go(lambda run: asyncio.sleep(0)) == 1
    assert (
        "error: node 'reader' (reader) exited with status 3 before it was ready: "
        "reader says goodbye" in run.lines
    )
    assert "gateway" not in run.nodes.events("go")  # its dependency never became ready
    for name in ("broker", "store", "writer", "gateway"):
        assert run.nodes.latest(name).signals == ["SIGTERM", "SIGKILL"]
    assert run.nodes.latest("reader").signals == ["SIGKILL"]  # exited: only what it left behind
    assert run.lines[-1] == "all nodes stopped"


def test_a_node_never_ready_fails_the_start_after_ready_timeout(topology):
    run = Run(topology())
    run.nodes.never_ready.add("store")
    assert run.go(lambda run: asyncio.sleep(0)) == 1
    assert "error: node 'store' (store) was not ready after 30s (ready_timeout)" in " ".join(
        run.lines
    )
    assert 30.0 < run.clock.now - 1000.0 < 30.2  # probed until then, in virtual time
    assert max(run.clock.slept) <= 0.05  # probing often, never waiting long


# -- stop -------------------------------------------------------------------------------------


def test_nodes_stop_in_reverse_order_of_readiness_sigterm_then_sigkill(topology):
    run = Run(topology(stop_timeout="7s"))
    run.nodes.stubborn.add("reader")
    assert run.go(until_ready_then_interrupt) == 0
    signals = [(event, name) for _, event, name in run.nodes.log if event.startswith("SIG")]
    assert signals == [
        (sig, name)
        for name in ["gateway", "writer", "reader", "store", "broker"]
        for sig in ("SIGTERM", "SIGKILL")  # SIGKILL also for what a node left behind
    ]
    term, kill = [
        t for t, event, name in run.nodes.log if name == "reader" and event.startswith("SIG")
    ]
    assert kill - term == 7.0  # stop_timeout
    assert run.clock.slept == [7.0]  # only the stubborn one made the launcher wait
    assert "reader did not stop within 7s; killing it" in run.lines
    stopping = [line for line in run.lines if line.startswith("stopping")]
    assert stopping == ["stopping", *(f"stopping {n}" for n in run.launcher.ready_order[::-1])]


def test_a_writer_is_given_its_delay_to_finish_before_sigkill(topology):
    run = Run(topology(stop_timeout="1s"))  # the shipped writer's delay is 3s
    run.nodes.stubborn.add("writer")
    assert run.go(until_ready_then_interrupt) == 0
    assert run.clock.slept == [5.0]  # delay + 2 s, more than stop_timeout
    assert "writer did not stop within 5s; killing it" in run.lines


# -- restart ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy, code, restarted",
    [
        ("on-failure", 1, True),
        ("on-failure", -9, True),
        ("on-failure", 0, False),
        ("always", 0, True),
        ("never", 1, False),
    ],
)
def test_a_node_that_exits_is_restarted_as_its_policy_says(topology, policy, code, restarted):
    run = Run(topology(reader={"restart": policy}))

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        if restarted:
            await run.crash("reader", code)
            run.launcher._on_signal()
        else:
            run.nodes.latest("reader").exit(code)

    assert run.go(scenario) == (0 if restarted else 1)
    assert len(run.nodes.made["reader"]) == (2 if restarted else 1)
    if not restarted:
        assert (
            f"error: node 'reader' exited with status {code} (restart: {policy}); "
            "stopping the others" in run.lines
        )


def test_restarts_are_immediate_then_back_off_from_half_a_second_doubling_to_ten(topology):
    run = Run(topology(writer={"restart_limit": 8}))

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        for _ in range(8):
            await run.crash("writer")
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert run.clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    restarts = [line for line in run.lines if line.startswith("node 'writer' exited")]
    assert restarts[0] == (
        "node 'writer' exited with status 1; restarting it now (restart 1 of at most 8)"
    )
    assert restarts[1].endswith("restarting it in 0.5s (restart 2 of at most 8)")
    assert restarts[-1].endswith("restarting it in 10s (restart 8 of at most 8)")


def test_each_process_learns_how_often_it_was_restarted(topology):
    from cqrs_flow.contracts.process import ENV_RESTARTS

    run = Run(topology())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        for _ in range(2):
            await run.crash("writer")
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert [p.env[ENV_RESTARTS] for p in run.nodes.made["writer"]] == ["0", "1", "2"]
    assert [p.env[ENV_RESTARTS] for p in run.nodes.made["store"]] == ["0"]


def test_ports_in_use_stop_up_before_it_starts_anything(topology):
    run = Run(topology())
    run.launcher.port_check = lambda topology, names: [
        f"node 'gateway' cannot listen on 127.0.0.1:8080 (http): port 8080 is already in use "
        f"by pid 7 (nginx) [{', '.join(names)}]"
    ]

    async def scenario(run: Run) -> None:
        pass

    assert run.go(scenario) == 1
    assert run.nodes.made == {}
    assert run.lines[0] == (
        "error: node 'gateway' cannot listen on 127.0.0.1:8080 (http): port 8080 is already in "
        "use by pid 7 (nginx) [broker, gateway, reader, store, writer]"
    )


def test_the_preflight_checks_run_once_every_process_is_spawned_held(topology):
    run = Run(topology())
    seen: list[dict[str, bool]] = []
    run.launcher.preflight = lambda: seen.append(
        {name: made[-1].held for name, made in run.nodes.made.items()}
    )

    assert run.go(until_ready_then_interrupt) == 0
    # every node's process existed, none let go yet, when the checks ran; and they ran once
    assert seen == [{name: True for name in ("broker", "store", "reader", "writer", "gateway")}]
    assert all(len(made) == 1 for made in run.nodes.made.values())


def test_a_failed_preflight_kills_the_held_processes_unheard_and_raises(topology):
    run = Run(topology())
    problem = CqrsFlowError("nodes.gateway.schema: line 3: no such field")

    def check() -> None:
        # each node reports the problem on its own too: read from its pipe after the check
        loop = asyncio.get_running_loop()
        for made in run.nodes.made.values():
            loop.call_soon(run.launcher.printer.line, made[-1].name, "error: the same problem")
        raise problem

    run.launcher.preflight = check

    async def scenario(run: Run) -> None:
        pass

    with pytest.raises(CqrsFlowError) as raised:
        run.go(scenario)
    assert raised.value is problem
    assert run.nodes.events("go") == []  # none was let go
    assert sorted(run.nodes.events("SIGKILL")) == ["broker", "gateway", "reader", "store", "writer"]
    assert all(made[-1].returncode is not None for made in run.nodes.made.values())
    assert run.launcher.processes == {}
    assert run.lines == []  # neither "stopping ..." nor the nodes' own lines


def test_running_30_seconds_starts_a_new_series_of_restarts(topology):
    run = Run(topology())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        await run.crash("store")
        await run.crash("store")
        run.clock.now += 31  # it ran long enough: the next crash is a first one again
        await run.crash("store")
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert run.clock.slept == [0.5]
    assert [line.rpartition("; ")[2] for line in run.lines if "exited" in line] == [
        "restarting it now (restart 1 of at most 5)",
        "restarting it in 0.5s (restart 2 of at most 5)",
        "restarting it now (restart 1 of at most 5)",
    ]


def test_the_restart_limit_stops_everything_and_up_exits_1(topology):
    run = Run(topology(reader={"restart_limit": 2}))

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        await run.crash("reader", -9)
        await run.crash("reader", -9)
        run.nodes.latest("reader").exit(-9)  # the third in a row

    assert run.go(scenario) == 1
    assert (
        "error: node 'reader' exited with status -9 after 2 restarts in a row "
        "(restart_limit 2); stopping the others" in run.lines
    )
    for name in ("broker", "store", "writer", "gateway"):
        assert run.nodes.latest(name).signals == ["SIGTERM", "SIGKILL"]
    assert len(run.nodes.made["reader"]) == 3


def test_a_stop_during_the_back_off_cancels_the_restart(topology):
    run = Run(topology())

    async def scenario(run: Run) -> None:
        await run.until(run.ready)
        await run.crash("gateway")
        run.nodes.latest("gateway").exit(1)  # the second restart waits 0.5 s first
        await run.until(lambda: any("in 0.5s" in line for line in run.lines))
        run.launcher._on_signal()

    assert run.go(scenario) == 0
    assert len(run.nodes.made["gateway"]) == 2  # not restarted a second time
    assert run.clock.slept == []  # the stop came before the back-off was over


# -- a reader in its gateway's process ------------------------------------------------------


def test_a_reader_placed_in_its_gateways_process_starts_with_it(topology):
    run = Run(topology(reader={"process": "gateway"}))
    assert run.go(until_ready_then_interrupt) == 0
    # the reader's turn comes once the store and what the gateway needs (the broker) are
    # ready; one process, the gateway's, runs both
    assert "starting reader (in gateway's process), writer" in run.lines
    assert sorted(run.nodes.events("start")) == ["broker", "gateway", "store", "writer"]
    assert run.nodes.events("go") == ["broker", "store", "gateway", "writer"]  # reader's turn
    assert "reader" not in run.nodes.made
    assert run.launcher.ready_order.index("reader") < run.launcher.ready_order.index("gateway")
    env = run.nodes.latest("gateway").env
    from cqrs_flow.security.tokens import ENV_GUESTS, ENV_TOKEN, credentials_from_env

    assert ENV_GUESTS in env
    credentials = credentials_from_env(run.launcher.topology, "reader", env)
    assert credentials.node == "reader" and credentials.token != env[ENV_TOKEN]
    assert set(credentials.callers) == {"gateway"}
    # stopping stops the one process
    assert run.nodes.events("SIGTERM") == ["gateway", "writer", "store", "broker"]


def test_up_only_for_a_gateway_runs_the_reader_it_hosts(topology):
    from cqrs_flow.launcher import Launcher

    launcher = Launcher(
        topology(reader={"process": "gateway"}),
        only=["gateway"],
        env={"CQRS_FLOW_SECRET": "0123456789abcdef" * 4},
    )
    assert launcher.local == {"gateway", "reader"}
