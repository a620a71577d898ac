"""A system to inject faults into: every node on a host of its own (network namespaces on one
bridge, tests/e2e/hosts.py), each host running `cqrs-flow up --only <node>`, so that the links
between nodes are real links that can be cut or slowed; the durable store's and the gateway's
data directories each on a small file system of their own (tmpfs with a size), so that their
disk can be filled.

Where network namespaces cannot be made (no root, no `ip`), the nodes run in one `cqrs-flow up`
on 127.0.0.1 and the network faults are not available (`network` says why); where tmpfs cannot
be mounted, the disk faults are not (`disks` says why).

Faults (each undone by the matching `heal_*`):
- kill(node): SIGKILL of the node's process; its `up` restarts it.
- pause(node) / resume(node): SIGSTOP / SIGCONT, a node that stops answering without dying.
- partition(node): the node's host is cut from the network (its link to the bridge is down).
- slow_link(node): with tc netem, 100 ms more each way (± 50 ms); without it (`netem` says why),
  the host's link carries 128 kbit/s each way (tc tbf): its traffic queues.
- lossy_link(node): with netem, 20 % of the packets each way are dropped; without it, what
  exceeds a queue of a few packets (tbf).
- reorder_link(node): with netem only: a quarter of the packets each way overtake others.
- fill_disk(node): the node's file system is filled to the last byte.
- slow_fsync(node): every fsync of the node's process waits 300 ms (slow_fsync.c, preloaded
  into the processes of the nodes with a disk; needs a C compiler, `fsync` says why not). On one
  host it slows both nodes with a disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml
from hosts import Hosts
from system import SECRET, cli, prepare, wait_until

__all__ = ["Cluster", "disks_unavailable"]

DISK_NODES = ("store", "gateway")  # the nodes whose data directory is on a disk of its own
NETWORK = "10.78.0"  # not the multi-host test's network, so both may run at once
SLOW_FSYNC_SOURCE = Path(__file__).resolve().parent / "slow_fsync.c"


def disks_unavailable() -> str | None:
    """Why small file systems cannot be mounted here, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    probe = Path(f"/tmp/cqf-disk-probe-{uuid.uuid4().hex[:6]}")
    probe.mkdir()
    try:
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            return f"cannot mount a tmpfs: {made.stderr.strip()}"
        subprocess.run(["umount", str(probe)], capture_output=True)
        return None
    finally:
        probe.rmdir()


def build_slow_fsync(directory: Path) -> tuple[Path | None, str | None]:
    """slow_fsync.c compiled into `directory`; (None, why) where it cannot be."""
    if shutil.which("gcc") is None:
        return None, "no C compiler (gcc) to build the slow-fsync library"
    library = directory / "slow_fsync.so"
    made = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SLOW_FSYNC_SOURCE), "-ldl"],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        return None, f"cannot build the slow-fsync library: {made.stderr.strip()[:200]}"
    return library, None


def netem_unavailable() -> str | None:
    """Why `tc netem` cannot be used here (its kernel module is missing, say), or None."""
    probe = f"cqf-netem-{uuid.uuid4().hex[:6]}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "cannot make a network namespace to try tc netem in"
    try:
        subprocess.run(["ip", "-n", probe, "link", "set", "lo", "up"], capture_output=True)
        tried = subprocess.run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem"],
            capture_output=True,
            text=True,
        )
        if tried.returncode != 0:
            return (
                f"tc netem is not available here ({tried.stderr.strip() or 'tc failed'}): "
                "packets cannot be delayed by a fixed time or reordered"
            )
        return None
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _tc(namespace: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, "tc", *args], check=True, capture_output=True)


class Cluster:
    """The system of `source` (a topology file), copied into `directory` and run as above."""

    def __init__(
        self,
        source: Path,
        directory: Path,
        overrides: dict[str, Any],
        disk_mib: int = 64,
    ) -> None:
        self.directory = directory
        self.file = prepare("topology.yaml", directory, source=source, **overrides)
        data = yaml.safe_load(self.file.read_text())
        self.names = list(data["nodes"])
        self.kinds = {name: node["kind"] for name, node in data["nodes"].items()}
        self.network = Hosts.unavailable()
        self.netem = netem_unavailable() if self.network is None else self.network
        self.disks = disks_unavailable()
        self.slow_library, self.fsync = build_slow_fsync(directory)
        self.hosts: Hosts | None = None
        self.mounts: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._disk_mib = disk_mib
        self._cleanups: list[Any] = []
        self._links: dict[str, str] = {}  # node -> the fault on its link
        for name, node in data["nodes"].items():
            if node["kind"] in DISK_NODES:
                node["data"] = f"disks/{name}/data"
        if self.network is None:
            self.hosts = Hosts(self.names, NETWORK)
            for name, node in data["nodes"].items():
                host = self.hosts.address[name]
                for holder in (node, node.get("write") or {}, node.get("read") or {}):
                    if "listen" in holder:
                        port = str(holder["listen"]).rsplit(":", 1)[1]
                        holder["listen"] = f"{host}:{port}"
        self.file.write_text(yaml.safe_dump(data, sort_keys=False))
        self.data = data

    # -- life ---------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> Cluster:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        for name in self.names:
            if self.kinds[name] in DISK_NODES:
                disk = self.directory / "disks" / name
                disk.mkdir(parents=True)
                if self.disks is None:
                    subprocess.run(
                        [
                            "mount",
                            "-t",
                            "tmpfs",
                            "-o",
                            f"size={self._disk_mib}m,mode=0700",
                            "tmpfs",
                            str(disk),
                        ],
                        check=True,
                        capture_output=True,
                    )
                    self.mounts[name] = disk
        env = {**os.environ, "CQRS_FLOW_SECRET": SECRET}
        slow = {}
        if self.slow_library is not None:
            slow = {"LD_PRELOAD": str(self.slow_library)}
        if self.hosts is not None:
            self.hosts.__enter__()
            for name in self.names:
                self.logs[name] = self.directory / f"{name}.log"
                flag = {"CQRS_FLOW_SLOW_FSYNC": str(self._slow_flag(name))}
                own = {**env, **slow, **flag} if self.kinds[name] in DISK_NODES and slow else env
                with open(self.logs[name], "w") as log:
                    self.processes[name] = self.hosts.run(
                        name,
                        [*cli(), "up", str(self.file), "--only", name],
                        env=own,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
            for name in self.names:
                self._wait_for(
                    name, rf"all 1 nodes ready on this host \(of {len(self.names)}\)", timeout
                )
        else:
            self.logs["all"] = self.directory / "up.log"
            with open(self.logs["all"], "w") as log:
                flag = {"CQRS_FLOW_SLOW_FSYNC": str(self._slow_flag("all"))}
                self.processes["all"] = subprocess.Popen(
                    [*cli(), "up", str(self.file)],
                    env={**env, **slow, **flag},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wait_for("all", r"all \d+ nodes ready", timeout)

    def _wait_for(self, log: str, pattern: str, timeout: float) -> None:
        regex = re.compile(pattern)
        wait_until(lambda: regex.search(self.logs[log].read_text()), timeout=timeout, interval=0.1)

    def stop(self) -> None:
        for name in list(self._links):
            with contextlib.suppress(subprocess.CalledProcessError):
                self.heal_link(name)
        for pid in self._node_pids().values():  # a paused node would not stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self.hosts is not None:
            self.hosts.__exit__(None, None, None)
        for name, disk in self.mounts.items():
            self.free_disk(name)
            self.heal_fsync(name)
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        self.mounts.clear()

    def output(self) -> str:
        return "\n".join(f"== {n}\n{p.read_text()}" for n, p in self.logs.items() if p.exists())

    # -- where things are ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        gateway = next(n for n in self.names if self.kinds[n] == "gateway")
        listen = self.data["nodes"][gateway]["listen"]
        return f"http://{listen}/graphql"

    def _node_pids(self) -> dict[str, int]:
        """The process of each node running now (its `up` restarts it with a new one)."""
        found = {}
        marker = str(self.file).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"node" in argv and marker in argv:
                index = argv.index(marker)
                if index + 1 < len(argv):
                    found[argv[index + 1].decode()] = int(entry.name)
        return found

    def pid(self, node: str) -> int:
        return wait_until(lambda: self._node_pids().get(node), timeout=30)

    def rss_and_files(self) -> dict[str, tuple[int, int]]:
        """Each node's resident memory (KiB) and open file descriptors, now."""
        found = {}
        for node, pid in self._node_pids().items():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
                files = len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, AttributeError):
                continue
            found[node] = (rss, files)
        return found

    # -- faults -------------------------------------------------------------------------------

    def kill(self, node: str) -> None:
        os.kill(self.pid(node), signal.SIGKILL)

    def pause(self, node: str) -> None:
        os.kill(self.pid(node), signal.SIGSTOP)

    def resume(self, node: str) -> None:
        for pid in [self._node_pids().get(node)]:
            if pid:
                os.kill(pid, signal.SIGCONT)

    def _link(self, node: str, fault: str) -> None:
        assert self.hosts is not None, self.network
        inside, bridge = self.hosts.link(node)
        namespace = self.hosts.namespace[node]
        self._links[node] = fault
        if fault == "partition":
            subprocess.run(
                ["ip", "-n", self.hosts.lan, "link", "set", bridge, "down"],
                check=True,
                capture_output=True,
            )
            return
        if self.netem is None:
            kind, shape = (
                "netem",
                {
                    "slow": ["delay", "100ms", "50ms"],
                    "lossy": ["loss", "20%"],
                    "reorder": ["delay", "20ms", "reorder", "25%", "50%"],
                }[fault],
            )
        else:
            assert fault != "reorder", self.netem
            kind = "tbf"
            shape = (
                ["rate", "128kbit", "burst", "4kb", "latency", "2s"]
                if fault == "slow"
                else ["rate", "10mbit", "burst", "3kb", "limit", "3kb"]
            )
        _tc(namespace, "qdisc", "replace", "dev", inside, "root", kind, *shape)
        _tc(self.hosts.lan, "qdisc", "replace", "dev", bridge, "root", kind, *shape)

    def partition(self, node: str) -> None:
        self._link(node, "partition")

    def slow_link(self, node: str) -> None:
        self._link(node, "slow")

    def lossy_link(self, node: str) -> None:
        self._link(node, "lossy")

    def reorder_link(self, node: str) -> None:
        self._link(node, "reorder")

    def heal_link(self, node: str) -> None:
        assert self.hosts is not None
        fault = self._links.pop(node, None)
        inside, bridge = self.hosts.link(node)
        if fault == "partition":
            subprocess.run(
                ["ip", "-n", self.hosts.lan, "link", "set", bridge, "up"],
                check=True,
                capture_output=True,
            )
        elif fault is not None:
            _tc(self.hosts.namespace[node], "qdisc", "del", "dev", inside, "root")
            _tc(self.hosts.lan, "qdisc", "del", "dev", bridge, "root")

    def fill_disk(self, node: str) -> int:
        """Fill the node's disk; the bytes written."""
        assert node in self.mounts, self.disks
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(self.mounts[node] / "filler", "wb", buffering=0) as filler:
            while len(chunk):
                try:
                    written += filler.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk = chunk[: len(chunk) // 2]
        return written

    def _slow_flag(self, node: str) -> Path:
        """The file whose presence slows the fsyncs of `node` (of every node on one host)."""
        return self.directory / f"slow-fsync-{node if self.hosts is not None else 'all'}"

    def slow_fsync(self, node: str) -> None:
        assert self.slow_library is not None, self.fsync
        self._slow_flag(node).touch()

    def heal_fsync(self, node: str) -> None:
        self._slow_flag(node).unlink(missing_ok=True)

    def free_disk(self, node: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.mounts[node] / "filler").unlink()


def tools_missing() -> str | None:
    """Why `tc` faults cannot run here, or None."""
    return None if shutil.which("tc") else "iproute2's tc is not installed"
