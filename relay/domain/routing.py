"""Delivery between sessions and presence, behind the interface a Redis router implements too.

Sessions are attached under an *address* (``device/<id>``, ``laptop/<user>/<client
id>``, ``admin/<id>/<connection>``). :class:`LocalRouter` serves one relay process:
presence is its session index, delivery is a push into the session's outbox (never a
wait). A cluster router keeps presence in Redis with expiring heartbeats, publishes
deliveries to the node that holds the address, and broadcasts session ends and
replacements to every node; the service cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from relay.domain.metrics import RelayMetrics
from relay.domain.sessions import Session, SessionEnd, SessionIndex, SessionSelector
from relay.protocol.wire import CloseCode, Event

log = structlog.get_logger("relay.routing")


class Addressed(Protocol):
    """An event for the session at an address (the service's ``Delivery``)."""

    @property
    def address(self) -> str: ...

    @property
    def event(self) -> Event: ...


class Presence(Protocol):
    async def is_online(self, address: str) -> bool: ...


class Router(Presence, Protocol):
    async def attach(self, address: str, session: Session) -> None:
        """Register a session; an older one at the same address (on any node) is closed
        with :attr:`CloseCode.REPLACED`."""

    async def detach(self, address: str, session: Session) -> bool:
        """Forget a session (only if it is still the one attached); True if it was."""

    async def deliver(self, address: str, message: str) -> bool:
        """Queue a message for the session at an address; False if nobody is there or
        its outbox refused it. Never waits for the recipient."""

    async def end_sessions(self, selector: SessionSelector, code: int, reason: str) -> int:
        """Close every session matching ``selector`` (on every node); how many were here."""

    def local_count(self, selector: SessionSelector) -> int:
        """How many sessions matching ``selector`` this node holds (for per-node caps)."""

    def local_sessions(self, selector: SessionSelector) -> list[Session]:
        """This node's sessions matching ``selector``."""

    def on_resync(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` whenever this node may have missed deliveries and has made
        its presence right again (a cluster router after its Redis came back): the
        owner re-sends what is durable (pending lock commands) to its sessions."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalRouter:
    """In-process delivery and presence: one relay process."""

    def __init__(self, metrics: RelayMetrics | None = None) -> None:
        self.sessions = SessionIndex()
        self.failed_deliveries = 0
        self._metrics = metrics

    def __len__(self) -> int:
        return len(self.sessions)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def on_resync(self, callback: Callable[[], Awaitable[None]]) -> None:
        return None  # one process never loses its own presence

    async def attach(self, address: str, session: Session) -> None:
        replaced = self.sessions.add(address, session)
        if replaced is not None:
            replaced.end(CloseCode.REPLACED, "replaced by a newer connection")

    async def detach(self, address: str, session: Session) -> bool:
        return self.sessions.remove(address, session)

    async def is_online(self, address: str) -> bool:
        return self.sessions.at(address) is not None

    async def deliver(self, address: str, message: str) -> bool:
        session = self.sessions.at(address)
        if session is None or not session.push(message):
            self.failed_deliveries += 1
            reason = "offline" if session is None else "refused"
            if self._metrics is not None:
                self._metrics.failed_deliveries.labels(reason).inc()
            log.info("delivery_failed", address=address, reason=reason)
            return False
        return True

    async def end_sessions(self, selector: SessionSelector, code: int, reason: str) -> int:
        matching = self.sessions.matching(selector)
        for session in matching:
            session.end(code, reason)
        if matching:
            log.info("sessions_ended", by=selector[0], id=selector[1], count=len(matching))
        return len(matching)

    def local_count(self, selector: SessionSelector) -> int:
        return self.sessions.count(selector)

    def local_sessions(self, selector: SessionSelector) -> list[Session]:
        return self.sessions.matching(selector)


async def route(
    router: Router, deliveries: Sequence[Addressed], ends: Sequence[SessionEnd] = ()
) -> None:
    """Deliver events, then end sessions (for what is carried out outside a request)."""
    for delivery in deliveries:
        await router.deliver(delivery.address, delivery.event.to_wire())
    for end in ends:
        await router.end_sessions(end.selector, end.code, end.reason)
