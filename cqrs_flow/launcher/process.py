"""A node as an OS process: its own process group, output merged and forwarded line by line,
a readiness pipe, and a stop that escalates from SIGTERM to SIGKILL."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping

from cqrs_flow.contracts.process import ENV_READY_FD
from cqrs_flow.launcher.printer import Printer

__all__ = ["NodeProcess"]


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
        self._readers: list[asyncio.Task] = []

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = {**self.env, ENV_READY_FD: str(write_fd), "PYTHONUNBUFFERED": "1"}
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: we signal the whole group
                pass_fds=(write_fd,),
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        self._readers = [
            loop.create_task(self._pump_output()),
            loop.create_task(self._watch_ready(read_fd)),
        ]

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

    async def wait(self) -> int:
        assert self._process is not None
        code = await self._process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)  # drain the last output
        return code

    async def stop(self, grace: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds. Safe to call twice."""
        if self._process is None:
            return None
        if self._process.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._process.wait()), grace)
            except asyncio.TimeoutError:
                self.printer.system(f"{self.name} did not stop within {grace:g}s; killing it")
        self._signal(signal.SIGKILL)  # also whatever the node started and left behind
        return await self.wait()

    def kill(self) -> None:
        """SIGKILL the process group now; `stop` then only collects the exit status."""
        if self._process is not None and self._process.returncode is None:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self._process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
