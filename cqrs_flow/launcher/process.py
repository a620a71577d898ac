"""A node as an OS process: its own process group, output merged and forwarded line by line,
a readiness pipe the node writes "ready" to, and, for a node spawned ahead of its turn, a "go"
pipe it waits on before it sets up.

`Process` is what the launcher needs of one; `NodeProcess` is the real thing. Signals go to the
whole process group, so whatever the node started goes with it; when to send which signal is
the launcher's decision (supervisor.py), not the process's.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Protocol

from cqrs_flow.contracts.process import ENV_GO_FD, ENV_READY_FD, HELD
from cqrs_flow.launcher.printer import Printer

__all__ = ["NodeProcess", "Process"]


class Process(Protocol):
    """One process of a node, as the launcher sees it (NodeProcess, or a test's fake)."""

    @property
    def pid(self) -> int | None:
        """None until started."""

    @property
    def returncode(self) -> int | None:
        """None while it runs (or before it starts)."""

    @property
    def ready_signal(self) -> asyncio.Event:
        """Set once the node writes "ready" to its readiness pipe."""

    @property
    def output(self) -> Sequence[str]:
        """Its last lines of output, for error reports."""

    async def start(self) -> None:
        """Spawn it. Asked to (its environment's ENV_GO_FD is HELD), it is spawned held: it
        imports its libraries and loads the topology, then waits for `release` before it
        connects or listens."""

    def release(self) -> None:
        """Let a held process go on (nothing for one that was not held, or released before)."""

    async def exited(self) -> int:
        """Its exit status, as soon as it has exited (what it started may still hold its output)."""

    async def wait(self) -> int:
        """Its exit status, once it has exited and its last output has been printed."""

    def send_signal(self, sig: int) -> None:
        """Signal its process group; nothing if it never started or the group is gone."""


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the launcher dies without stopping us (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class NodeProcess:
    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], printer: Printer
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.printer = printer
        self.ready_signal = asyncio.Event()
        self.output: deque[str] = deque(maxlen=30)  # the last lines, for error reports
        self._process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._go: int | None = None  # the write end of a held process's go pipe

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = {**self.env, ENV_READY_FD: str(write_fd), "PYTHONUNBUFFERED": "1"}
        passed = [write_fd]
        if env.get(ENV_GO_FD) == HELD:
            go_read, self._go = os.pipe()
            env[ENV_GO_FD] = str(go_read)
            passed.append(go_read)
        else:
            env.pop(ENV_GO_FD, None)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: we signal the whole group
                pass_fds=tuple(passed),
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            self._close_go()
            raise
        finally:
            for fd in passed:
                os.close(fd)
        loop = asyncio.get_running_loop()
        self._readers = [
            loop.create_task(self._pump_output()),
            loop.create_task(self._watch_ready(read_fd)),
        ]

    def release(self) -> None:
        if self._go is None:
            return
        try:
            os.write(self._go, b"go\n")
        except OSError:  # it has exited: the launcher sees that when it waits for it
            pass
        self._close_go()

    def _close_go(self) -> None:
        if self._go is not None:
            os.close(self._go)
            self._go = None

    async def _pump_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while True:
            try:
                raw = await self._process.stdout.readline()
            except ValueError:  # a line longer than the stream limit: take what there is
                raw = await self._process.stdout.read(64 * 1024)
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip("\n")
            self.output.append(text)
            self.printer.line(self.name, text)

    async def _watch_ready(self, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        try:
            if (await reader.readline()).startswith(b"ready"):
                self.ready_signal.set()
        finally:
            transport.close()

    async def exited(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    async def wait(self) -> int:
        code = await self.exited()
        self._close_go()
        await asyncio.gather(*self._readers, return_exceptions=True)  # drain the last output
        return code

    def send_signal(self, sig: int) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
