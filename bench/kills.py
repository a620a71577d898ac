"""One node killed under a stream of mutations, for each node kind: what was accepted, applied,
lost or applied twice, and how long until everything accepted was applied.

    python -m bench.kills                     # every node kind, 300 mutations, kill after 100
    python -m bench.kills --nodes broker,writer --json kills.json

The shipped contacts system as a new user runs it durably: `data:` on the store and on the
gateway, a 0.2 s write delay, everything else at its default. `addContact` mutations are sent one
after another over HTTP; once the 100th is answered, the node's process gets SIGKILL and `up`
restarts it, while the rest are sent (a request the gateway does not answer, because it is the
one killed, is sent again once: the client sees a reset connection). Then the store is read
through the gateway until it holds every contact answered OK. Exit status 0 when nothing
accepted was lost or applied twice and each run was caught up within 5 s of its last mutation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench.common import SHIPPED, System, prepare, say

ADD = "mutation($n: String!) { addContact(name: $n) { status message id } }"
LIST = "{ listContacts(count: 1000) { id name } }"
TARGET = 5.0


async def _send(http: aiohttp.ClientSession, url: str, name: str) -> dict | None:
    for _ in range(2):
        try:
            async with http.post(url, json={"query": ADD, "variables": {"n": name}}) as response:
                return (await response.json())["data"]["addContact"]
        except (aiohttp.ClientError, ConnectionError):
            await asyncio.sleep(0.2)
    return None


async def _stored(http: aiohttp.ClientSession, url: str) -> list[dict] | None:
    try:
        async with http.post(url, json={"query": LIST}) as response:
            answer = await response.json()
    except (aiohttp.ClientError, ConnectionError, ValueError):
        return None
    return None if answer.get("errors") else answer["data"]["listContacts"]


async def run_once(system: System, node: str, count: int, kill_after: int) -> dict:
    url = system.topology.nodes["gateway"].url
    accepted: list[str] = []
    refusals: Counter[str] = Counter()
    unanswered = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        for i in range(count):
            answer = await _send(http, url, f"{node[:6]} {i}")
            if answer is None:
                unanswered += 1
            elif answer["status"] == "OK":
                accepted.append(answer["id"])
            else:
                refusals[answer["message"]] += 1
            if i + 1 == kill_after:
                os.kill(system.node_pids()[node], signal.SIGKILL)
                killed_at = time.monotonic()
        sent_at = time.monotonic()
        wanted, stored = set(accepted), None
        while time.monotonic() - sent_at < 60:
            stored = await _stored(http, url)
            if stored is not None and wanted <= {c["id"] for c in stored}:
                break
            await asyncio.sleep(0.05)
        done_at = time.monotonic()
    ids = [c["id"] for c in stored or []]
    names = Counter(c["name"] for c in stored or [])
    return {
        "node": node,
        "sent": count,
        "accepted": len(accepted),
        "refused": sum(refusals.values()),
        "refusals": dict(refusals),
        "unanswered": unanswered,
        "applied": len(wanted & set(ids)),
        "lost": len(wanted - set(ids)),
        "twice": sum(n - 1 for n in names.values() if n > 1) + len(ids) - len(set(ids)),
        "seconds_kill_to_all_applied": round(done_at - killed_at, 2),
        "seconds_last_send_to_all_applied": round(done_at - sent_at, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="broker,store,reader,writer,gateway")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--kill-after", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    overrides = {
        "nodes.writer.delay": "200ms",
        "nodes.store.data": "store-data",
        "nodes.gateway.data": "gateway-data",
    }
    results, ok = [], True
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-kills-") as tmp:
        for node in args.nodes.split(","):
            file = prepare(SHIPPED, Path(tmp) / node, overrides)
            with System(file) as system:
                result = asyncio.run(run_once(system, node, args.count, args.kill_after))
            results.append(result)
            ok &= result["lost"] == result["twice"] == 0
            ok &= result["seconds_last_send_to_all_applied"] < TARGET
            say(
                f"{node:8} accepted {result['accepted']}, refused {result['refused']}, "
                f"unanswered {result['unanswered']}, applied {result['applied']}, lost "
                f"{result['lost']}, twice {result['twice']}; all applied "
                f"{result['seconds_last_send_to_all_applied']} s after the last send "
                f"({result['seconds_kill_to_all_applied']} s after the kill)"
            )
            for message, times in result["refusals"].items():
                say(f"         {times} x {message}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
