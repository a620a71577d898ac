"""Memory and open files of every node under a long mixed load: do they level off?

    python -m bench.soak                        # 30 minutes, 5 of them warm-up
    python -m bench.soak --minutes 3 --warm-up 1 --json soak.json
    python -m bench.soak --memory-only          # no data directories: everything in memory

The shipped contacts system with a 0.2 s write delay and, unless --memory-only, `data:` on the
store and the gateway. The load, all at once: `--readers` clients asking `contact(id)` and
`listContacts(count: 10)` in turn, `--writers` clients adding a contact, updating it twice and
deleting it, over and over, and `--watchers` clients that update one contact each and wait for
the command to settle over a WebSocket subscription (`commandSettled`), one connection each,
kept open. Every `--every` seconds the resident memory (RSS) and the open file descriptors of
each node are read from /proc.

The verdict: after the warm-up, each node's RSS stays within `--bound` (10 %) of its value at
the end of the warm-up, and its file descriptors within `--files` (5) of theirs. Exit status 0
when every node holds. Everything talks to 127.0.0.1 only; the load stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import SHIPPED, System, memory, prepare, say

GET = "query($id: String!) { contact(id: $id) { id name } }"
LIST = "{ listContacts(count: 10) { id name } }"
ADD = "mutation($n: String!) { addContact(name: $n) { status id command_id } }"
UPDATE = (
    "mutation($id: String!, $n: String!) { updateContact(id: $id, name: $n) { status command_id } }"
)
DELETE = "mutation($id: String!) { deleteContact(id: $id) { status command_id } }"
SETTLED = "subscription($id: String!) { commandSettled(id: $id) { state } }"


@dataclass
class Sample:
    at: float  # seconds since the load began
    rss_kib: dict[str, int]
    files: dict[str, int]


@dataclass
class Soak:
    seconds: float
    warm_up: float
    data: bool
    requests: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    verdict: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return bool(self.verdict) and all(v["holds"] for v in self.verdict.values())


def _files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def sample(system: System, began: float) -> Sample:
    pids = system.node_pids()
    return Sample(
        round(time.monotonic() - began, 1),
        {name: memory(pid)[0] // 1024 for name, pid in pids.items()},
        {name: _files(pid) for name, pid in pids.items()},
    )


def judge(samples: list[Sample], warm_up: float, bound: float, files: int) -> dict[str, dict]:
    """Per node: its RSS and files at the end of the warm-up, the most after, and whether they
    stay within `bound` (a fraction) and `files` of those."""
    after = [s for s in samples if s.at >= warm_up]
    if len(after) < 2:
        return {}
    base, verdict = after[0], {}
    for node in base.rss_kib:
        rss = [s.rss_kib.get(node, 0) for s in after]
        fds = [s.files.get(node, 0) for s in after]
        grew = max(rss) / base.rss_kib[node] - 1 if base.rss_kib[node] else 0.0
        verdict[node] = {
            "rss_kib_after_warm_up": base.rss_kib[node],
            "rss_kib_most": max(rss),
            "rss_kib_last": rss[-1],
            "rss_growth": round(grew, 3),
            "files_after_warm_up": base.files[node],
            "files_most": max(fds),
            "holds": grew <= bound and max(fds) - base.files[node] <= files,
        }
    return verdict


async def _graphql(http: aiohttp.ClientSession, url: str, query: str, **variables: Any) -> Any:
    async with http.post(url, json={"query": query, "variables": variables}) as response:
        return (await response.json()).get("data") or {}


async def _reader(url: str, stop: asyncio.Event, ids: list[str], counts: dict[str, int]) -> None:
    async with aiohttp.ClientSession() as http:
        for i in itertools.count():
            if stop.is_set():
                return
            try:
                if i % 2 and ids:
                    await _graphql(http, url, GET, id=ids[i % len(ids)])
                else:
                    await _graphql(http, url, LIST)
                counts["queries"] += 1
            except (aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.1)


async def _writer(url: str, stop: asyncio.Event, lane: int, counts: dict[str, int]) -> None:
    async with aiohttp.ClientSession() as http:
        for i in itertools.count():
            if stop.is_set():
                return
            try:
                added = (await _graphql(http, url, ADD, n=f"soak {lane}.{i}"))["addContact"]
                counts["mutations"] += 1
                await asyncio.sleep(0.3)  # past the write delay: updates check the contact exists
                for j in range(2):
                    await _graphql(http, url, UPDATE, id=added["id"], n=f"soak {lane}.{i}.{j}")
                    counts["mutations"] += 1
                await _graphql(http, url, DELETE, id=added["id"])
                counts["mutations"] += 1
            except (aiohttp.ClientError, ValueError, KeyError, TypeError):
                await asyncio.sleep(0.1)


async def _watcher(url: str, stop: asyncio.Event, key: str, counts: dict[str, int]) -> None:
    """Update one contact, then wait for the command to settle over the subscription."""
    ws_url = url.replace("http://", "ws://")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, protocols=("graphql-transport-ws",)) as ws,
    ):
        await ws.send_json({"type": "connection_init"})
        await ws.receive_json()
        for i in itertools.count():
            if stop.is_set():
                return
            try:
                answer = await _graphql(http, url, UPDATE, id=key, n=f"watched {i}")
                command_id = answer["updateContact"]["command_id"]
                counts["mutations"] += 1
                await ws.send_json(
                    {
                        "id": str(i),
                        "type": "subscribe",
                        "payload": {"query": SETTLED, "variables": {"id": command_id}},
                    }
                )
                while (await asyncio.wait_for(ws.receive_json(), 30))["type"] != "complete":
                    pass
                counts["settled"] += 1
            except (aiohttp.ClientError, ValueError, KeyError, TypeError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)


async def soak(
    system: System,
    seconds: float,
    warm_up: float,
    every: float,
    readers: int,
    writers: int,
    watchers: int,
    data: bool,
    bound: float,
    files: int,
) -> Soak:
    url = system.topology.nodes["gateway"].url
    result = Soak(seconds, warm_up, data)
    counts = {"queries": 0, "mutations": 0, "settled": 0}
    async with aiohttp.ClientSession() as http:  # a contact per watcher, and some to read
        ids = []
        for i in range(max(watchers, 4)):
            ids.append((await _graphql(http, url, ADD, n=f"kept {i}"))["addContact"]["id"])
        await asyncio.sleep(1.0)
    stop = asyncio.Event()
    clients = [
        *(_reader(url, stop, ids, counts) for _ in range(readers)),
        *(_writer(url, stop, i, counts) for i in range(writers)),
        *(_watcher(url, stop, ids[i], counts) for i in range(watchers)),
    ]
    tasks = [asyncio.ensure_future(c) for c in clients]
    began = time.monotonic()
    try:
        while time.monotonic() - began < seconds:
            result.samples.append(sample(system, began))
            last = result.samples[-1]
            say(
                f"  {last.at:7.0f}s  "
                + "  ".join(
                    f"{n} {last.rss_kib[n] / 1024:.0f} MiB/{last.files[n]} fd"
                    for n in sorted(last.rss_kib)
                )
                + f"  ({counts['queries']} queries, {counts['mutations']} mutations, "
                f"{counts['settled']} settled)"
            )
            await asyncio.sleep(every)
        result.samples.append(sample(system, began))
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=40)
        for task in tasks:
            task.cancel()
    result.requests = dict(counts)
    result.verdict = judge(result.samples, warm_up, bound, files)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warm-up", type=float, default=5.0, help="minutes")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--watchers", type=int, default=4)
    parser.add_argument("--bound", type=float, default=0.10, help="RSS growth allowed")
    parser.add_argument("--files", type=int, default=5, help="file descriptors allowed more")
    parser.add_argument("--memory-only", action="store_true", help="no data directories")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = not args.memory_only
    overrides = {"nodes.writer.delay": "200ms"}
    if data:
        overrides |= {"nodes.store.data": "store-data", "nodes.gateway.data": "gateway-data"}
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-soak-") as tmp:
        file = prepare(SHIPPED, Path(tmp), overrides)
        say(f"soak: {args.minutes:g} min ({args.warm_up:g} warm-up), data directories: {data}")
        with System(file) as system:
            result = asyncio.run(
                soak(
                    system,
                    args.minutes * 60,
                    args.warm_up * 60,
                    args.every,
                    args.readers,
                    args.writers,
                    args.watchers,
                    data,
                    args.bound,
                    args.files,
                )
            )
    for node, v in sorted(result.verdict.items()):
        say(
            f"{node:8} RSS {v['rss_kib_after_warm_up'] / 1024:6.1f} MiB after warm-up, at most "
            f"{v['rss_kib_most'] / 1024:6.1f} ({v['rss_growth']:+.1%}); files "
            f"{v['files_after_warm_up']} -> at most {v['files_most']}: "
            f"{'holds' if v['holds'] else 'GROWS'}"
        )
    say(f"requests: {result.requests}")
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=1))
    return 0 if result.holds else 1


if __name__ == "__main__":
    raise SystemExit(main())
