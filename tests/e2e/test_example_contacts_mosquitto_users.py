"""examples/contacts-mosquitto as its README says, run as root and as a normal user.

Mosquitto started by a normal user runs as that user and reads the files `cqrs-flow
mosquitto-auth` wrote for it (the password file readable by its owner only). Started as root, it
switches to its own user `mosquitto` before reading the password file, so it cannot read root's:
the README has root give it the directory (`chown -R mosquitto: mosquitto`). Both are run here
with Debian's Mosquitto from a directory of their own, the example's relative paths as they are;
as root, the normal user is `nobody` (setpriv), since tests run as root in CI.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from system import EXAMPLES, SECRET, cli, free_ports, mosquitto_binary, wait_until

from cqrs_flow.launcher.probes import mqtt_connack_code
from cqrs_flow.security.mqtt_logins import MqttLogin, derive_mqtt_password
from cqrs_flow.topology import Address

EXAMPLE = EXAMPLES / "contacts-mosquitto"


@pytest.fixture
def directory() -> Iterator[Path]:
    """A directory every user may enter (pytest's own are root's only), standing for the
    example's: mosquitto.conf on a free port, and the auth files the README has written."""
    made = Path(tempfile.mkdtemp(prefix="contacts-mosquitto-"))
    made.chmod(0o755)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def follow_the_readme(directory: Path) -> Address:
    """`cqrs-flow mosquitto-auth topology.yaml mosquitto` and the example's mosquitto.conf, in
    `directory`; the broker's address."""
    port = free_ports(1)[0]
    config = (EXAMPLE / "mosquitto.conf").read_text()
    assert "/tmp" not in config  # its files are the checkout's own, not a path shared by all
    (directory / "mosquitto.conf").write_text(
        config.replace("listener 1885 127.0.0.1", f"listener {port} 127.0.0.1")
    )
    subprocess.run(
        [*cli(), "mosquitto-auth", str(EXAMPLE / "topology.yaml"), str(directory / "mosquitto")],
        env={**os.environ, "CQRS_FLOW_SECRET": SECRET},
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (directory / "mosquitto" / "passwords").stat().st_mode & 0o077 == 0  # owner only
    return Address("127.0.0.1", port)


def start(directory: Path, *prefix: str) -> subprocess.Popen:
    """`mosquitto -c mosquitto.conf` from `directory` (after `prefix`, to run it as another
    user), its output in mosquitto.log."""
    with open(directory / "mosquitto.log", "w") as log:
        return subprocess.Popen(
            [*prefix, mosquitto_binary(), "-c", "mosquitto.conf"],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def logs_the_gateway_in(process: subprocess.Popen, address: Address, directory: Path) -> None:
    """The broker runs and lets the gateway in with the password the secret derives."""
    login = MqttLogin("gateway", derive_mqtt_password(SECRET, "gateway"))
    try:
        wait_until(
            lambda: (
                process.poll() is not None
                or asyncio.run(mqtt_connack_code(address, login)) is not None
            ),
            timeout=15,
        )
        log = (directory / "mosquitto.log").read_text()
        assert process.poll() is None, log
        assert asyncio.run(mqtt_connack_code(address, login)) == 0, log
    finally:
        process.terminate()
        process.wait(10)


def test_as_root_mosquitto_reads_the_files_once_they_are_given_to_it(directory):
    if os.geteuid() != 0:
        pytest.skip("runs as root only (this is a normal user: see the next test)")
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no user 'mosquitto' (Debian's package makes it)")
    address = follow_the_readme(directory)
    # as written by root: Mosquitto, once it is user mosquitto, cannot read the password file
    refused = start(directory)
    assert refused.wait(15) != 0
    assert "Unable to open pwfile" in (directory / "mosquitto.log").read_text()
    # the README's step for root
    subprocess.run(["chown", "-R", "mosquitto:", "mosquitto"], cwd=directory, check=True)
    logs_the_gateway_in(start(directory), address, directory)
    assert (directory / "mosquitto" / "mosquitto.db").owner() == "mosquitto"  # it keeps its state


def test_as_a_normal_user_mosquitto_reads_the_users_own_files(directory):
    address = follow_the_readme(directory)
    if os.geteuid() != 0:
        logs_the_gateway_in(start(directory), address, directory)
        return
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and setpriv (util-linux) is not there to become nobody")
    # the files as a normal user has them after `mosquitto-auth`: their own, modes unchanged
    # (nobody cannot run this checkout's Python, so root wrote them and hands them over)
    subprocess.run(["chown", "-R", "nobody:", "."], cwd=directory, check=True)
    as_nobody = (setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    logs_the_gateway_in(start(directory, *as_nobody), address, directory)
    assert (directory / "mosquitto" / "passwords").stat().st_mode & 0o777 == 0o600
