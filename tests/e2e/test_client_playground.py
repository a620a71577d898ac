"""The playground, as a user runs it in a browser: a real headless Chromium opens the gateway's
page (its assets served by the gateway, nothing from elsewhere), runs a mutation and then the
commandSettled subscription over its WebSocket, and shows the command applied.

Chromium and its driver are Debian's (.ci/run installs them), driven by selenium."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from system import System, prepare, wait_until
from test_gateway_browser import FLAGS, _browser_or_skip

pytestmark = pytest.mark.clients

# GraphiQL 3 keeps each editor's CodeMirror 5 instance on its element.
EDITOR = ".graphiql-query-editor .CodeMirror"
RESULT = ".result-window .CodeMirror"


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[System]:
    # A write delay long enough for the subscription to be waiting when the command is applied.
    topology = prepare(
        "contacts_fast.yaml", tmp_path_factory.mktemp("playground"), **{"nodes.writer.delay": "2s"}
    )
    running = System(topology).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cqrs-flow-playground-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def run_in_playground(driver: Any, operation: str, done: str, timeout: float = 20.0) -> str:
    """Type `operation` into the playground, run it, and return the result pane's text once it
    contains `done`."""
    driver.execute_script(
        "document.querySelector(arguments[0]).CodeMirror.setValue(arguments[1])", EDITOR, operation
    )
    wait_until(
        lambda: (
            driver.execute_script(
                "return document.querySelector(arguments[0]).CodeMirror.getValue()", EDITOR
            )
            == operation
        )
    )
    time.sleep(1)  # GraphiQL reads the operation's name from the editor after a pause
    driver.find_element("css selector", ".graphiql-execute-button").click()

    def result() -> str | None:
        text = driver.execute_script(
            "var e = document.querySelector(arguments[0]); return e && e.CodeMirror.getValue()",
            RESULT,
        )
        return text if text and done in text else None

    try:
        return str(wait_until(result, timeout=timeout, interval=0.1))
    except AssertionError:
        shown = driver.execute_script(
            "var e = document.querySelector(arguments[0]); return e && e.CodeMirror.getValue()",
            RESULT,
        )
        raise AssertionError(f"the playground shows {shown!r}, not {done!r}") from None


def test_the_playground_runs_a_subscription_over_its_websocket(system, browser):
    origin = system.gateway.listen.target
    browser.get_log("performance")
    browser.get(f"http://{origin}/")
    # Ready once GraphiQL has introspected the schema: its documentation explorer shows it.
    wait_until(
        lambda: browser.execute_script(
            "var e = document.querySelector('.graphiql-doc-explorer-content');"
            "return !!e && e.innerText.includes('Query')"
        ),
        20,
    )

    added = json.loads(
        run_in_playground(
            browser,
            'mutation { addContact(name: "Playground") { status command_id } }',
            "command_id",
        )
    )["data"]["addContact"]
    assert added["status"] == "OK"
    started = time.monotonic()
    settled = json.loads(
        run_in_playground(
            browser,
            f'subscription {{ commandSettled(id: "{added["command_id"]}") {{ id state }} }}',
            "APPLIED",
        )
    )
    assert settled == {"data": {"commandSettled": {"id": added["command_id"], "state": "APPLIED"}}}
    assert time.monotonic() - started < 15

    # Fully offline: every request the page made went to the gateway, and the subscription
    # over a WebSocket of its own (graphql-transport-ws).
    events = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    requested = {
        e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
    }
    on_the_network = {url for url in requested if url.startswith(("http:", "https:", "ws"))}
    assert on_the_network and all(url.startswith(f"http://{origin}/") for url in on_the_network)
    sockets = [e["params"]["url"] for e in events if e["method"] == "Network.webSocketCreated"]
    assert sockets == [f"ws://{origin}/graphql"]
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
