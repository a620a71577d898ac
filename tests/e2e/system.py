"""End-to-end helpers: run `cqrs-flow up` as a real process on a test topology with free ports,
and talk to it with real clients (HTTP, MQTT, gRPC)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cqrs_flow.protobuf.compiler import compile_protos
from cqrs_flow.security.mqtt_logins import MqttLogin, derive_mqtt_password
from cqrs_flow.security.tokens import derive_token
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.relocate import free_ports, relocate  # noqa: F401 (free_ports: used by tests)

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
EXAMPLES = TOPOLOGIES.parent.parent / "examples"
SECRET = "e2e-test-secret-0123456789abcdef"
# Writers log each command they apply at DEBUG (at INFO, one line a second counts them): a
# test that follows single commands in the log runs `up` with this environment.
EACH_COMMAND = {"CQRS_FLOW_LOG_LEVEL": "DEBUG"}


def mosquitto_binary() -> str:
    """Debian's Mosquitto, which .ci/run installs: a test that needs it fails in CI without it,
    and is skipped elsewhere."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; .ci/run installs it with apt-get")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    return binary


def cli() -> list[str]:
    """The installed console script, as a user runs it."""
    script = shutil.which("cqrs-flow", path=os.path.dirname(sys.executable)) or shutil.which(
        "cqrs-flow"
    )
    return [script] if script else [sys.executable, "-m", "cqrs_flow"]


def prepare(name: str, directory: Path, source: Path | None = None, **overrides: Any) -> Path:
    """Copy tests/topologies/<name> into `directory` with free ports and its files beside it.

    `source` takes the topology from any file instead (e.g. examples/<domain>/topology.yaml); the
    copy is still called `name`. `overrides` set keys by dotted path, as in
    {"nodes.writer.delay": "200ms"}."""
    source = Path(source) if source is not None else TOPOLOGIES / name
    return relocate(source, directory / name, overrides)


class System:
    """A running `cqrs-flow up` and clients for it."""

    def __init__(
        self, topology_file: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        self.file = topology_file
        self.args = list(args)  # more arguments for `cqrs-flow up`, e.g. ["--only", "gateway"]
        self.topology = load_topology(topology_file)
        self.protos = compile_protos(list(self.topology.protos), self.topology.root)
        self.env = {**os.environ, "CQRS_FLOW_SECRET": SECRET, **(env or {})}
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    # -- lifecycle --
    def start(self, timeout: float = 60.0) -> System:
        self.process = subprocess.Popen(
            [*cli(), "up", str(self.file), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for_line(r"all \d+ nodes ready", timeout)
        return self

    def _read(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            if self.process and self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; output:\n{self.output()}")

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` (None: just wait) and return the exit status of `cqrs-flow up`."""
        if self.process is None:
            return 0
        if self.process.poll() is None and sig is not None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"`cqrs-flow up` did not stop within {timeout}s:\n{self.output()}"
            ) from None
        if self._reader:
            self._reader.join(5)
        return code

    def node_pids(self) -> list[int]:
        """Processes still running a node of this topology."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"node" in cmdline and str(self.file).encode() in cmdline:
                pids.append(int(entry.name))
        return pids

    # -- clients --
    @property
    def gateway(self):
        return self.topology.nodes["gateway"]

    def http(
        self,
        path: str = "/graphql",
        body: bytes | None = None,
        method: str = "POST",
        content_type: str = "application/json",
        gateway: str = "gateway",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        address = self.topology.nodes[gateway].listen.target
        request = urllib.request.Request(
            f"http://{address}{path}",
            data=body,
            method=method,
            headers={"Content-Type": content_type, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def graphql(self, query: str, variables: dict | None = None, gateway: str = "gateway") -> dict:
        status, body, _ = self.http(
            body=json.dumps({"query": query, "variables": variables}).encode(), gateway=gateway
        )
        assert status == 200, (status, body)
        return json.loads(body)

    def data(self, query: str, variables: dict | None = None, gateway: str = "gateway") -> dict:
        answer = self.graphql(query, variables, gateway)
        assert "errors" not in answer, answer
        return answer["data"]

    def token(self, node: str) -> str:
        return derive_token(SECRET, node)

    def mqtt_login(self, user: str = "observer") -> MqttLogin:
        """A broker login: 'observer' is the tests' own client (in the topologies' broker
        `clients`)."""
        return MqttLogin(user, derive_mqtt_password(SECRET, user))

    def mqtt_client(self, client_id: str, user: str = "observer"):
        """A gmqtt client that logs in as `user`; connect it to the system's broker yourself."""
        import gmqtt

        client = gmqtt.Client(client_id)
        login = self.mqtt_login(user)
        client.set_auth_credentials(login.user, login.password)
        return client


async def acknowledged(client, timeout: float = 20.0) -> None:
    """Wait until the broker has acknowledged every QoS 1 message `client` (gmqtt) published."""
    await asyncio.wait_for(client._persistent_storage.wait_empty(), timeout)


def wait_until(check, timeout: float = 10.0, interval: float = 0.05):
    """Poll `check` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)
