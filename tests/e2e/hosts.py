"""Several hosts on one machine: network namespaces on one bridge, for tests of what crosses a
network.

`Hosts(["a", "b"])` makes a namespace per host, each with its own address on 10.77.0.0/24 and
only loopback besides, joined by a bridge in a namespace of its own; the test process joins the
same network through one more veth pair (address 10.77.0.254), so it can talk to every host the
way a client on the network would. A network another run on this machine uses already (its /24
routed in this namespace) is not taken: the next free one is. Leaving the `with` block kills
what was started in the hosts and removes every namespace and interface it made. Needs root
and iproute2 (`ip`); `Hosts.unavailable()` says why not, for a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Sequence

__all__ = ["Hosts"]

CLIENT_ADDRESS = "10.77.0.254"  # with the default network


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _free_network(wanted: str) -> str:
    """`wanted` (the first three numbers of a /24) if no route of this namespace covers it yet,
    else the first free one after it: two runs side by side (two checkouts, a test beside a
    benchmark) would otherwise route one network through two links."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    used = {line.split("/")[0].rsplit(".", 1)[0] for line in routes.splitlines() if "/" in line}
    first, second, third = (int(n) for n in wanted.split("."))
    for other in [second, *range(second + 1, 255), *range(1, second)]:
        candidate = f"{first}.{other}.{third}"
        if candidate not in used:
            return candidate
    raise RuntimeError(f"no free /24 near {wanted} for the test hosts")


class Hosts:
    def __init__(self, names: Sequence[str], network: str = "10.77.0") -> None:
        """`network`: the first three numbers of the hosts' /24 (another one for a test that may
        run beside one using the default)."""
        tag = uuid.uuid4().hex[:6]  # two test runs side by side must not share names
        self.names = list(names)
        self.namespace = {name: f"cqf-{tag}-{name}" for name in names}
        network = _free_network(network)
        self.address = {name: f"{network}.{i + 1}" for i, name in enumerate(names)}
        self.client_address = f"{network}.254"
        self._lan = f"cqf-{tag}-lan"
        self._client_link = f"cqf{tag}"
        self._made: list[str] = []
        self._processes: list[subprocess.Popen] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why hosts cannot be made here, or None."""
        if shutil.which("ip") is None:
            return "iproute2 ('ip') is not installed"
        if os.geteuid() != 0:
            return "network namespaces need root"
        probe = f"cqf-probe-{uuid.uuid4().hex[:6]}"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            return f"cannot create a network namespace: {made.stderr.strip()}"
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return None

    def __enter__(self) -> Hosts:
        try:
            self._make()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _make(self) -> None:
        _ip("netns", "add", self._lan)
        self._made.append(self._lan)
        _ip("-n", self._lan, "link", "add", "br0", "type", "bridge")
        _ip("-n", self._lan, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            namespace = self.namespace[name]
            _ip("netns", "add", namespace)
            self._made.append(namespace)
            _ip(
                "link",
                "add",
                f"cqfh{i}",
                "netns",
                namespace,
                "type",
                "veth",
                "peer",
                "name",
                f"p{i}",
                "netns",
                self._lan,
            )
            _ip("-n", self._lan, "link", "set", f"p{i}", "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{self.address[name]}/24", "dev", f"cqfh{i}")
            _ip("-n", namespace, "link", "set", f"cqfh{i}", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        # The test process's own way in: a veth from its namespace to the bridge.
        _ip(
            "link",
            "add",
            self._client_link,
            "type",
            "veth",
            "peer",
            "name",
            "client",
            "netns",
            self._lan,
        )
        _ip("-n", self._lan, "link", "set", "client", "master", "br0", "up")
        _ip("addr", "add", f"{self.client_address}/24", "dev", self._client_link)
        _ip("link", "set", self._client_link, "up")

    def link(self, host: str) -> tuple[str, str]:
        """The host's side of its link to the bridge (in the host's namespace) and the bridge's
        side (in the network's namespace, `lan`), for faults on that link."""
        i = self.names.index(host)
        return f"cqfh{i}", f"p{i}"

    @property
    def lan(self) -> str:
        return self._lan

    def run(self, host: str, argv: Sequence[str], **popen) -> subprocess.Popen:
        """Start `argv` on `host`; it is killed (with its process group) on leaving."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace[host], *argv], start_new_session=True, **popen
        )
        self._processes.append(process)
        return process

    def __exit__(self, *exc) -> None:
        for process in self._processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)
        subprocess.run(["ip", "link", "del", self._client_link], capture_output=True)
        for namespace in reversed(self._made):  # deleting a namespace deletes its interfaces
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._made.clear()
