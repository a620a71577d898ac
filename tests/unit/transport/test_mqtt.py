"""mqtt: the largest command and packet a broker's nodes send, from the writers' payload_bytes."""

from __future__ import annotations

import asyncio
import functools
import logging

from cqrs_flow.transport.mqtt import PACKET_HEADROOM, command_bytes, max_packet_bytes


def test_the_limits_follow_the_largest_payload_bytes_of_the_brokers_writers(edit, parse):
    shipped = parse(edit())
    assert command_bytes(shipped, "broker") == 1024 * 1024  # the writer's default
    assert max_packet_bytes(shipped, "broker") == 1_398_104 + PACKET_HEADROOM  # 4/3 of 1 MiB
    larger = parse(edit(("    kind: writer\n", "    kind: writer\n    payload_bytes: 3000000\n")))
    assert command_bytes(larger, "broker") == 3_000_000
    assert max_packet_bytes(larger, "broker") == 4_000_000 + PACKET_HEADROOM
    assert command_bytes(larger, "no-such-broker") == 1024 * 1024  # no writers: the default


def test_the_keep_alive_is_whole_seconds_of_the_brokers_setting(edit, parse):
    from cqrs_flow.transport.mqtt import keep_alive

    shipped = parse(edit())
    broker = shipped.nodes["broker"]
    assert (broker.keep_alive, broker.connect_timeout, broker.reconnect_delay) == (3.0, 1.0, 0.5)
    assert keep_alive(broker) == 3
    changed = parse(
        edit(
            (
                "    kind: broker\n",
                "    kind: broker\n    keep_alive: 1500ms\n    connect_timeout: 2s\n",
            )
        )
    )
    assert keep_alive(changed.nodes["broker"]) == 2  # MQTT counts whole seconds: rounded up
    assert changed.nodes["broker"].connect_timeout == 2.0


def test_a_connect_that_hangs_gives_up_after_connect_timeout_with_an_os_error(monkeypatch):
    """A broker cut off answers no SYN: the connect would wait out the kernel's retries (over a
    minute); each try, the first and every reconnect, ends after connect_timeout instead, as an
    OSError, which gmqtt's reconnect loop and `connect` retry."""
    import asyncio
    import time

    import pytest
    from gmqtt.mqtt.connection import MQTTConnection

    from cqrs_flow.transport.mqtt import BoundedClient

    async def never(*args, **kwargs):
        await asyncio.sleep(3600)

    monkeypatch.setattr(MQTTConnection, "create_connection", never)

    async def scenario():
        client = BoundedClient("c")
        client.connect_timeout = 0.2
        began = time.monotonic()
        with pytest.raises(OSError, match=r"no connection within 0\.2s"):
            await client._create_connection(
                "10.0.0.1", 1883, ssl=False, clean_session=True, keepalive=3
            )
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 1.0


def test_a_cancelled_reconnect_is_not_logged_as_a_failure(caplog):
    """A node stopping while gmqtt waited to reconnect: the reconnect is cancelled, and gmqtt's
    done-callback asked it for its exception, which logged a CancelledError traceback."""
    from cqrs_flow.transport.mqtt import BoundedClient

    async def scenario():
        client = BoundedClient("node-1")
        handler = client._package_handler
        loop = asyncio.get_running_loop()

        async def reconnect() -> None:
            await asyncio.sleep(10)

        waiting = loop.create_task(reconnect())
        waiting.add_done_callback(
            functools.partial(handler._handle_exception_in_future, msg="reconnect failed")
        )
        failed = loop.create_future()
        failed.add_done_callback(
            functools.partial(handler._handle_exception_in_future, msg="reconnect failed")
        )
        failed.set_exception(OSError("no route to host"))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.sleep(0)
        client._handle_exception_in_future(waiting)  # the client's own callback too

    errors = []
    loop_handler = lambda loop, context: errors.append(context)  # noqa: E731
    with caplog.at_level(logging.WARNING):
        runner = asyncio.new_event_loop()
        runner.set_exception_handler(loop_handler)
        try:
            runner.run_until_complete(scenario())
        finally:
            runner.close()
    assert errors == []
    assert [r.getMessage() for r in caplog.records] == [
        "[MqttPackageHandler] reconnect failed: no route to host"
    ]
