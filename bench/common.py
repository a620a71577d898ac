"""What every figure shares: topology copies with free ports, a running `cqrs-flow up`, a store
client with node credentials, a fast loader, process memory, statistics and result rows.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cqrs_flow.topology.relocate import free_ports, relocate  # noqa: F401 (free_ports: used by figures)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "topology.yaml"
MOSQUITTO_EXAMPLE = REPO / "examples" / "contacts-mosquitto"
# `up` reads the secret from the environment, so the bench can derive every node's token.
SECRET = "cqrs-flow-bench-" + secrets.token_hex(16)


def say(text: str = "") -> None:
    print(text, flush=True)


# -- topology copies -------------------------------------------------------------------------


def prepare(
    source: Path,
    directory: Path,
    overrides: dict[str, Any] | None = None,
    name: str = "topology.yaml",
) -> Path:
    """Copy the topology `source` into `directory` with free ports and its files beside it.

    `overrides` set keys by dotted path, e.g. {"nodes.writer.delay": "0s"}. The load generator
    is one caller standing for many clients: each gateway lets it have all of its places in
    flight (limits.per_caller_in_flight = limits.in_flight), as many callers would."""
    target = relocate(source, directory / name, overrides)
    data = yaml.safe_load(target.read_text())
    for node in data["nodes"].values():
        if node.get("kind") == "gateway":
            limits = node.setdefault("limits", {}) or {}
            node["limits"] = {"per_caller_in_flight": limits.get("in_flight", 100), **limits}
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def cli() -> list[str]:
    """The installed console script, as a user runs it."""
    script = shutil.which("cqrs-flow", path=os.path.dirname(sys.executable)) or shutil.which(
        "cqrs-flow"
    )
    return [script] if script else [sys.executable, "-m", "cqrs_flow"]


# -- a running system ------------------------------------------------------------------------

_READY = re.compile(r"all (\d+) nodes ready in ([\d.]+)s")
# A writer's count of the commands it applied, once a second (cqrs_flow/nodes/writer.py
# AppliedSummary): how many, and how long ago the last of them was applied.
_APPLIED = re.compile(
    r"\|\s*INFO\s+applied (\d+) command\(s\) in the last .*, the last ([\d.]+)s ago"
)
_TROUBLE = re.compile(r"\|\s*(WARNING|ERROR|CRITICAL)\b")


class System:
    """`cqrs-flow up FILE` as a child process; its output is read by a thread that adds up the
    commands the writers' "applied" lines count and remembers when the last one was applied."""

    def __init__(
        self,
        topology_file: Path,
        env: dict[str, str] | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        from cqrs_flow.topology import load_topology

        self.file = topology_file
        self.wrapper = wrapper or []  # a command `up` runs under (a profiler)
        self.topology = load_topology(topology_file)
        self.env = {**os.environ, "CQRS_FLOW_SECRET": SECRET, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.lines: deque[str] = deque(maxlen=400)
        self.trouble: list[str] = []
        self.applied = 0
        self.last_applied_at = 0.0
        self.spawned_at = 0.0
        self.ready_at = 0.0
        self.reported_ready = 0.0  # what `up` itself says: "all N nodes ready in X s"
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> System:
        self.spawned_at = time.monotonic()
        self.process = subprocess.Popen(
            [*self.wrapper, *cli(), "up", str(self.file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(
                f"`cqrs-flow up {self.file}` was not ready within {timeout:g}s:\n"
                + "\n".join(list(self.lines)[-25:])
            )
        return self

    def _read(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            now = time.monotonic()
            line = line.rstrip("\n")
            applied = _APPLIED.search(line)
            if applied:
                self.applied += int(applied.group(1))
                self.last_applied_at = max(self.last_applied_at, now - float(applied.group(2)))
                continue
            self.lines.append(line)
            if _TROUBLE.search(line) and len(self.trouble) < 50:
                self.trouble.append(line)
            if not self._ready.is_set():
                match = _READY.search(line)
                if match:
                    self.ready_at = now
                    self.reported_ready = float(match.group(2))
                    self._ready.set()

    def node_pids(self) -> dict[str, int]:
        """Node name -> pid of the processes `up` started (its children)."""
        if self.process is None:
            return {}
        return {name: pid for pid, name in _children_running_nodes(self.process.pid).items()}

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in self.node_pids().values():
                _kill(pid)
            self.process.kill()
            self.process.wait(5)
        if self._reader:
            self._reader.join(5)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children_running_nodes(parent: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
            if ppid != parent:
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        argv = [a for a in argv if a]
        if "node" in argv:
            found[int(entry.name)] = argv[-1]
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in bytes; PSS shares the pages it shares with others."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


# -- the store, called directly with node credentials ----------------------------------------


class StoreClient:
    """The store's write service with a writer's credentials and its read service with a
    reader's, the way the segregation tests call it. Contacts-shaped (the shipped proto)."""

    def __init__(self, system: System) -> None:
        import grpc

        from cqrs_flow.protobuf.compiler import compile_protos
        from cqrs_flow.security.tokens import Credentials, derive_token
        from cqrs_flow.topology import ReaderNode, StoreNode, WriterNode

        topology = system.topology
        self.protos = compile_protos(list(topology.protos), topology.root)
        store = topology.nodes_of(StoreNode)[0]
        writer = next(w for w in topology.nodes_of(WriterNode) if w.store.node == store.name)
        reader = next(r for r in topology.nodes_of(ReaderNode) if r.store.node == store.name)
        options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        self._sides = {
            "write": (
                store.write,
                grpc.aio.insecure_channel(store.write.listen.target, options=options),
                Credentials(writer.name, derive_token(SECRET, writer.name)).metadata,
            ),
            "read": (
                store.read,
                grpc.aio.insecure_channel(store.read.listen.target, options=options),
                Credentials(reader.name, derive_token(SECRET, reader.name)).metadata,
            ),
        }
        self._rpcs = {}  # operation -> (side, rpc name)
        for side, (service, _, _) in self._sides.items():
            for rpc, op in service.rpcs.items():
                self._rpcs.setdefault(op, (side, rpc))
        self._stubs: dict[str, Any] = {}
        self.contact = self.protos.message_class(topology.entities_of(store)[0].document)

    def request(self, op: str, **fields: Any):
        side, rpc = self._rpcs[op]
        service = self._sides[side][0]
        method = self.protos.method(service.name, rpc)
        return self.protos.class_of(method.input_type)(**fields)

    async def call(self, op: str, request, timeout: float = 60.0):
        side, rpc = self._rpcs[op]
        service, channel, metadata = self._sides[side]
        stub = self._stubs.get(op)
        if stub is None:
            method = self.protos.method(service.name, rpc)
            stub = self._stubs[op] = channel.unary_unary(
                f"/{service.name}/{rpc}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=self.protos.class_of(method.output_type).FromString,
            )
        return await stub(request, metadata=metadata, timeout=timeout)

    async def count(self, limit: int) -> int:
        """How many documents the store holds (up to `limit`), by listing them."""
        answer = await self.call("list", self.request("list", count=limit))
        return len(answer.contacts)

    async def close(self) -> None:
        for _, channel, _ in self._sides.values():
            await channel.close()


async def wait_committed(
    system: System,
    store: StoreClient,
    before_applied: int,
    before_stored: int,
    expected: int,
    timeout: float,
    stall: float = 10.0,
) -> tuple[int, float, str]:
    """Wait until `expected` more commands were applied, none for `stall` seconds, or `timeout`.

    Progress comes from the writers' "applied" lines, which cost nothing to watch; if there are
    none (a writer that logs differently), from the store's count five times a second. Returns
    what the store then holds beyond `before_stored`, when the last command was applied
    (time.monotonic()) and where progress came from."""
    started = time.monotonic()
    stored, stored_at, probed_at = 0, started, 0.0
    while True:
        now = time.monotonic()
        lines = system.applied - before_applied
        if lines:
            value, at = lines, system.last_applied_at
        else:
            if now - probed_at >= 0.2:
                probed_at = now
                count = await store.count(10_000_000) - before_stored
                if count != stored:
                    stored, stored_at = count, time.monotonic()
            value, at = stored, stored_at
        if value >= expected or now - started > timeout or now - max(at, started) > stall:
            break
        await asyncio.sleep(0.02)
    source = "writer log" if system.applied > before_applied else "store polls every 0.2 s"
    return await store.count(10_000_000) - before_stored, at, source


@dataclass
class LoadReport:
    requested: int
    loaded: int = 0
    seconds: float = 0.0
    path: str = "AddContacts (insert_many)"
    note: str = ""
    ids: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.loaded / self.seconds if self.seconds else 0.0


async def load_contacts(
    client: StoreClient,
    count: int,
    budget: float,
    batch: int = 5000,
    slow_batch: float = 1.0,
    log: Callable[[str], None] = say,
) -> LoadReport:
    """Put `count` contacts into the store through its write service, within `budget` seconds.

    Batches of AddContacts (insert_many) while a batch takes less than `slow_batch` seconds; if
    one takes longer (a backend whose batch insert slows down as the collection grows), the rest
    goes through concurrent AddContact calls. Stops at the budget and says how far it got."""
    report = LoadReport(count)
    started = time.monotonic()
    names = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov")

    def contact(i: int):
        key = str(uuid.uuid4())
        report.ids.append(key)
        return client.contact(id=key, name=f"{names[i % len(names)]} {i}")

    window = asyncio.Semaphore(48)  # AddContact calls in flight once batches are too slow

    async def one(c) -> None:
        async with window:
            await client.call("insert", client.request("insert", contact=c))

    many = True
    last_log = started
    while report.loaded < count:
        elapsed = time.monotonic() - started
        if elapsed > budget:
            rate = report.loaded / elapsed
            report.note = (
                f"stopped at the {budget:g}s load budget: {report.loaded:,} of {count:,} loaded "
                f"({rate:,.0f}/s; the rest would take "
                f"~{(count - report.loaded) / max(rate, 1):,.0f}s more)"
            )
            log(f"    {report.note}")
            break
        if many:
            n = min(batch, count - report.loaded)
            request = client.request(
                "insert_many", contacts=[contact(report.loaded + i) for i in range(n)]
            )
            t = time.monotonic()
            await client.call("insert_many", request, timeout=600)
            took = time.monotonic() - t
            report.loaded += n
            if took > slow_batch and report.loaded < count:
                many = False
                report.path = (
                    f"AddContacts (insert_many) to {report.loaded:,}, then AddContact (insert): "
                    f"a batch of {n:,} took {took:.1f}s at {report.loaded - n:,} documents"
                )
                log(
                    f"    loader: a batch of {n:,} took {took:.1f}s at {report.loaded - n:,} "
                    "documents; going on with concurrent AddContact calls"
                )
        else:
            n = min(4000, count - report.loaded)
            await asyncio.gather(*(one(contact(report.loaded + i)) for i in range(n)))
            report.loaded += n
        if time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            log(f"    loaded {report.loaded:,} of {count:,} in {last_log - started:.0f}s")
    report.seconds = time.monotonic() - started
    return report


# -- statistics and results ------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: list[float]) -> float:
    return percentile(values, 50)


@dataclass
class Row:
    """One line of the results table."""

    figure: str
    metric: str
    value: str
    floor: str = ""
    ratio: str = ""
    target: str = ""
    passed: bool | None = None  # None: no target on this line
    note: str = ""

    @property
    def result(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class Figure:
    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def row(self, metric: str, value: str, **kw: Any) -> Row:
        row = Row(str(self.number), metric, value, **kw)
        self.rows.append(row)
        say(
            f"  {metric}: {value}"
            + (f" | floor {row.floor}" if row.floor else "")
            + (f" | ratio {row.ratio}" if row.ratio else "")
            + (f" | target {row.target}" if row.target else "")
            + (f" | {row.result}" if row.result else "")
            + (f" ({row.note})" if row.note else "")
        )
        return row


def fmt(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def ms(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    value = seconds * 1000
    return (
        f"{value:.2f} ms"
        if value < 10
        else f"{value:,.0f} ms"
        if value >= 100
        else f"{value:.1f} ms"
    )
