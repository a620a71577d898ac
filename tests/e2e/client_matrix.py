"""The client matrix's shared parts (tests/e2e/test_client_*.py, marker `clients`): its system,
tests/clients/topology.yaml with free ports, one per test module; the npm clients, installed
from tests/clients/package-lock.json; and the command-line tools it needs, which .ci/run
installs from Debian (a tool missing fails the test under CI and skips it elsewhere)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from system import System, prepare

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
TOPOLOGY = CLIENTS / "topology.yaml"
# The outside gRPC client's bearer token (the topology reads it from MATRIX_CRM_TOKEN).
CRM_TOKEN = "matrix-crm-sync-token-0123456789abcdef"


def start_matrix(tmp_path_factory: pytest.TempPathFactory, name: str) -> System:
    """`cqrs-flow up` of the matrix's system, on free ports."""
    topology = prepare("clients.yaml", tmp_path_factory.mktemp(name), source=TOPOLOGY)
    return System(topology, env={"MATRIX_CRM_TOKEN": CRM_TOKEN}).start()


def tool(name: str, package: str) -> str:
    """The path of the command `name`, from the Debian package `package`."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(reason + "; .ci/run installs it")
        pytest.skip(reason)
    return found


def node_modules() -> Path:
    """tests/clients/node_modules as package-lock.json pins it, installed with `npm ci` when the
    lock changed since the last install. With $CQRS_FLOW_CACHE set (CI keeps that directory
    between runs), npm's cache and the installed packages are kept there, and
    tests/clients/node_modules links to them: a fresh clone installs nothing again."""
    tool("node", "nodejs")
    npm = tool("npm", "npm")
    lock = hashlib.sha256((CLIENTS / "package-lock.json").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ["CQRS_FLOW_CACHE"]) if os.environ.get("CQRS_FLOW_CACHE") else None
    home = cache / "clients" / lock if cache is not None else CLIENTS
    modules = home / "node_modules"
    stamp = modules / ".installed-from-lock"
    if not (stamp.exists() and stamp.read_text() == lock):
        command = [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]
        if cache is not None:
            shutil.rmtree(home.parent, ignore_errors=True)  # installs from older locks
            home.mkdir(parents=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy(CLIENTS / name, home / name)
            command.append(f"--cache={cache / 'npm'}")
        installed = subprocess.run(
            command, cwd=home, capture_output=True, text=True, timeout=600, check=False
        )
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
        stamp.write_text(lock)
    if home != CLIENTS:
        link = CLIENTS / "node_modules"
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)  # an install of its own, replaced by the cached one
        link.symlink_to(modules, target_is_directory=True)
    return modules


def run_node(script: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run tests/clients/`script` with Node.js and return the JSON it prints."""
    node = tool("node", "nodejs")
    done = subprocess.run(
        [node, script, *args],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{script} {args} failed:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_bin(command: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run an npm package's command (node_modules/.bin); the finished process."""
    return subprocess.run(
        [str(CLIENTS / "node_modules" / ".bin" / command), *args],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def served_sdl(system: System) -> str:
    """The SDL the system's gateway serves: the user's file, then what cqrs-flow documents it
    adds (commandStatus, commandSettled, the list types), as the gateway works it out."""
    from cqrs_flow.contracts.gateway import gateway_plan
    from cqrs_flow.nodes.gateway.resolvers import served_sdl as of_plan
    from cqrs_flow.topology.problems import Problems

    topology = system.topology
    plan = gateway_plan(topology, system.gateway, system.protos, Problems(topology.located))
    assert plan is not None
    return of_plan(plan)
