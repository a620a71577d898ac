"""`up --watch`: file events on the files a running topology uses, gathered into one reload.

The directories of the watched files are watched (not the files), so that an editor that saves
by writing a new file and renaming it over the old one is seen; events on other files of those
directories are ignored. Events come from watchfiles (inotify on Linux, the native notification
APIs elsewhere). A save is often several events (truncate, write, rename; a formatter writing
the file again; `git checkout` changing several files): `Debouncer` waits until events have been
quiet for a moment and hands them over as one batch, which is one reload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import watchfiles

__all__ = ["QUIET", "Debouncer", "FileWatcher"]

QUIET = 0.3  # seconds without an event that end a burst
LONGEST = 3.0  # a burst that goes on longer than this is handed over anyway


class Debouncer:
    """Gathers changed paths until `quiet` seconds pass without another one (or `longest` since
    the first), and hands them over together."""

    def __init__(
        self,
        quiet: float = QUIET,
        longest: float = LONGEST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.quiet = quiet
        self.longest = longest
        self.clock = clock
        self.sleep = sleep
        self._paths: set[Path] = set()
        self._first = 0.0
        self._last = 0.0
        self._event = asyncio.Event()

    def add(self, paths: Iterable[Path]) -> None:
        paths = set(paths)
        if not paths:
            return
        now = self.clock()
        if not self._paths:
            self._first = now
        self._paths |= paths
        self._last = now
        self._event.set()

    async def next(self) -> frozenset[Path]:
        """The next burst of changed paths, once it is over."""
        while True:
            await self._event.wait()
            due = min(self._last + self.quiet, self._first + self.longest)
            wait = due - self.clock()
            if wait > 0:
                await self.sleep(wait)
                continue  # more may have come meanwhile: look again
            batch = frozenset(self._paths)
            self._paths.clear()
            self._event.clear()
            return batch


class FileWatcher:
    """Watches a set of files (which `watch` replaces after a reload) and feeds the changed
    ones to a Debouncer."""

    def __init__(self, files: Iterable[Path], debouncer: Debouncer) -> None:
        self.debouncer = debouncer
        self.files: frozenset[Path] = frozenset()
        self._changed = asyncio.Event()
        self.watch(files)

    def watch(self, files: Iterable[Path]) -> None:
        """Watch these files from now on (the watch starts again only if their directories
        change: a new watch takes a moment to be in place)."""
        directories = self.directories
        self.files = frozenset(p.resolve() for p in files)
        if self.directories != directories:
            self._changed.set()

    @property
    def directories(self) -> list[Path]:
        return sorted({p.parent for p in self.files if p.parent.is_dir()})

    def _wanted(self, _change: watchfiles.Change, path: str) -> bool:
        return Path(path) in self.files

    async def run(self) -> None:
        """Watch until cancelled, starting again on the new directories when they change."""
        while True:
            self._changed.clear()
            directories = self.directories
            if not directories:
                await self._changed.wait()
                continue
            async for changes in watchfiles.awatch(
                *directories,
                watch_filter=self._wanted,
                stop_event=self._changed,
                recursive=False,
                debounce=int(self.debouncer.quiet * 1000),
                step=50,
            ):
                self.debouncer.add(Path(path) for _, path in changes)
