"""One `cqrs-flow test` run: the case files of a topology, checked all first, then each case
on a fresh system; an exit status of 0 only when every case selected passed."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cqrs_flow.errors import CqrsFlowError
from cqrs_flow.testing.cases import Case, CaseFile, load_cases
from cqrs_flow.testing.report import case_line, failure_text, summary, write_junit
from cqrs_flow.testing.runner import Outcome, run_case
from cqrs_flow.testing.system import prepare, run_secret

__all__ = ["case_files", "run_session"]


def case_files(topology: Path) -> list[Path]:
    """The case files of a topology when none are named: `<stem>.cases.yaml` and
    `<stem>.<anything>.cases.yaml` beside it (topology.cases.yaml, topology.auth.cases.yaml)."""
    here, stem = topology.parent, topology.stem
    found = [here / f"{stem}.cases.yaml", *here.glob(f"{stem}.*.cases.yaml")]
    return sorted({path for path in found if path.is_file()})


def selected(case: Case, keywords: Sequence[str]) -> bool:
    """Whether `-k` selects `case`: its name contains one of the keywords (any case), or, for a
    keyword "not X", does not contain X. No keyword selects every case."""
    if not keywords:
        return True
    name = case.name.lower()
    wanted = [k.lower() for k in keywords if not k.lower().startswith("not ")]
    unwanted = [k.lower()[4:].strip() for k in keywords if k.lower().startswith("not ")]
    if any(word in name for word in unwanted):
        return False
    return not wanted or any(word in name for word in wanted)


def run_session(
    topology: Path,
    files: Sequence[Path],
    keywords: Sequence[str] = (),
    junit: Path | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Run the cases of `files` against `topology`; 0 when all passed, 1 otherwise. Raises
    CqrsFlowError (TopologyError for a broken case file, with key path and line) before any
    case runs."""
    if not files:
        raise CqrsFlowError(
            f"no case files for {topology}: name them, or put {topology.stem}.cases.yaml beside "
            "it (docs/TESTING.md)"
        )
    loaded = [load_cases(path) for path in files]
    chosen = [(f, c) for f in loaded for c in f.cases if selected(c, keywords)]
    deselected = sum(len(f.cases) for f in loaded) - len(chosen)
    began = time.perf_counter()
    outcomes = asyncio.run(_run(topology, chosen, echo))
    seconds = time.perf_counter() - began
    failed = [(file, outcome) for file, outcome in outcomes if not outcome.passed]
    if failed:
        echo("\nFAILURES")
        for file, outcome in failed:
            echo(failure_text(file, outcome))
    echo(summary(outcomes, seconds, deselected))
    if junit is not None:
        write_junit(junit, topology.name, outcomes, failure_text)
    return 1 if failed or not outcomes else 0


async def _run(
    topology: Path, chosen: list[tuple[CaseFile, Case]], echo: Callable[[str], None]
) -> list[tuple[str, Outcome]]:
    outcomes: list[tuple[str, Outcome]] = []
    with tempfile.TemporaryDirectory(prefix="cqrs-flow-test-") as directory, run_secret():
        prepared = prepare(topology, Path(directory))
        for file, case in chosen:
            outcome = await run_case(prepared, case)
            name = file.path.name
            echo(case_line(name, outcome))
            outcomes.append((name, outcome))
    return outcomes
