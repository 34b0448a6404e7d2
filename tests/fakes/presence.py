"""Presence and delivery fakes: :class:`relay.domain.routing.Presence` and :class:`relay.domain.routing.Router`
whose connected addresses the test decides, and which record what was delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from relay.domain.sessions import Session, SessionSelector


class FakePresence:
    """Who is connected, as a set of addresses (``device/<id>``, ``laptop/<user>/<id>``)."""

    def __init__(self, *online: str) -> None:
        self.online: set[str] = set(online)

    async def is_online(self, address: str) -> bool:
        return address in self.online

    def connect(self, address: str) -> None:
        self.online.add(address)

    def disconnect(self, address: str) -> None:
        self.online.discard(address)


DeliveryHook = Callable[[str, str], Awaitable[None]]


class FakeRouter(FakePresence):
    """A :class:`relay.domain.routing.Router` without sessions: a delivery to an online address is
    recorded (and handed to ``on_deliver``, which plays the recipient), one to an offline
    address fails; ended sessions are recorded by selector."""

    def __init__(self, *online: str) -> None:
        super().__init__(*online)
        self.delivered: list[tuple[str, str]] = []
        self.ended: list[tuple[SessionSelector, int, str]] = []
        self.on_deliver: DeliveryHook | None = None
        self._sessions: dict[str, Session] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def attach(self, address: str, session: Session) -> None:
        self._sessions[address] = session
        self.online.add(address)

    async def detach(self, address: str, session: Session) -> bool:
        if self._sessions.get(address) is not session:
            return False
        del self._sessions[address]
        self.online.discard(address)
        return True

    async def deliver(self, address: str, message: str) -> bool:
        if address not in self.online:
            return False
        self.delivered.append((address, message))
        if self.on_deliver is not None:
            await self.on_deliver(address, message)
        return True

    async def end_sessions(self, selector: SessionSelector, code: int, reason: str) -> int:
        self.ended.append((selector, code, reason))
        return 0

    def local_count(self, selector: SessionSelector) -> int:
        return 0

    def local_sessions(self, selector: SessionSelector) -> list[Session]:
        return []
