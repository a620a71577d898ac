"""Profiles of every node on the query path under load: where each process spends its time.

    python -m bench.profile                       # contact(id), 16 clients, 10 s
    python -m bench.profile --query list --clients 64 --seconds 10 --out docs/perf
    python -m bench.profile --query add           # addContact mutations: the write path

Runs `cqrs-flow up` of the shipped topology under py-spy (`--subprocesses`: the launcher and
every node it starts), loads 2,000 contacts, drives the gateway with the query for the given
time, and writes into --out: `<query>-<clients>.svg` (a flame graph of all the processes, one
root per process), `<query>-<clients>.txt` (per node: its share of the samples, the functions
with the most samples of their own and the largest subtrees) and the collapsed stacks. Needs
py-spy (`pip install py-spy`), which samples without slowing the processes much.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import REPO, SHIPPED, StoreClient, System, load_contacts, prepare, say
from bench.fig3_query import CONTACT, LIST, contact_ok, list_ok
from bench.loadgen import GraphQL, closed_loop
from bench.readmodel import caught_up

MUTATION = "mutation Add($name: String!) { addContact(name: $name) { status id } }"


def mutation_ok(answer) -> str | None:
    status = ((answer or {}).get("data") or {}).get("addContact", {}) or {}
    return None if status.get("status") == "OK" else f"not OK: {str(answer)[:160]}"


QUERIES = {
    "contact": (CONTACT, contact_ok),
    "list": (LIST, list_ok),
    "add": (MUTATION, mutation_ok),
}
# Where the reader answers from (figure 8's topologies).
LAYOUTS: dict[str, dict] = {
    "two-hops": {},
    "read-model": {"nodes.reader.read_model": True},
    "one-process": {"nodes.reader.read_model": True, "nodes.reader.process": "gateway"},
}
_NODE = re.compile(r"cqrs_flow node \S+ (\w[\w.-]*)")
_NAMES = {"broker", "store", "reader", "writer", "gateway"}
_KIND = re.compile(r"cqrs_flow/nodes/(broker|store|reader|writer|gateway)\b")
_PID = re.compile(r"process (\d+):")
# Frames of ours that only hold the node's process up, not its work.
_STARTING = re.compile(r"importlib\._bootstrap|load_topology|\.setup \(|_start_on_go|insert_many")
_OUTER = re.compile(r"cqrs_flow/(cli|__main__|nodes/__init__|nodes/runtime)\.py")


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


async def drive(
    system: System, query: str, clients: int, seconds: float, read_model: bool = False
) -> float:
    store = StoreClient(system)
    try:
        load = await load_contacts(store, 2000, budget=60)
    finally:
        await store.close()
    if read_model:
        caught_up(system)
    text, check = QUERIES[query]
    rng = random.Random(7)

    def variables(query: str, i: int) -> dict | None:
        if query == "contact":
            return {"id": rng.choice(load.ids)}
        return {"name": f"Ada {i}"} if query == "add" else None

    gql = GraphQL(system.topology.nodes["gateway"].url, clients)
    try:
        result = await closed_loop(
            lambda i: gql.post(text, variables(query, i)),
            clients,
            duration=seconds,
            check=check,
        )
    finally:
        await gql.close()
    return result.rate


def stop_up(system: System) -> None:
    """SIGTERM to `up` itself (py-spy's child), which stops its nodes; py-spy then writes its
    file and exits."""
    assert system.process is not None
    for entry in Path(f"/proc/{system.process.pid}/task").glob("*/children"):
        for pid in entry.read_text().split():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except OSError:
                pass
    try:
        system.process.wait(60)
    finally:
        system.stop()


# py-spy's process frame: `process 123:"<its command line>"`, quoted as &quot; in a flame graph,
# whose labels may also be cut short ("..") before their closing quote.
_PROCESS = re.compile(r'process \d+:(?:&quot;|")([^"<&]*)(?:&quot;|")?')


def tidy(path: Path, tmp: str) -> None:
    """Name each process by its node and leave out where things were on this machine (the
    interpreter's folder, the checkout, the temporary topology) from a file py-spy wrote."""

    raw = path.read_text()
    # A node py-spy found before its command line could be read (nodes are spawned at once,
    # held) is named by the node code on its stacks, where the stacks are lines (collapsed).
    kinds: dict[str, set[str]] = {}
    for line in raw.splitlines():
        pids = _PID.findall(line)
        if pids:
            kinds.setdefault(pids[-1], set()).update(_KIND.findall(line))

    def named(match: re.Match[str]) -> str:
        command = match.group(1)
        found = _NODE.search(command)
        if found is not None:
            return f"process {found.group(1)}"
        if " up " in command:
            return "process launcher"
        kind = kinds.get(match.group(0).split(":", 1)[0].removeprefix("process "), set())
        return f"process {next(iter(kind))}" if len(kind) == 1 else "process"

    text = _PROCESS.sub(named, raw)
    for prefix in (str(Path(sys.executable).parent), tmp, str(REPO)):
        text = text.replace(prefix + "/", "")
    path.write_text(text)


def process_of(frames: list[str]) -> tuple[str, list[str]]:
    """The node (or "launcher") a collapsed stack was sampled in, and its frames below the
    process frames py-spy puts first (the launcher's, then the node's)."""
    processes = [f for f in frames if f.startswith("process ")]
    rest = frames[len(processes) :]
    if not processes:
        return "launcher", rest
    last = processes[-1]
    found = _NODE.search(last)
    name = found.group(1).strip('"') if found else last.removeprefix("process ")
    return (name if name in _NAMES or found else "launcher"), rest


def _library(frame: str) -> str:
    """The package (or module) a frame `function (path/file.py:line)` is in."""
    where = frame.rpartition(" (")[2]
    return where.split("/", 1)[0].split(":", 1)[0].removesuffix(".py") if where else frame


def _attributed(frames: list[str]) -> str:
    """Who a sample is charged to: the deepest frame of cqrs_flow's on the stack with the
    library it was in below it, or the library running when no frame of ours is there."""
    ours = [i for i, f in enumerate(frames) if "cqrs_flow/" in f and not _OUTER.search(f)]
    if not ours:
        return f"{_library(frames[-1])} (no cqrs_flow frame)"
    below = frames[ours[-1] + 1 :]
    return f"cqrs_flow -> {_library(below[0])}" if below else "cqrs_flow itself"


def summary(collapsed: Path, top: int = 12) -> str:
    per_process: dict[str, Counter[str]] = {}
    inclusive: dict[str, Counter[str]] = {}
    charged: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        process, frames = process_of(stack.split(";"))
        if any(_STARTING.search(f) for f in frames):
            continue  # start-up (imports, the topology, set-up) and the contacts loaded
        totals[process] += int(count)
        if frames:
            per_process.setdefault(process, Counter())[frames[-1]] += int(count)
            charged.setdefault(process, Counter())[_attributed(frames)] += int(count)
        seen = set()
        for frame in frames:
            if frame not in seen:
                seen.add(frame)
                inclusive.setdefault(process, Counter())[frame] += int(count)
    everything = sum(totals.values()) or 1
    out = []
    for process, samples in totals.most_common():
        out.append(f"== {process}: {samples} samples, {samples / everything:.0%} of all")
        out.append("  by who runs (see _attributed):")
        for who, n in charged.get(process, Counter()).most_common(top):
            out.append(f"    {n / samples:6.1%}  {who}")
        out.append("  own time (the frame running when sampled):")
        for frame, n in per_process.get(process, Counter()).most_common(top):
            out.append(f"    {n / samples:6.1%}  {frame}")
        out.append("  subtrees (a frame and everything it called):")
        for frame, n in inclusive.get(process, Counter()).most_common(top * 2):
            out.append(f"    {n / samples:6.1%}  {frame}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--query", choices=sorted(QUERIES), default="contact")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", default=str(REPO / "docs" / "perf"))
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default="two-hops",
        help="the shipped topology, or with the reader's read model (in the gateway's process)",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.query}-{args.clients}" + ("" if args.layout == "two-hops" else f"-{args.layout}")
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-profile-") as tmp:
        overrides = {"nodes.writer.delay": "0s", **LAYOUTS[args.layout]}
        file = prepare(SHIPPED, Path(tmp) / "profile", overrides)
        results = {}
        for kind, suffix in (("raw", "collapsed.txt"), ("flamegraph", "svg")):
            target = out / f"{name}.{suffix}"
            wrapper = [py_spy(), "record", "--subprocesses", "--nonblocking", "-r", str(args.rate)]
            wrapper += ["-f", kind, "-o", str(target), "--"]
            system = System(file, wrapper=wrapper).start()
            try:
                results[kind] = asyncio.run(
                    drive(
                        system, args.query, args.clients, args.seconds, bool(LAYOUTS[args.layout])
                    )
                )
            finally:
                stop_up(system)
            tidy(target, tmp)
            say(f"{kind}: {results[kind]:,.0f} q/s under the profiler; wrote {target}")
        text = summary(out / f"{name}.collapsed.txt")
        layout = "" if args.layout == "two-hops" else f" --layout {args.layout}"
        header = (
            f"python -m bench.profile --query {args.query} --clients {args.clients} "
            f"--seconds {args.seconds:g}{layout}: {results['raw']:,.0f} q/s under the profiler\n\n"
        )
        (out / f"{name}.txt").write_text(header + text + "\n")
        say(header + text)


if __name__ == "__main__":
    main()
