"""Nodes whose peers go away and come back: clear errors meanwhile, and recovery after."""

from __future__ import annotations

import os
import re
import signal
import time

from system import System, prepare, wait_until
from test_up_lifecycle import node_pid


def test_a_query_while_the_reader_hangs_gets_a_clear_error_not_a_hang(tmp_path):
    system = System(
        prepare("contacts_fast.yaml", tmp_path, **{"nodes.gateway.reader_timeout": "1s"})
    ).start()
    reader = node_pid(system, "reader")
    try:
        os.kill(reader, signal.SIGSTOP)
        began = time.monotonic()
        answer = system.graphql("{ listContacts(count: 1) { id } }")
        assert time.monotonic() - began < 3
        assert answer["errors"][0]["message"] == "the reader is unavailable; try again"
        mutation = system.data('mutation { deleteContact(id: "x") { status message } }')[
            "deleteContact"
        ]
        assert mutation == {
            "status": "ERROR",
            "message": "nothing was queued: the reader is unavailable; try again",
        }
    finally:
        os.kill(reader, signal.SIGCONT)
    try:  # once it runs again, queries are answered again within moments
        wait_until(
            lambda: not system.graphql("{ listContacts(count: 1) { id } }").get("errors"),
            timeout=10,
        )
    finally:
        system.stop()


def test_writer_and_gateway_reconnect_after_the_broker_restarts(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path)).start()
    try:
        os.kill(node_pid(system, "broker"), signal.SIGKILL)
        wait_until(
            lambda: sum("cqrs-flow | broker ready in" in line for line in system.lines) == 2,
            timeout=15,
        )

        def add_and_find():
            answer = system.data(
                'mutation { addContact(name: "After broker restart") { status id } }'
            )
            return answer["addContact"]["id"] if answer["addContact"]["status"] == "OK" else None

        contact_id = wait_until(add_and_find, timeout=15, interval=0.5)
        query = f'{{ contact(id: "{contact_id}") {{ name }} }}'
        assert wait_until(lambda: system.data(query)["contact"], timeout=15) == {
            "name": "After broker restart"
        }
    finally:
        system.stop()


def test_reader_and_writer_reconnect_after_the_store_restarts(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path)).start()
    try:
        os.kill(node_pid(system, "store"), signal.SIGKILL)
        wait_until(
            lambda: sum("cqrs-flow | store ready in" in line for line in system.lines) == 2,
            timeout=15,
        )
        contact_id = system.data('mutation { addContact(name: "After store restart") { id } }')[
            "addContact"
        ]["id"]
        query = f'{{ contact(id: "{contact_id}") {{ name }} }}'
        assert wait_until(lambda: system.data(query)["contact"], timeout=15) == {
            "name": "After store restart"
        }
    finally:
        system.stop()


def test_status_reports_made_while_the_broker_is_away_are_published_after_it_restarts(tmp_path):
    """Commands the writer applies while the broker is gone: their APPLIED reports wait in the
    writer and go out once the broker is back, so commandStatus stops saying QUEUED."""
    system = System(
        prepare("contacts_fast.yaml", tmp_path, **{"nodes.gateway.redeliver_after": "3s"})
    ).start()
    launcher = system.process.pid
    try:
        command_ids = [
            system.data(f'mutation {{ addContact(name: "Away {i}") {{ command_id }} }}')[
                "addContact"
            ]["command_id"]
            for i in range(6)
        ]
        # The launcher is paused, so the broker stays away while the writer applies the six
        # (0.5 s delay); once it runs again it restarts the broker.
        os.kill(launcher, signal.SIGSTOP)
        try:
            os.kill(node_pid(system, "broker"), signal.SIGKILL)
            time.sleep(2.5)
        finally:
            os.kill(launcher, signal.SIGCONT)
        wait_until(
            lambda: sum("cqrs-flow | broker ready in" in line for line in system.lines) == 2,
            timeout=15,
        )
        query = "query($id: String!) { commandStatus(id: $id) { state } }"

        def states() -> list[str]:
            return [
                system.data(query, {"id": cid})["commandStatus"]["state"] for cid in command_ids
            ]

        wait_until(lambda: states() == ["APPLIED"] * 6, timeout=20, interval=0.2)

        def counted() -> int:  # the writer's counts at INFO: one line a second at most
            found = [
                re.search(r"applied (\d+) command\(s\) .*add_contact", x) for x in system.lines
            ]
            return sum(int(m.group(1)) for m in found if m)

        wait_until(lambda: counted() >= 6, timeout=3, interval=0.1)  # the last line may be due
    finally:
        system.stop()
