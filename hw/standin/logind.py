"""A logind stand-in over dbus-fast: ``org.freedesktop.login1`` with a Manager and sessions.

It implements what btogether's lock watcher and locker use: the Manager's ``GetSession``,
``GetSessionByPID``, ``ListSessions``, ``LockSessions``/``UnlockSessions``, and per session the
``Lock``/``Unlock`` methods (which emit the ``Lock``/``Unlock`` signals, as real logind does),
``SetLockedHint`` and the ``LockedHint`` property with ``PropertiesChanged``. Like logind, a
``Lock`` call is only a request; the desktop's locker sets the hint. With
``desktop_sets_hint=True`` the stand-in also plays that locker and sets the hint itself.
"""

# No ``from __future__ import annotations``: dbus-fast reads these annotations at runtime
# and takes the string "None" for a D-Bus type.
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

import structlog
from dbus_fast import BusType
from dbus_fast.annotations import DBusBool, DBusObjectPath, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from hw.standin.bus_service import BusNameOwner

_log = structlog.get_logger(__name__)

LOGIND_NAME = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER_INTERFACE = "org.freedesktop.login1.Manager"
SESSION_INTERFACE = "org.freedesktop.login1.Session"
SESSION_PATH_PREFIX = "/org/freedesktop/login1/session/"


def session_object_path(session_id: str) -> str:
    """The object path logind uses for a session id (systemd's bus-label escaping)."""
    if not session_id:
        return SESSION_PATH_PREFIX + "_"
    out = []
    for index, char in enumerate(session_id):
        if char.isascii() and (char.isalpha() or (index > 0 and char.isdigit())):
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode())
    return SESSION_PATH_PREFIX + "".join(out)


@dataclass(frozen=True)
class SessionSpec:
    """One session to export; ``pids`` are the processes ``GetSessionByPID`` maps to it."""

    session_id: str = "1"
    user_name: str = "demo"
    uid: int = 1000
    seat: str = "seat0"
    pids: frozenset[int] = field(default_factory=frozenset)


class LogindSession(ServiceInterface):
    """``org.freedesktop.login1.Session`` for one session."""

    def __init__(self, spec: SessionSpec, *, desktop_sets_hint: bool = False) -> None:
        super().__init__(SESSION_INTERFACE)
        self.spec = spec
        self.path = session_object_path(spec.session_id)
        self.locked_hint = False
        self.lock_calls = 0
        self.unlock_calls = 0
        self._desktop_sets_hint = desktop_sets_hint

    # Methods -----------------------------------------------------------------
    @dbus_method(name="Lock")
    def lock_method(self) -> None:
        self.request_lock()

    @dbus_method(name="Unlock")
    def unlock_method(self) -> None:
        self.request_unlock()

    @dbus_method(name="SetLockedHint")
    def set_locked_hint_method(self, locked: DBusBool) -> None:
        self.set_locked_hint(locked)

    @dbus_method(name="Activate")
    def activate_method(self) -> None:
        return None

    # Signals -----------------------------------------------------------------
    @dbus_signal(name="Lock")
    def lock_signal(self) -> None:
        return None

    @dbus_signal(name="Unlock")
    def unlock_signal(self) -> None:
        return None

    # Properties --------------------------------------------------------------
    @dbus_property(access=PropertyAccess.READ, name="Id")
    def id_property(self) -> DBusStr:
        return self.spec.session_id

    @dbus_property(access=PropertyAccess.READ, name="Name")
    def name_property(self) -> DBusStr:
        return self.spec.user_name

    @dbus_property(access=PropertyAccess.READ, name="User")
    def user_property(self) -> Annotated[list[object], DBusSignature("(uo)")]:
        return [self.spec.uid, f"/org/freedesktop/login1/user/_{self.spec.uid}"]

    @dbus_property(access=PropertyAccess.READ, name="Seat")
    def seat_property(self) -> Annotated[list[object], DBusSignature("(so)")]:
        return [self.spec.seat, f"/org/freedesktop/login1/seat/{self.spec.seat}"]

    @dbus_property(access=PropertyAccess.READ, name="Active")
    def active_property(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ, name="Type")
    def type_property(self) -> DBusStr:
        return "x11"

    @dbus_property(access=PropertyAccess.READ, name="Class")
    def class_property(self) -> DBusStr:
        return "user"

    @dbus_property(access=PropertyAccess.READ, name="State")
    def state_property(self) -> DBusStr:
        return "active"

    @dbus_property(access=PropertyAccess.READ, name="Remote")
    def remote_property(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ, name="LockedHint")
    def locked_hint_property(self) -> DBusBool:
        return self.locked_hint

    # In-process API ----------------------------------------------------------
    def request_lock(self) -> None:
        """What ``Session.Lock()`` does: emit ``Lock``, and set the hint if playing the desktop."""
        self.lock_calls += 1
        _log.info("logind_standin_lock_requested", session=self.spec.session_id)
        self.lock_signal()
        if self._desktop_sets_hint:
            self.set_locked_hint(True)

    def request_unlock(self) -> None:
        """What ``Session.Unlock()`` does."""
        self.unlock_calls += 1
        _log.info("logind_standin_unlock_requested", session=self.spec.session_id)
        self.unlock_signal()
        if self._desktop_sets_hint:
            self.set_locked_hint(False)

    def set_locked_hint(self, locked: bool) -> None:
        """What the desktop's ``SetLockedHint`` does; PropertiesChanged only on a change."""
        if locked == self.locked_hint:
            return
        self.locked_hint = locked
        _log.info("logind_standin_locked_hint", session=self.spec.session_id, locked=locked)
        self.emit_properties_changed({"LockedHint": locked})


class LogindManager(ServiceInterface):
    """``org.freedesktop.login1.Manager`` over a fixed set of sessions."""

    def __init__(
        self, sessions: Sequence[LogindSession], *, caller_in_session: bool = True
    ) -> None:
        super().__init__(MANAGER_INTERFACE)
        if not sessions:
            raise ValueError("the logind stand-in needs at least one session")
        self._sessions = list(sessions)
        self._caller_in_session = caller_in_session

    def _by_id(self, session_id: str) -> LogindSession:
        if session_id in ("auto", "self", ""):
            if not self._caller_in_session:
                # What logind answers a system service that is in no session.
                raise DBusError(
                    "org.freedesktop.login1.NoSuchSession",
                    "Caller does not belong to any known session",
                )
            return self._sessions[0]
        for session in self._sessions:
            if session.spec.session_id == session_id:
                return session
        raise DBusError("org.freedesktop.login1.NoSuchSession", f"No session '{session_id}' known")

    @dbus_method(name="GetSession")
    def get_session(self, session_id: DBusStr) -> DBusObjectPath:
        return self._by_id(session_id).path

    @dbus_method(name="GetSessionByPID")
    def get_session_by_pid(self, pid: DBusUInt32) -> DBusObjectPath:
        for session in self._sessions:
            if pid in session.spec.pids:
                return session.path
        raise DBusError(
            "org.freedesktop.login1.NoSessionForPID", f"PID {pid} does not belong to any session"
        )

    @dbus_method(name="ListSessions")
    def list_sessions(self) -> Annotated[list[list[object]], DBusSignature("a(susso)")]:
        return [
            [s.spec.session_id, s.spec.uid, s.spec.user_name, s.spec.seat, s.path]
            for s in self._sessions
        ]

    @dbus_method(name="LockSessions")
    def lock_sessions(self) -> None:
        for session in self._sessions:
            session.request_lock()

    @dbus_method(name="UnlockSessions")
    def unlock_sessions(self) -> None:
        for session in self._sessions:
            session.request_unlock()


class LogindStandIn(BusNameOwner):
    """Owns ``org.freedesktop.login1`` on a bus and exports the Manager and sessions.

    Use as ``async with LogindStandIn(address) as logind: ...``; ``logind.session()`` is the
    in-process handle of a session (read ``locked_hint``, or lock it as a desktop would with
    :meth:`desktop_lock`). ``caller_in_session=False`` makes ``GetSession("auto")`` fail as it
    does for a system service.
    """

    bus_name = LOGIND_NAME

    def __init__(
        self,
        bus_address: str,
        sessions: Sequence[SessionSpec] = (SessionSpec(),),
        *,
        desktop_sets_hint: bool = False,
        caller_in_session: bool = True,
    ) -> None:
        super().__init__(bus_address, BusType.SYSTEM)
        self._sessions = [LogindSession(s, desktop_sets_hint=desktop_sets_hint) for s in sessions]
        self._manager = LogindManager(self._sessions, caller_in_session=caller_in_session)

    def exports(self) -> Iterable[tuple[str, ServiceInterface]]:
        return [(MANAGER_PATH, self._manager), *((s.path, s) for s in self._sessions)]

    async def start(self) -> None:
        await super().start()
        _log.info("logind_standin_started", sessions=[s.spec.session_id for s in self._sessions])

    def session(self, session_id: str | None = None) -> LogindSession:
        """The session with this id (the first one by default)."""
        if session_id is None:
            return self._sessions[0]
        for session in self._sessions:
            if session.spec.session_id == session_id:
                return session
        raise KeyError(session_id)

    def desktop_lock(self, session_id: str | None = None) -> None:
        """Lock as a desktop does: the ``Lock`` request, then the locker sets ``LockedHint``."""
        session = self.session(session_id)
        session.request_lock()
        session.set_locked_hint(True)

    def desktop_unlock(self, session_id: str | None = None) -> None:
        """Unlock as a desktop does after the user typed their password: the hint clears."""
        self.session(session_id).set_locked_hint(False)
