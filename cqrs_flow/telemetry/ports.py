"""Who holds a port: "port already in use" said with the address and, where the OS tells, the
process listening there (Linux: /proc/net/tcp* and the socket links of /proc/<pid>/fd)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from cqrs_flow.topology.model import Address

__all__ = ["in_use", "port_holder", "taken"]

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def in_use(error: OSError) -> bool:
    """Whether a bind failed because something else listens there."""
    return error.errno == errno.EADDRINUSE


def taken(address: Address) -> bool:
    """Whether binding `address` (TCP) fails because it is in use now."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address.host, address.port))
    except OSError as exc:
        return in_use(exc)
    return False


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """ "pid 1234 (mosquitto -c ...)" for the process listening on TCP `port`, "another user's
    process" when the OS will not say whose, None when nothing here says."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    links = {f"socket:[{inode}]" for inode in inodes}
    for pid_dir in proc.iterdir() if proc.is_dir() else ():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in links:
                    return f"pid {pid_dir.name} ({_command(pid_dir)})"
        except OSError:  # gone, or not ours to look at
            continue
    return "another user's process"


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == _LISTEN
                and int(fields[1].rpartition(":")[2], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def _command(pid_dir: Path) -> str:
    try:
        words = (pid_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text if len(text) <= 80 else text[:77] + "..."
