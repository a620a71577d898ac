"""Recovery after the writer is killed under load: how long until every accepted command is applied.

    python -m bench.recovery                 # 3 runs, prints each and the median
    python -m bench.recovery --runs 5 --json recovery.json
    python -m bench.recovery --set nodes.gateway.redeliver_after=2s   # any topology key

The shipped contacts topology with a 0.2 s write delay, a durable store and a durable gateway
outbox (`data:` on both), everything else at its default. 300 `addContact` mutations are sent
one after another over HTTP GraphQL; once the 100th is answered, the writer's process gets
SIGKILL and `cqrs-flow up` restarts it as its restart policy says, while the other 200 are sent.
The figure is the time from the kill to the moment the store holds every contact answered OK
(the store is read every 50 ms with the reader's credentials). Every answered
contact must be there exactly once, and nothing else.

Target: under 5 s from the kill to the last command applied. Exit status 0 when the median of
the runs meets it and every run applied each command exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import SHIPPED, StoreClient, System, prepare, say

MUTATION = "mutation Add($name: String!) { addContact(name: $name) { status id } }"
COMMANDS = 300
KILL_AFTER = 100
DELAY = "200ms"
TARGET = 5.0
TIMEOUT = 60.0
_EVENTS = re.compile(r"writer ready in|restarting it|command\(s\) (not reported on )?again")
_SUPPRESSED = re.compile(r"was applied before|: not applied \(it ")  # the store's command-id check
_SET_ASIDE = re.compile(r"\bset aside: ")  # a duplicate that reached the store as a new insert


class WatchedSystem(System):
    """`System` that also keeps, with the time it was read, every line about the writer's restart
    and the gateway's re-publishing, and counts duplicates suppressed and commands set aside."""

    def __init__(self, topology_file: Path) -> None:
        super().__init__(topology_file)
        self.events: list[tuple[float, str]] = []
        self.counts = {"suppressed": 0, "set_aside": 0}

    def _read(self) -> None:
        assert self.process and self.process.stdout
        lines = self.process.stdout
        self.process.stdout = _Tap(lines, self.events, self.counts)
        try:
            super()._read()
        finally:
            self.process.stdout = lines


class _Tap:
    """An iterator over a pipe's lines that notes the interesting ones with their time."""

    def __init__(self, pipe, events: list[tuple[float, str]], counts: dict[str, int]) -> None:
        self._pipe, self._events, self._counts = pipe, events, counts

    def __iter__(self):
        for line in self._pipe:
            if _EVENTS.search(line):
                self._events.append((time.monotonic(), line.rstrip("\n")))
            elif _SUPPRESSED.search(line):
                self._counts["suppressed"] += 1
            elif _SET_ASIDE.search(line):
                self._counts["set_aside"] += 1
            yield line


async def run_once(directory: Path, overrides: dict[str, str]) -> dict:
    file = prepare(
        SHIPPED,
        directory,
        {
            "nodes.writer.delay": DELAY,
            "nodes.store.data": "store-data",
            "nodes.gateway.data": "gateway-data",
            **overrides,
        },
    )
    system = WatchedSystem(file).start()
    store = StoreClient(system)
    url = system.topology.nodes["gateway"].url
    accepted: list[str] = []
    killed_at = 0.0
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(COMMANDS):
                body = {"query": MUTATION, "variables": {"name": f"Recovery {i}"}}
                async with http.post(url, json=body) as response:
                    answer = (await response.json())["data"]["addContact"]
                if answer["status"] == "OK":
                    accepted.append(answer["id"])
                if i + 1 == KILL_AFTER:
                    os.kill(system.node_pids()["writer"], signal.SIGKILL)
                    killed_at = time.monotonic()
        sent_at = time.monotonic()
        complete_at = 0.0
        wanted = set(accepted)
        while time.monotonic() - killed_at < TIMEOUT:
            stored = await stored_ids(store)
            if wanted <= set(stored):
                complete_at = time.monotonic()
                break
            await asyncio.sleep(0.05)
        stored = await stored_ids(store)
    finally:
        await store.close()
        system.stop()
    after_kill = [
        (round(at - killed_at, 2), line.split("|", 1)[-1].strip())
        for at, line in system.events
        if at >= killed_at
    ]
    return {
        "accepted": len(accepted),
        "stored": len(stored),
        "distinct": len(set(stored)),
        "missing": len(set(accepted) - set(stored)),
        "extra": len(set(stored) - set(accepted)),
        "sent_seconds_after_kill": round(sent_at - killed_at, 2),
        "kill_to_all_applied": round(complete_at - killed_at, 2) if complete_at else None,
        "duplicates_suppressed": system.counts["suppressed"],
        "set_aside": system.counts["set_aside"],
        "events_after_kill": after_kill,
    }


async def stored_ids(store: StoreClient) -> list[str]:
    answer = await store.call("list", store.request("list", count=10 * COMMANDS))
    return [contact.id for contact in answer.contacts]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every run's figures to this file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a topology key by dotted path (repeatable)",
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    results, ok = [], True
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-recovery-") as tmp:
        for run in range(1, args.runs + 1):
            result = asyncio.run(run_once(Path(tmp) / f"run{run}", overrides))
            results.append(result)
            exact = (
                result["missing"] == result["extra"] == result["set_aside"] == 0
                and result["stored"] == result["distinct"]
            )
            ok &= exact and result["kill_to_all_applied"] is not None
            say(
                f"run {run}: {result['accepted']} accepted, {result['stored']} stored "
                f"({'each once' if exact else 'NOT exactly once'}); kill to all applied: "
                f"{result['kill_to_all_applied']} s (last mutation sent "
                f"{result['sent_seconds_after_kill']} s after the kill; "
                f"{result['duplicates_suppressed']} duplicates not applied again)"
            )
            for at, line in result["events_after_kill"]:
                say(f"    +{at:5.2f}s {line}")
    times = [r["kill_to_all_applied"] for r in results if r["kill_to_all_applied"] is not None]
    if times:
        middle = statistics.median(times)
        verdict = "PASS" if middle < TARGET and ok else "MISS"
        say(
            f"median kill to all applied: {middle:.2f} s (min {min(times):.2f}, "
            f"max {max(times):.2f}; target < {TARGET:g} s: {verdict})"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok and times and statistics.median(times) < TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
