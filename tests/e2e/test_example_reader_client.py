"""examples/reader-client: an outside gRPC client declared under the reader's `clients`, run as
its README says (`python examples/reader-client/list_contacts.py` with CRM_SYNC_TOKEN), against
the example's system started by `cqrs-flow up`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from system import EXAMPLES, System, prepare, wait_until

EXAMPLE = EXAMPLES / "reader-client"
TOKEN = secrets.token_hex(32)


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> System:
    file = prepare(
        "topology.yaml",
        tmp_path_factory.mktemp("reader-client"),
        source=EXAMPLE / "topology.yaml",
        **{"nodes.writer.delay": "200ms"},
    )
    running = System(file, env={"CRM_SYNC_TOKEN": TOKEN}).start()
    yield running
    running.stop()


def run_client(system: System, *arguments: str, token: str | None = TOKEN):
    env = {k: v for k, v in os.environ.items() if k != "CRM_SYNC_TOKEN"}
    if token is not None:
        env["CRM_SYNC_TOKEN"] = token
    return subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "list_contacts.py"),
            "--reader",
            system.topology.nodes["reader"].listen.target,
            *arguments,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_client_lists_and_reads_contacts_with_its_token(system):
    added = system.data('mutation { addContact(name: "Grace Hopper") { status id } }')
    contact_id = added["addContact"]["id"]
    listed = wait_until(
        lambda: (done := run_client(system)).returncode == 0 and contact_id in done.stdout and done,
        timeout=15,
    )
    assert f"{contact_id}\tGrace Hopper" in listed.stdout.splitlines()
    one = run_client(system, "--id", contact_id)
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == [f"{contact_id}\tGrace Hopper"]


def test_without_the_declared_token_the_reader_refuses(system):
    wrong = run_client(system, token=secrets.token_hex(32))
    assert wrong.returncode == 1
    assert "the reader refused: PERMISSION_DENIED" in wrong.stderr
    missing = run_client(system, token=None)
    assert missing.returncode == 2 and "set CRM_SYNC_TOKEN" in missing.stderr
