"""A broker outage costs no refusal when the gateway's outbox is on disk: the broker is killed
in the middle of a stream of mutations, the gateway answers every one OK (committed to its
outbox) while `up` restarts the broker, and publishes them once it has reconnected."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from system import System, prepare, wait_until
from test_delivery import stored_ids, stream
from test_up_lifecycle import node_pid

pytestmark = pytest.mark.faults
STREAM = 600


def test_a_broker_killed_mid_stream_costs_no_refusal_with_a_durable_outbox(tmp_path):
    system = System(
        prepare(
            "contacts_fast.yaml",
            tmp_path,
            **{
                "nodes.writer.delay": "200ms",
                "nodes.store.list_limit": 5000,
                "nodes.store.data": "store-data",
                "nodes.gateway.data": "gateway-data",
            },
        )
    ).start()
    try:
        accepted = asyncio.run(
            stream(
                system.gateway.listen.target,
                STREAM,
                "outage",
                during=lambda: os.kill(node_pid(system, "broker"), signal.SIGKILL),
            )
        )
        sent = time.monotonic()
        assert len(accepted) == STREAM  # none refused while the broker was away
        wait_until(  # the broker was away (killed, then restarted by `up`) meanwhile
            lambda: sum("cqrs-flow | broker ready in" in line for line in system.lines) == 2,
            timeout=15,
        )
        wait_until(lambda: set(accepted) <= set(stored_ids(system)), timeout=30, interval=0.1)
        caught_up = time.monotonic() - sent
        ids = stored_ids(system)
        assert len(ids) == len(set(ids)) == STREAM  # each once
        assert caught_up < 5.0, f"all applied {caught_up:.1f}s after the last mutation"
        print(json.dumps({"accepted": len(accepted), "seconds_after_last_send": caught_up}))
    finally:
        system.stop()
