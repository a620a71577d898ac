"""`python -m bench`: the performance figures of cqrs-flow, measured on real processes.

    python -m bench                  all eight figures (about 7 minutes on 2 cores)
    python -m bench --quick          small counts, every figure (about 90 s): a smoke run
    python -m bench --only 1,3       some figures
    python -m bench --only 4 --sizes 1000,100000

Prints each figure as it goes and a table at the end (Markdown), and writes everything to
bench/results.json (--json PATH). See docs/PERFORMANCE.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, Figure, say

FIGURES = {
    1: "bench.fig1_write",
    2: "bench.fig2_delay",
    3: "bench.fig3_query",
    4: "bench.fig4_store",
    5: "bench.fig5_startup",
    6: "bench.fig6_mosquitto",
    7: "bench.fig7_replicas",
    8: "bench.readmodel",
}


@dataclass
class Context:
    quick: bool
    tmp: Path
    sizes: list[int] | None = None
    shared: dict[str, Any] = field(
        default_factory=dict
    )  # figures hand numbers on (e.g. the write rate)


def machine() -> dict[str, Any]:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    model = ""
    try:
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory": memory,
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores other processes kept busy over the last `seconds` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(total1 - total0, 1))


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cqrs_flow"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + (" (cqrs_flow/ modified)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def table(figures: list[Figure]) -> str:
    head = ["fig", "metric", "value", "floor", "ratio", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for fig in figures:
        if fig.error:
            lines.append(
                f"| {fig.number} | {fig.title}: did not complete | "
                f"{fig.error.splitlines()[-1][:100]} "
                "| | | | ERROR |"
            )
        for row in fig.rows:
            metric = row.metric + (f" — {row.note}" if row.note else "")
            lines.append(
                "| "
                + " | ".join(
                    [row.figure, metric, row.value, row.floor, row.ratio, row.target, row.result]
                )
                + " |"
            )
    return "\n".join(lines)


def parse_list(text: str, what: str) -> list[int]:
    try:
        return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--{what} takes numbers separated by commas, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", help="figures to run, e.g. 1,3 (default: all of 1-8)")
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run of about 90 s"
    )
    parser.add_argument(
        "--json", default=str(REPO / "bench" / "results.json"), help="where to write results"
    )
    parser.add_argument(
        "--sizes",
        help="figure 4's collection sizes (default 1000,100000,1000000; --quick: 1000,20000)",
    )
    args = parser.parse_args(argv)
    only = parse_list(args.only, "only") if args.only else list(FIGURES)
    unknown = [n for n in only if n not in FIGURES]
    if unknown:
        parser.error(f"no figure {unknown[0]}; figures are 1-8")

    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m bench", *(shlex.quote(a) for a in given)])
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "revision": git_revision(),
        "quick": args.quick,
        "machine": machine(),
    }
    m = info["machine"]
    say(
        f"cqrs-flow benchmarks — {info['date']} — {m['cores']} cores, {m['memory']}, "
        f"Python {m['python']}, "
        f"revision {info['revision'] or '?'}{' — quick' if args.quick else ''}"
    )
    busy = busy_cores()
    info["busy_cores_before"] = round(busy, 2)
    if busy > 0.3:
        say(
            f"note: other processes keep {busy:.1f} of the {m['cores']} cores busy: "
            "the figures will be lower and noisier than on an idle machine"
        )
    figures: list[Figure] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-bench-") as tmp:
        ctx = Context(
            quick=args.quick,
            tmp=Path(tmp),
            sizes=parse_list(args.sizes, "sizes") if args.sizes else None,
        )
        for number in only:
            module = importlib.import_module(FIGURES[number])
            title = module.__doc__.strip().splitlines()[0].rstrip(".")
            say(f"\n{title}")
            busy = busy_cores(0.5)
            started = time.monotonic()
            try:
                fig = module.run(ctx)
            except KeyboardInterrupt:
                raise
            except Exception:
                fig = Figure(number, title, error=traceback.format_exc())
                say(fig.error)
            fig.data["seconds"] = round(time.monotonic() - started, 1)
            fig.data["busy_cores_before"] = round(busy, 2)  # other processes' CPU use just before
            say(f"  ({fig.data['seconds']:.0f}s)")
            figures.append(fig)
    info["seconds"] = round(time.monotonic() - began, 1)
    text = table(figures)
    say(f"\nResults ({info['seconds']:.0f}s in all; {command}):\n")
    say(text)
    results = {**info, "table": text, "figures": [asdict(f) for f in figures]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    say(f"\nwrote {args.json}")
    return 1 if any(f.error for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
