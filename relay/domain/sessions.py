"""Live sessions and the index that finds them by credential, account, device or administrator.

Every authenticated connection is a *session* with the keys it was opened under. When
an administrator revokes a credential, removes, resets or signs out a device, or
deletes an account, the relay asks the router to end every session matching a
:data:`SessionSelector` (on every node of a cluster); this index is how one node finds
its own. It holds no sockets itself: a :class:`Session` is whatever can take a message
without waiting (:meth:`Session.push`) and be told to end (:meth:`Session.end`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

SelectorKind = Literal["credential", "user", "device", "admin", "tenant"]
SessionSelector = tuple[SelectorKind, str]


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """Sessions to close once a request's reply and events are on their way."""

    selector: SessionSelector
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """What a session was opened as; each set field is a way to find it."""

    credential_id: str
    tenant_id: str | None = None
    user_id: str | None = None
    device_id: str | None = None
    admin_id: str | None = None

    def selectors(self) -> list[SessionSelector]:
        out: list[SessionSelector] = [("credential", self.credential_id)]
        if self.tenant_id is not None:
            out.append(("tenant", self.tenant_id))
        if self.user_id is not None:
            out.append(("user", self.user_id))
        if self.device_id is not None:
            out.append(("device", self.device_id))
        if self.admin_id is not None:
            out.append(("admin", self.admin_id))
        return out


class Session(Protocol):
    keys: SessionKeys

    def push(self, message: str) -> bool:
        """Queue a message for the peer without waiting; False if it was dropped because
        the session is ending (a full outbox ends it)."""

    def end(self, code: int, reason: str) -> None:
        """Close the session soon with a websocket close code (idempotent, never waits)."""


class SessionIndex:
    """The sessions of this process, by address and by every key they were opened under."""

    def __init__(self) -> None:
        self._by_address: dict[str, Session] = {}
        # A key most sessions hold alone (their device, their credential) maps to the
        # session itself; a set only where several share it (~400 bytes less a session).
        self._by_key: dict[SessionSelector, Session | set[Session]] = {}

    def __len__(self) -> int:
        return len(self._by_address)

    def at(self, address: str) -> Session | None:
        return self._by_address.get(address)

    def add(self, address: str, session: Session) -> Session | None:
        """Index a session at its address; returns the one it replaced there, if any."""
        previous = self._by_address.get(address)
        if previous is session:
            return None
        if previous is not None:
            self._unindex(previous)
        self._by_address[address] = session
        by_key = self._by_key
        for selector in session.keys.selectors():
            members = by_key.get(selector)
            if members is None:
                by_key[selector] = session
            elif isinstance(members, set):
                members.add(session)
            elif members is not session:
                by_key[selector] = {members, session}
        return previous

    def remove(self, address: str, session: Session) -> bool:
        """Forget a session (only if it is still the one at its address)."""
        if self._by_address.get(address) is not session:
            return False
        del self._by_address[address]
        self._unindex(session)
        return True

    def _unindex(self, session: Session) -> None:
        by_key = self._by_key
        for selector in session.keys.selectors():
            members = by_key.get(selector)
            if members is session:
                del by_key[selector]
            elif isinstance(members, set):
                members.discard(session)
                if len(members) == 1:
                    by_key[selector] = members.pop()
                elif not members:
                    del by_key[selector]

    def matching(self, selector: SessionSelector) -> list[Session]:
        members = self._by_key.get(selector)
        if members is None:
            return []
        return list(members) if isinstance(members, set) else [members]

    def count(self, selector: SessionSelector) -> int:
        members = self._by_key.get(selector)
        if members is None:
            return 0
        return len(members) if isinstance(members, set) else 1
