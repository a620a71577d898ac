"""One printer owns the terminal: every line of the nodes' output, and the launcher's own, is
prefixed with the time and its source's name (padded to one width, coloured by name on a
terminal), and written whole and flushed, so lines of different nodes never interleave.

With JSON logs (`up --log-format json`) every line is one JSON object instead: a node's own
JSON lines go out as they came (with `node` set), anything else a node prints and the
launcher's lines become {"time", "level", "node", "message"}."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

__all__ = ["Printer"]

_COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_RESET = "\033[0m"


class Printer:
    def __init__(
        self,
        stream: TextIO | None = None,
        colour: bool | None = None,
        clock: Callable[[], float] = time.time,
        json_lines: bool = False,
    ) -> None:
        self.stream = stream or sys.stdout
        self.colour = self.stream.isatty() if colour is None else colour
        self.clock = clock
        self.json_lines = json_lines
        self.width = 9
        self._colours: dict[str, str] = {}
        self._muted: set[str] = set()

    def set_names(self, names: list[str]) -> None:
        self.width = max([self.width, *map(len, names)])
        for i, name in enumerate(names):
            self._colours[name] = _COLOURS[i % len(_COLOURS)]

    def mute(self, names: Iterable[str]) -> None:
        """Print nothing more from these processes (held ones stopped unheard: see Launcher)."""
        self._muted.update(names)

    def line(self, name: str, text: str, level: str = "INFO") -> None:
        if name in self._muted:
            return
        if self.json_lines:
            self.stream.write(self._json(name, text, level) + "\n")
            self.stream.flush()
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        prefix = f"{stamp} {name:<{self.width}} |"
        if self.colour:
            colour = self._colours.get(name, "1")
            prefix = f"\033[{colour}m{prefix}{_RESET}"
        self.stream.write(f"{prefix} {text}\n")
        self.stream.flush()

    def system(self, text: str) -> None:
        """A line from the launcher itself."""
        self.line("cqrs-flow", text, "ERROR" if text.startswith("error:") else "INFO")

    def _json(self, name: str, text: str, level: str) -> str:
        if text.startswith("{"):
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            if isinstance(event, dict):
                event.setdefault("node", name)
                return json.dumps(event)
        created = self.clock()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        return json.dumps(
            {
                "time": f"{stamp}.{int(created % 1 * 1000):03d}Z",
                "level": level,
                "node": name,
                "message": text,
            }
        )
