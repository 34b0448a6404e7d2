"""What the screen-lock backends promise: watcher and locker interfaces, settings, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol, Self

from hw.lock.state import LockEvent

DEFAULT_SYSTEM_BUS_ADDRESS = "unix:path=/run/dbus/system_bus_socket"


class LockBackendError(RuntimeError):
    """The lock service cannot be reached or has no session for us; the message says which."""


class UnsupportedPlatformError(LockBackendError):
    """No screen-lock backend exists for this platform yet."""


@dataclass(frozen=True)
class LockBusConfig:
    """Where to find the lock services.

    ``session_id`` is a logind session id (``"2"``) or object path; None asks logind which
    session we are in. ``session_source`` says where ``session_id`` came from, for people.
    ``session_bus_address`` None means: do not watch screensavers.
    """

    system_bus_address: str = DEFAULT_SYSTEM_BUS_ADDRESS
    session_bus_address: str | None = None
    session_id: str | None = None
    session_source: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, session_id: str | None = None) -> Self:
        """Read DBUS_SYSTEM_BUS_ADDRESS, DBUS_SESSION_BUS_ADDRESS and XDG_SESSION_ID.

        An explicit ``session_id`` overrides XDG_SESSION_ID.
        """
        chosen = session_id or environ.get("XDG_SESSION_ID") or None
        source = "the configured session" if session_id else "XDG_SESSION_ID"
        return cls(
            system_bus_address=environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS_ADDRESS,
            session_bus_address=environ.get("DBUS_SESSION_BUS_ADDRESS") or None,
            session_id=chosen,
            session_source=source if chosen else None,
        )


@dataclass(frozen=True)
class LockOutcome:
    """The result of asking the device's session to lock (``locked=True``) or unlock.

    ``confirmed`` is True when the session's lock state (logind's LockedHint) reached the
    asked state in time; False means the request was sent but the desktop did not confirm it,
    which also happens on desktops that never set the hint.
    """

    locked: bool
    confirmed: bool


class LockWatcher(Protocol):
    """Watches this machine's screen lock; start it, then iterate :meth:`events`.

    The events end at ``stop()``, or early when the backend lost its connection; ``failure``
    then says why, and a new watcher must be started.
    """

    @property
    def locked(self) -> bool | None: ...

    @property
    def failure(self) -> LockBackendError | None: ...

    @property
    def watching(self) -> str:
        """Which session is watched and how it was chosen, for people ("" before start)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def events(self) -> AsyncIterator[LockEvent]: ...


class SessionLocker(Protocol):
    """Locks and unlocks this device's own session."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def lock(self) -> LockOutcome: ...

    async def unlock(self) -> LockOutcome: ...

    async def is_locked(self) -> bool | None: ...
