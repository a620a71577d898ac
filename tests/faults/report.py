"""The table of docs/RELIABILITY.md from the reports the nemesis writes:

    CQRS_FLOW_FAULTS_REPORT=reports pytest -m faults
    python tests/faults/report.py reports

One row per fault and node kind, over every run in the folder: how many times it was injected,
the mutations sent from its start until all was applied again (accepted, and of those applied
as the final check found them; refused; without an answer), of those lost (or out of order) and
applied twice, and the longest time from the fault's end until every mutation accepted so far
was in the store.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def table(folder: Path) -> str:
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {
            "times": 0,
            "ok": 0,
            "error": 0,
            "no_answer": 0,
            "lost": 0,
            "twice": 0,
            "slowest": 0.0,
            "missed": 0,
        }
    )
    runs = []
    for path in sorted(folder.glob("*.json")):
        report = json.loads(path.read_text())
        runs.append(report)
        for outcome in report["outcomes"]:
            row = rows[(outcome["fault"]["kind"], outcome["fault"]["node"])]
            row["times"] += 1
            for what in ("ok", "error", "no_answer"):
                row[what] += outcome["during"].get(what, 0)
            found = outcome.get("violations", {})
            row["lost"] += found.get("lost", 0) + found.get("order", 0)
            row["twice"] += found.get("twice", 0)
            if outcome["recovered"] is None:
                row["missed"] += 1
            else:
                row["slowest"] = max(row["slowest"], outcome["recovered"])
    lines = [
        "| fault | node | times | accepted | applied | refused | no answer | lost | twice "
        "| seconds until all applied (most) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (kind, node), row in sorted(rows.items()):
        slowest = f"{row['slowest']:.2f}" + (
            f" ({row['missed']} not in 30 s)" if row["missed"] else ""
        )
        lines.append(
            f"| {kind} | {node} | {row['times']} | {row['ok']} | {row['ok'] - row['lost']} | "
            f"{row['error']} | "
            f"{row['no_answer']} | {row['lost']} | {row['twice']} | {slowest} |"
        )
    lines.append("")
    lines.append(
        "| system | profile seed | faults | sent | accepted | refused | no answer "
        "| lost | twice | order | error applied | statuses | seconds |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        c, k = r["counts"], r["check"]
        lines.append(
            f"| {r['system']} | {r['seed']} | {len(r['outcomes'])} | {c['sent']} | {c['ok']} | "
            f"{c['error']} | {c['no_answer']} | {k['lost']} | {k['twice']} | {k['order']} | "
            f"{k['error']} | {', '.join(f'{s} {n}' for s, n in r['statuses'].items())} | "
            f"{r['seconds']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
