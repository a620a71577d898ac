"""The change log of a durable store killed with -9 at random points while commands flow: every
change the store made is in the log exactly once, and the log holds nothing the store lacks."""

from __future__ import annotations

import asyncio
import collections
import random
import time

import grpc
from changelog import Load, check_log_matches_store, read_log, stored
from system import System, prepare, wait_until

KEYS = 120  # about 330 commands: an insert per key, updates, a delete for some


def test_a_store_killed_under_load_keeps_log_and_documents_in_step(tmp_path):
    seed = int(time.time())
    rng = random.Random(seed)
    system = System(
        prepare(
            "contacts_fast.yaml",
            tmp_path,
            **{"nodes.store.data": "store-data", "nodes.writer.delay": "0ms"},
        )
    ).start()
    load = Load(system, KEYS, seed)
    count = len(load.commands())
    load.published.clear()
    kills = {at: "store" for at in sorted(rng.sample(range(40, count - 20, 90), 3))}
    try:
        killed = asyncio.run(load.publish(kills, pause=0.01))
        assert len(killed) == 3

        def logged_commands():
            try:
                return {c.command_id for c in asyncio.run(read_log(system)).changes}
            except grpc.aio.AioRpcError:  # the store is still restarting
                return set()

        # the writer retries what the killed store did not answer: in the end all is applied
        wait_until(lambda: logged_commands() >= set(load.published), timeout=60)
        logged = asyncio.run(read_log(system))
        documents = asyncio.run(stored(system, "Contact"))

        check_log_matches_store(logged, documents, "Contact")
        made = collections.Counter(c.command_id for c in logged.changes)
        twice = [command for command, n in made.items() if n > 1]
        assert not twice, f"applied more than once (seed {seed}): {twice}"
        assert set(made) == set(load.published), f"seed {seed}"
        for change in logged.changes:  # each change is its command's, on its key
            assert load.published[change.command_id] == change.key
        restarts = sum("node 'store' exited with status -9" in line for line in system.lines)
        assert restarts == 3, system.output()
    finally:
        assert system.stop() == 0
