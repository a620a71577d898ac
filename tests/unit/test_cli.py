"""The cqrs-flow command, run in-process with click's CliRunner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cqrs_flow import __version__
from cqrs_flow.cli import main
from cqrs_flow.security.tokens import ENV_SECRET, ENV_TOKEN

from .helpers import ROOT, line_of

SECRET = "0123456789abcdef" * 4


@pytest.fixture
def runner(proto_cache, monkeypatch) -> CliRunner:
    monkeypatch.delenv(ENV_SECRET, raising=False)
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    return CliRunner()


def test_validate_prints_the_start_order(runner, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(main, ["validate", "topology.yaml"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "topology.yaml: valid — 5 nodes, 3 commands; "
        "start order: {broker, store} -> {reader, writer} -> gateway "
        "(2 plugin(s) not imported: --import-plugins checks them)\n"
    )


def test_validate_reports_a_topology_problem_with_path_and_line(runner, make_project):
    path = make_project(yaml=[("delay: 3s", "dealy: 3s")])
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    line = line_of(path.read_text(), "dealy:")
    assert f"{path}:{line}: nodes.writer.dealy: unknown key; did you mean 'delay'?" in result.stderr
    assert "valid —" not in result.output


def test_validate_reports_every_problem(runner, make_project):
    path = make_project(
        yaml=[("delay: 3s", "dealy: 3s"), ("listen: 127.0.0.1:8080", "listen: 127.0.0.1:1883")]
    )
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{path}: 2 problems"
    assert "nodes.writer.dealy" in result.stderr and "nodes.gateway.listen" in result.stderr


def test_validate_reports_contract_problems(runner, make_project):
    path = make_project(yaml=[("GetContact: get", "GetContact: insert")])
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    line = line_of(path.read_text(), "GetContact: insert")
    assert (
        f"{path}:{line}: nodes.store.read.rpcs.GetContact: 'insert' is a write operation; "
        "the read service may only get, list"
    ) in result.stderr


def test_validate_of_a_missing_file(runner, tmp_path):
    result = runner.invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read topology" in result.stderr


def test_validate_of_a_broken_proto(runner, make_project):
    path = make_project(proto=[("message Contact {", "message Contact {{")])
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: protoc could not compile contacts.proto")


def test_node_with_an_unknown_name(runner, monkeypatch, restore_logging):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(main, ["node", "topology.yaml", "nosuchnode"], env={ENV_SECRET: SECRET})
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no node named 'nosuchnode' in topology.yaml; "
        "nodes: broker, store, reader, writer, gateway\n"
    )


def test_node_without_credentials(runner, monkeypatch, restore_logging):
    monkeypatch.chdir(ROOT)
    result = runner.invoke(main, ["node", "topology.yaml", "writer"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: node 'writer' has no credentials")
    assert ENV_SECRET in result.stderr


def test_node_of_a_broken_topology(runner, make_project, restore_logging):
    path = make_project(yaml=[("delay: 3s", "dealy: 3s")])
    result = runner.invoke(main, ["node", str(path), "writer"], env={ENV_SECRET: SECRET})
    assert result.exit_code == 1
    assert "nodes.writer.dealy: unknown key" in result.stderr


def test_usage_errors_exit_2(runner):
    assert runner.invoke(main, ["validate"]).exit_code == 2
    assert runner.invoke(main, ["nosuchcommand"]).exit_code == 2


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"cqrs-flow, version {__version__}"


def test_validate_runs_no_plugin_code_unless_asked(runner, make_project):
    """A plugin module's import side effects do not run in `validate`; --import-plugins runs
    them and checks the plugins (here: a class the module does not have)."""
    path = make_project(
        yaml=[("plugins: [plugins.contacts.ReverseName]", "plugins: [hostile.Nothing]")]
    )
    marker = path.parent / "imported"
    (path.parent / "hostile.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    )
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "plugin(s) not imported: --import-plugins checks them" in result.output
    assert not marker.exists()

    result = runner.invoke(main, ["validate", "--import-plugins", str(path)])
    assert result.exit_code == 1
    assert marker.read_text() == "ran"
    assert "nodes.reader.plugins[0]" in result.stderr and "Nothing" in result.stderr
