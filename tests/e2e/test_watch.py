"""`cqrs-flow up --watch` and SIGHUP: an edit of the topology, or of a file it uses, restarts
only the nodes it affects (their pids change, the others' do not, as `cqrs-flow status` tells);
an edit that does not validate is reported and leaves everything running; no command accepted
before a reload is lost or applied twice across it."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import subprocess
import threading
import time

from system import System, cli, prepare, wait_until

from cqrs_flow.launcher.status import system_status

LIST = "{ listContacts(count: 1000) { id name } }"


def pids(system: System, command: bool = False) -> dict[str, int]:
    """Each node process's pid, as `cqrs-flow status` tells (every node ready): its code run
    here, or with `command` the command itself (a second more)."""
    if not command:
        rows = asyncio.run(system_status(system.topology))
        assert all(r.state == "ready" for r in rows), rows
        return {row.process: row.pid for row in rows}
    answer = subprocess.run(
        [*cli(), "status", str(system.file), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=system.env,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    return {row["process"]: row["pid"] for row in map(json.loads, answer.stdout.splitlines())}


def edit(system: System, old: str, new: str) -> None:
    text = system.file.read_text()
    assert old in text, old
    system.file.write_text(text.replace(old, new, 1))  # in place, as most editors do


def reloads(system: System) -> int:
    return sum("reloaded: " in line for line in system.lines)


class Sender:
    """Sends addContact mutations one after the other from a thread, keeping the ids of those
    the gateway accepted (status OK); one it refused or could not be reached for is not."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.accepted: list[str] = []
        self._sending = threading.Event()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def __enter__(self) -> Sender:
        self._sending.set()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._sending.clear()
        self._thread.join(10)

    def _send(self) -> None:
        for i in itertools.count():
            if not self._sending.is_set():
                return
            query = f'mutation {{ addContact(name: "n{i}") {{ status id }} }}'
            try:
                status, body, _ = self.system.http(body=json.dumps({"query": query}).encode())
            except OSError:  # the gateway is restarting
                continue
            answer = (json.loads(body).get("data") or {}).get("addContact") or {}
            if status == 200 and answer.get("status") == "OK":
                self.accepted.append(answer["id"])
            time.sleep(0.03)

    def applied_once(self, timeout: float = 15.0) -> None:
        """Every accepted mutation is in the store, once (none lost, none applied twice)."""
        contacts = wait_until(
            lambda: (
                (found := self.system.data(LIST)["listContacts"])
                and len(found) >= len(self.accepted)
                and found
            ),
            timeout=timeout,
        )
        assert sorted(c["id"] for c in contacts) == sorted(self.accepted)


def test_an_edit_restarts_only_the_nodes_it_affects(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path), args=["--watch"]).start()
    try:
        before = pids(system)
        added = system.data('mutation { addContact(name: "Ada") { id } }')["addContact"]["id"]
        # the gateway's own settings: only the gateway restarts
        edit(system, "    reader: reader\n", "    reader: reader\n    limits: {depth: 9}\n")
        system.wait_for_line(r"topology changed \(contacts_fast.yaml\): restarting gateway$")
        wait_until(lambda: reloads(system) == 1, timeout=15)
        after = pids(system)
        assert after["gateway"] != before["gateway"]
        assert {n: p for n, p in after.items() if n != "gateway"} == {
            n: p for n, p in before.items() if n != "gateway"
        }
        wait_until(lambda: any(c["id"] == added for c in system.data(LIST)["listContacts"]))

        # a plugin module the reader uses (ReverseName) and the gateway too (NameRules)
        plugin = system.file.parent / "plugins" / "contacts.py"
        plugin.write_text(plugin.read_text() + "\n# edited\n")
        system.wait_for_line(r"restarting reader, gateway$")
        wait_until(lambda: reloads(system) == 2, timeout=15)
        third = pids(system)
        assert third["reader"] != after["reader"] and third["gateway"] != after["gateway"]
        assert [third[n] for n in ("broker", "store", "writer")] == [
            before[n] for n in ("broker", "store", "writer")
        ]
        reversed_name = system.data(f'{{ reversedName(id: "{added}") }}')["reversedName"]
        assert reversed_name == "adA"
    finally:
        assert system.stop() == 0


def test_an_edit_that_does_not_validate_leaves_everything_running(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path), args=["--watch"]).start()
    try:
        before = pids(system)
        good = system.file.read_text()
        line = good.splitlines().index("    kind: writer") + 1
        edit(system, "    kind: writer", "    kind: writter")
        reported = system.wait_for_line(r"not reloaded, still running the previous version")
        assert re.search(r"error: contacts_fast.yaml: \d+ problems", reported)
        problem = system.wait_for_line(rf"error: contacts_fast.yaml:{line}: nodes.writer.kind")
        assert "did you mean 'writer'" in problem
        assert pids(system) == before
        added = system.data('mutation { addContact(name: "Bo") { id } }')["addContact"]["id"]
        wait_until(lambda: any(c["id"] == added for c in system.data(LIST)["listContacts"]))

        system.file.write_text(good)  # back to what runs: nothing to restart
        system.wait_for_line(r"contacts_fast.yaml reloaded \(contacts_fast.yaml\): no node")
        assert pids(system) == before
    finally:
        assert system.stop() == 0


def test_sighup_reloads_and_sigterm_still_stops_in_order(tmp_path):
    system = System(prepare("contacts_fast.yaml", tmp_path)).start()  # no --watch
    try:
        before = pids(system, command=True)
        edit(system, "    dead_letter:", "    attempts: 4\n    dead_letter:")
        with Sender(system) as sender:  # the gateway accepts commands while the writer restarts
            wait_until(lambda: len(sender.accepted) >= 5)
            system.process.send_signal(signal.SIGHUP)
            system.wait_for_line(r"topology changed \(SIGHUP\): restarting writer$")
            wait_until(lambda: reloads(system) == 1, timeout=15)
            count = len(sender.accepted)
            wait_until(lambda: len(sender.accepted) >= count + 5)
        sender.applied_once()
        after = pids(system, command=True)
        assert after["writer"] != before["writer"]
        assert {n: p for n, p in after.items() if n != "writer"} == {
            n: p for n, p in before.items() if n != "writer"
        }
        added = system.data('mutation { addContact(name: "Cy") { id } }')["addContact"]["id"]
        wait_until(lambda: any(c["id"] == added for c in system.data(LIST)["listContacts"]))
    finally:
        assert system.stop(signal.SIGTERM) == 0
    final = system.lines[[line.endswith("| stopping") for line in system.lines].index(True) :]
    stops = [line.split("| ", 1)[1] for line in final if "| stopping " in line]
    assert stops == [f"stopping {n}" for n in ("gateway", "writer", "reader", "store", "broker")]
    assert system.node_pids() == []


def test_commands_held_in_the_writers_delay_are_applied_once_across_a_reload(tmp_path):
    """Mutations held in the writer's 4 s delay when its delay is edited, and others sent all
    through the reload (those the restarting gateway refused were not accepted): every
    accepted one is applied, once."""
    file = prepare("contacts_fast.yaml", tmp_path, **{"nodes.writer.delay": "4s"})
    system = System(file, args=["--watch"]).start()
    try:
        with Sender(system) as sender:
            wait_until(lambda: len(sender.accepted) >= 8)
            assert system.data(LIST)["listContacts"] == []  # all still in the writer's delay
            edit(system, "    delay: 4s", "    delay: 1s")  # the writer's spec, mid-delay
            system.wait_for_line(r"restarting writer, gateway$")
            held = system.wait_for_line(r"writer +\| .*finishing \d+ command\(s\) before stopping")
            assert int(re.search(r"finishing (\d+)", held)[1]) >= 8
            wait_until(lambda: reloads(system) == 1, timeout=15)
            count = len(sender.accepted)
            wait_until(lambda: len(sender.accepted) >= count + 10)  # and some after the reload
        sender.applied_once()
        # it applied what it held and exited within its grace, not killed
        assert not [line for line in system.lines if "writer did not stop" in line]
    finally:
        assert system.stop() == 0
