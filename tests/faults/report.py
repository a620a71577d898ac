"""The table of docs/RELIABILITY.md from the reports the nemesis writes:

    CQRS_FLOW_FAULTS_REPORT=reports pytest -m faults
    python tests/faults/report.py reports

One row per fault and node, over every run in the folder: how many times it was injected,
the mutations sent from its start until all was applied again (accepted, and of those applied
as the final check found them; refused; without an answer), of those lost (or out of order, or
missing from the change log) and applied twice (in the store or in the log), and the longest
time from the fault's end until every mutation accepted so far was in the store (and every
projection had caught up). Then a row per run, and a row per run of the change log's check.
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
            row["lost"] += sum(found.get(k, 0) for k in ("lost", "order", "log_missing"))
            row["twice"] += found.get("twice", 0) + found.get("log_twice", 0)
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
        "| system | seed | faults | sent | accepted | refused | no answer "
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
    lines.append("")
    lines.append(
        "| system | seed | changes | missing | superseded | twice | out of order | refused "
        "| stranger | replay differs | no answer: logged / not | projections: violations |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        g = r.get("log") or {}
        if not g:
            continue
        models = ", ".join(f"{n} {v}" for n, v in (r.get("projections") or {}).items()) or "-"
        lines.append(
            f"| {r['system']} | {r['seed']} | {g['changes']} | {g['log_missing']} | "
            f"{g.get('superseded', 0)} | {g['log_twice']} | {g['log_order']} | "
            f"{g['log_refused']} | {g['log_stranger']} | "
            f"{g['replay']} | {g['no_answer_logged']} / {g['no_answer_not_logged']} | {models} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
