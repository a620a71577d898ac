"""Stand-ins the gateway's unit tests share."""

from __future__ import annotations


class FakeMqtt:
    """The gateway's gmqtt client without a broker: publishes are kept, events recorded."""

    def __init__(self, events: list[str] | None = None, connected: bool = False) -> None:
        self.events = [] if events is None else events
        self.is_connected = connected
        self.published: list[tuple[str, bytes]] = []

    def subscribe(self, topic: str, qos: int = 0) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.published.append((topic, payload))

    async def disconnect(self) -> None:
        self.is_connected = False
        self.events.append("mqtt disconnected")
