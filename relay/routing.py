"""Message delivery between connections, behind an interface a Redis-backed router can replace.

Connections are attached under an *address* (``device/<id>`` or
``laptop/<user>/<client id>``). :class:`LocalRouter` delivers to connections of this
process; a cluster of relays would publish to the address's channel on Redis and
keep presence there, without the service noticing.
"""

from __future__ import annotations

from typing import Protocol

from relay.fastsend import send_text


class Sink(Protocol):
    """Where a connection's outgoing messages go (a websocket connection)."""

    async def send(self, message: str) -> None: ...


class Router(Protocol):
    def attach(self, address: str, sink: Sink) -> Sink | None:
        """Register a connection; returns the one it replaced, if any."""

    def detach(self, address: str, sink: Sink) -> None:
        """Forget a connection (only if it is still the one attached)."""

    def is_online(self, address: str) -> bool: ...

    async def deliver(self, address: str, message: str) -> bool:
        """Send a message to the connection at an address; False if nobody is there."""


class LocalRouter:
    """In-process delivery: one relay process, connections in a dict."""

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}

    def attach(self, address: str, sink: Sink) -> Sink | None:
        previous = self._sinks.get(address)
        self._sinks[address] = sink
        return previous if previous is not sink else None

    def detach(self, address: str, sink: Sink) -> None:
        if self._sinks.get(address) is sink:
            del self._sinks[address]

    def is_online(self, address: str) -> bool:
        return address in self._sinks

    def __len__(self) -> int:
        return len(self._sinks)

    async def deliver(self, address: str, message: str) -> bool:
        sink = self._sinks.get(address)
        if sink is None:
            return False
        try:
            await send_text(sink, message)
        except Exception:
            return False
        return True
