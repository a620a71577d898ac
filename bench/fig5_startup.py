"""Figure 5: start-up time and memory.

Start-up: from spawning `cqrs-flow up` on the shipped topology to its "all N nodes ready" line
(the wall time this process sees; `up`'s own figure is in the JSON), the median of a few runs
after one unmeasured run that warms the proto cache, with the package's bytecode compiled first
as `pip install .` leaves it (an editable install where PYTHONDONTWRITEBYTECODE is set would
otherwise compile every module of the package in every process at every start: about 0.45 s
of CPU over the six processes, which the floor's libraries, installed with their bytecode, do
not pay). Floor: a fresh Python process importing
the libraries the nodes use (aiohttp, amqtt, gmqtt, grpc, grpc health, protobuf, tartiflette,
mongomock, yaml, click), from spawn to exit. Target: within 2x the floor plus 0.5 s.

Memory: the RSS (and PSS, which splits shared pages) of every node process, idle after start-up
and again with 100,000 contacts in the store; the launcher's own RSS is listed apart.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import SHIPPED, Figure, StoreClient, System, load_contacts, memory, prepare, say

SLACK = 0.5  # seconds on top of twice the import floor
LIBRARIES = (
    "aiohttp",
    "amqtt.broker",
    "gmqtt",
    "grpc",
    "grpc.aio",
    "grpc_health.v1.health",
    "google.protobuf",
    "tartiflette",
    "mongomock",
    "yaml",
    "click",
)


def import_floor() -> tuple[float, int]:
    """Seconds from spawn to exit of a process that imports the libraries; its RSS then.
    (Not ru_maxrss: Linux carries the high-water mark of the parent over exec.)"""
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        + "".join(f"import {name}\n" for name in LIBRARIES)
        + "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return time.monotonic() - started, int(out.stdout.strip().splitlines()[-1]) * 1024


def compile_package() -> None:
    """The package's bytecode, as an installed package has it (compileall writes it where
    Python would, next to the sources, whatever PYTHONDONTWRITEBYTECODE says)."""
    import cqrs_flow

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(cqrs_flow.__file__).parent)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def snapshot(system: System) -> dict:
    nodes = {name: memory(pid) for name, pid in sorted(system.node_pids().items())}
    launcher = memory(system.process.pid) if system.process else (0, 0)
    return {
        "nodes": {n: {"rss": r, "pss": p} for n, (r, p) in nodes.items()},
        "total_rss": sum(r for r, _ in nodes.values()),
        "total_pss": sum(p for _, p in nodes.values()),
        "launcher_rss": launcher[0],
    }


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MiB"


def run(ctx) -> Figure:
    fig = Figure(5, "Start-up and memory")
    runs = 1 if ctx.quick else 3
    file = prepare(SHIPPED, ctx.tmp / "fig5")

    compile_package()
    say(f"  `cqrs-flow up` to all nodes ready: 1 warm-up run + {runs} measured ...")
    startups, reported = [], []
    for i in range(runs + 1):
        with System(file) as system:
            if i:
                startups.append(system.ready_at - system.spawned_at)
                reported.append(system.reported_ready)
    floors, floor_rss = [], 0
    for _ in range(max(runs, 3)):
        seconds, floor_rss = import_floor()
        floors.append(seconds)
    up, floor = statistics.median(startups), statistics.median(floors)
    fig.data.update(
        {
            "startup_seconds": startups,
            "up_reported_seconds": reported,
            "import_floor_seconds": floors,
            "import_floor_rss": floor_rss,
        }
    )
    limit = 2 * floor + SLACK
    fig.row(
        "start-up: `cqrs-flow up` to all nodes ready",
        f"{up:.2f} s",
        floor=f"{floor:.2f} s import",
        ratio=f"{up / floor:.2f}",
        target=f"<= 2x floor + {SLACK:g} s = {limit:.2f} s",
        passed=up <= limit,
        note=f"up itself reports {statistics.median(reported):.2f} s",
    )

    contacts = 10_000 if ctx.quick else 100_000
    with System(file) as system:
        time.sleep(1.0)  # let start-up garbage settle
        idle = snapshot(system)

        async def fill():
            store = StoreClient(system)
            try:
                return await load_contacts(store, contacts, budget=60 if ctx.quick else 240)
            finally:
                await store.close()

        load = asyncio.run(fill())
        time.sleep(0.5)
        loaded = snapshot(system)
    fig.data.update(
        {"idle": idle, "loaded": loaded, "contacts": load.loaded, "load_note": load.note}
    )
    per_node = ", ".join(f"{name} {mib(v['rss'])}" for name, v in idle["nodes"].items())
    fig.row(
        f"memory idle: RSS of all {len(idle['nodes'])} nodes",
        mib(idle["total_rss"]),
        floor=f"{mib(floor_rss)} one process importing all",
        note=f"{per_node}; PSS {mib(idle['total_pss'])}; launcher {mib(idle['launcher_rss'])}",
    )
    store_idle = next((v["rss"] for n, v in idle["nodes"].items() if n == "store"), 0)
    store_loaded = next((v["rss"] for n, v in loaded["nodes"].items() if n == "store"), 0)
    fig.row(
        f"memory with {load.loaded:,} contacts: RSS of all nodes",
        mib(loaded["total_rss"]),
        note=f"store {mib(store_idle)} -> {mib(store_loaded)} "
        f"(~{(store_loaded - store_idle) / max(load.loaded, 1):,.0f} bytes a contact)"
        + (f"; {load.note}" if load.note else ""),
    )
    return fig
