"""The codebase's own checks, run by `pytest` so that CI runs them: lint, format, types, layers.

Each check is the tool of the `test` extra, run from this environment's bin directory at the
repository's root with the configuration there (pyproject.toml, setup.cfg); a test fails with
the tool's own report.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(tool: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`tool` with `args` at the repository's root; a tool that is not installed fails the test."""
    executable = BIN / tool
    if not executable.exists():
        pytest.fail(f"{tool} is not installed in {BIN}: pip install -e '.[test]'")
    return subprocess.run(
        [str(executable), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def passes(result: subprocess.CompletedProcess[str]) -> None:
    """Fail with the tool's report unless it exited 0."""
    if result.returncode != 0:
        command = " ".join([Path(result.args[0]).name, *result.args[1:]])
        pytest.fail(
            f"`{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )


def test_ruff_finds_nothing() -> None:
    passes(run("ruff", "check", "."))


def test_the_code_is_formatted() -> None:
    passes(run("ruff", "format", "--check", "."))


def test_the_types_check() -> None:
    # files, strictness and the cache (.mypy_cache) come from pyproject.toml
    passes(run("mypy"))


def test_the_layer_contract_is_kept() -> None:
    passes(run("lint-imports", "--no-logo"))


def test_a_broken_layer_contract_fails_the_check(tmp_path: Path) -> None:
    """The contract check can fail: nodes do import the topology, so forbidding it breaks."""
    config = tmp_path / "broken.ini"
    config.write_text(
        textwrap.dedent(
            """\
            [importlinter]
            root_package = cqrs_flow

            [importlinter:contract:broken]
            name = Nodes may not import the topology (known to be broken)
            type = forbidden
            source_modules =
                cqrs_flow.nodes
            forbidden_modules =
                cqrs_flow.topology
            """
        )
    )
    result = run("lint-imports", "--no-logo", str(config))
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "Contracts: 0 kept, 1 broken." in report, report
