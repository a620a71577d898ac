"""watch: bursts of file events become one batch (Debouncer), and the watcher reports changes of
the files it watches, also when an editor replaces a file, and of no other file."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from cqrs_flow.launcher.watch import Debouncer, FileWatcher


def test_a_burst_of_events_is_one_batch_handed_over_once_quiet():
    async def main() -> tuple[frozenset[Path], float, float]:
        debouncer = Debouncer(quiet=0.1, longest=5.0)
        batch = asyncio.ensure_future(debouncer.next())
        for i in range(10):  # ten events, 20 ms apart: one burst
            debouncer.add([Path(f"/p/{i % 3}")])
            last = time.monotonic()
            await asyncio.sleep(0.02)
        got = await batch
        return got, last, time.monotonic()

    got, last, handed = asyncio.run(main())
    assert got == {Path("/p/0"), Path("/p/1"), Path("/p/2")}
    assert handed - last >= 0.1  # not before it had been quiet for `quiet`


def test_events_apart_by_more_than_quiet_are_two_batches():
    async def main() -> list[frozenset[Path]]:
        debouncer = Debouncer(quiet=0.05)
        debouncer.add([Path("/a")])
        first = await debouncer.next()
        await asyncio.sleep(0.1)
        debouncer.add([Path("/b")])
        return [first, await debouncer.next()]

    assert asyncio.run(main()) == [{Path("/a")}, {Path("/b")}]


def test_a_burst_that_never_ends_is_handed_over_after_longest():
    async def main() -> tuple[float, frozenset[Path]]:
        debouncer = Debouncer(quiet=0.1, longest=0.3)
        began = time.monotonic()

        async def feed() -> None:
            while True:
                debouncer.add([Path("/busy")])
                await asyncio.sleep(0.02)

        feeding = asyncio.ensure_future(feed())
        try:
            got = await debouncer.next()
            return time.monotonic() - began, got
        finally:
            feeding.cancel()

    elapsed, got = asyncio.run(main())
    assert got == {Path("/busy")}
    assert 0.3 <= elapsed < 1.0


def test_no_event_no_batch():
    async def main() -> bool:
        debouncer = Debouncer(quiet=0.01)
        debouncer.add([])
        try:
            await asyncio.wait_for(debouncer.next(), 0.1)
        except asyncio.TimeoutError:
            return True
        return False

    assert asyncio.run(main())


def test_the_watcher_sees_a_replaced_file_and_ignores_others_in_its_directory(tmp_path):
    watched = tmp_path / "topology.yaml"
    watched.write_text("a: 1\n")
    other = tmp_path / "notes.txt"

    async def changed(write: Callable[[], None]) -> frozenset[Path]:
        """Write until the watcher reports a change (its watch may take a moment to be in
        place on a busy machine)."""
        for _ in range(20):
            write()
            try:
                return await asyncio.wait_for(debouncer.next(), 1.0)
            except asyncio.TimeoutError:
                continue
        raise AssertionError("no change seen")

    def replace() -> None:
        other.write_text("not watched\n")
        # as editors save: a new file, renamed over the old one
        partial = tmp_path / ".topology.yaml.tmp"
        partial.write_text("a: 2\n")
        os.replace(partial, watched)

    later = tmp_path / "schema" / "s.graphql"
    debouncer = Debouncer(quiet=0.1)

    async def main() -> list[frozenset[Path]]:
        watcher = FileWatcher([watched], debouncer)
        task = asyncio.ensure_future(watcher.run())
        try:
            first = await changed(replace)
            # a file watched from now on, in another directory
            later.parent.mkdir()
            later.write_text("type Query { a: Int }\n")
            watcher.watch([watched, later])
            second = await changed(lambda: later.write_text("type Query { b: Int }\n"))
            return [first, second]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    first, second = asyncio.run(main())
    assert first == {watched.resolve()}
    assert second == {(tmp_path / "schema" / "s.graphql").resolve()}
