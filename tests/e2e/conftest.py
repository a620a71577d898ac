"""Fixtures of the end-to-end tests; the helpers they use are in system.py."""

from __future__ import annotations

import os
import subprocess

import pytest
from system import EXAMPLES, SECRET, System, cli, free_ports, mosquitto_binary, prepare, wait_until

from cqrs_flow.launcher.probes import mqtt_connack_code
from cqrs_flow.topology import Address


def pytest_collection_modifyitems(items):
    """Everything here starts real processes: `pytest -m "not e2e"` runs just the fast tier."""
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def contacts(tmp_path_factory) -> System:
    """The contacts system with a 0.5 s write delay, shared by the tests of a module."""
    system = System(prepare("contacts_fast.yaml", tmp_path_factory.mktemp("contacts"))).start()
    yield system
    system.stop()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> Address:
    """Debian's Mosquitto with the example's configuration, on a free port (.ci/run installs it)."""
    binary = mosquitto_binary()
    directory = tmp_path_factory.mktemp("mosquitto")
    # Its users and their topics, written the way the example's README says, for the tests' secret.
    subprocess.run(
        [
            *cli(),
            "mosquitto-auth",
            str(EXAMPLES / "contacts-mosquitto" / "topology.yaml"),
            str(directory / "mosquitto"),
        ],
        env={**os.environ, "CQRS_FLOW_SECRET": SECRET},
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_ports(1)[0]
    config = (EXAMPLES / "contacts-mosquitto" / "mosquitto.conf").read_text()
    config = config.replace("listener 1885 127.0.0.1", f"listener {port} 127.0.0.1")
    if os.geteuid() == 0:
        config += (
            "user root\n"  # as root, Mosquitto would switch to its own user and lose the directory
        )
    (directory / "mosquitto.conf").write_text(config)
    with open(directory / "mosquitto.log", "w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [binary, "-c", "mosquitto.conf"],
            cwd=directory,  # its paths are relative: mosquitto/passwords, ... (the README's way)
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    address = Address("127.0.0.1", port)
    import asyncio

    try:
        wait_until(
            lambda: (
                process.poll() is not None or asyncio.run(mqtt_connack_code(address)) is not None
            ),
            timeout=15,
        )
        assert process.poll() is None, (directory / "mosquitto.log").read_text()
        yield address
    finally:
        process.terminate()
        process.wait(10)
