"""The event loop a node runs on: uvloop's where it is installed, asyncio's on request."""

from __future__ import annotations

import asyncio

import pytest

from cqrs_flow.nodes import ENV_EVENT_LOOP, run_loop


def loop_module(monkeypatch: pytest.MonkeyPatch, choice: str | None) -> str:
    if choice is None:
        monkeypatch.delenv(ENV_EVENT_LOOP, raising=False)
    else:
        monkeypatch.setenv(ENV_EVENT_LOOP, choice)
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_loop(main())
    return seen[0]


def test_a_node_runs_on_uvloop_where_it_is_installed(monkeypatch):
    pytest.importorskip("uvloop")
    assert loop_module(monkeypatch, None).startswith("uvloop")


def test_a_node_runs_on_asyncio_s_loop_when_told_to(monkeypatch):
    assert loop_module(monkeypatch, "asyncio").startswith("asyncio")


def test_a_node_runs_on_asyncio_s_loop_without_uvloop(monkeypatch):
    import builtins

    real = builtins.__import__

    def without_uvloop(name, *args, **kwargs):
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_uvloop)
    assert loop_module(monkeypatch, None).startswith("asyncio")
