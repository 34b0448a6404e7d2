"""Screen lock on Linux over dbus-fast: logind on the system bus, screensavers on the session bus.

The watcher turns logind's ``Lock``/``Unlock`` signals (requests), its ``LockedHint`` property
and ``ActiveChanged`` from ``org.freedesktop.ScreenSaver``/``org.gnome.ScreenSaver``
(confirmations) into one stream through :class:`hw.lock.state.LockStateMerger`. Signals are
only believed from the current owner of the service's well-known name, so another client on
the bus cannot fake a lock. The locker calls ``Lock()``/``Unlock()`` on the device's own
session and waits for ``LockedHint`` to follow.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self

import structlog
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, DBusError

from hw.lock.base import LockBackendError, LockBusConfig, LockOutcome
from hw.lock.state import LockEvent, LockSource, LockStateMerger

_log = structlog.get_logger(__name__)

LOGIND_NAME = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER_INTERFACE = "org.freedesktop.login1.Manager"
SESSION_INTERFACE = "org.freedesktop.login1.Session"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
SCREENSAVERS: dict[str, LockSource] = {
    "org.freedesktop.ScreenSaver": LockSource.FREEDESKTOP_SCREENSAVER,
    "org.gnome.ScreenSaver": LockSource.GNOME_SCREENSAVER,
}
_SCREENSAVER_PATHS = {
    "org.freedesktop.ScreenSaver": "/org/freedesktop/ScreenSaver",
    "org.gnome.ScreenSaver": "/org/gnome/ScreenSaver",
}
_DBUS = "org.freedesktop.DBus"
_DBUS_PATH = "/org/freedesktop/DBus"


async def _connect(address: str, bus_type: BusType, what: str) -> MessageBus:
    try:
        return await MessageBus(bus_address=address, bus_type=bus_type).connect()
    except (OSError, AuthError, DBusError, ValueError) as exc:
        raise LockBackendError(f"cannot connect to the {what} bus at {address}: {exc}") from exc


async def _call(
    bus: MessageBus,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
) -> list[Any]:
    reply = await bus.call(
        Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
        )
    )
    if reply is None:
        raise DBusError("org.freedesktop.DBus.Error.NoReply", f"no reply to {member}")
    if reply.message_type == MessageType.ERROR:
        text = reply.body[0] if reply.body else ""
        raise DBusError(reply.error_name or "org.freedesktop.DBus.Error.Failed", str(text))
    return list(reply.body)


async def _add_match(bus: MessageBus, rule: str) -> None:
    await _call(bus, _DBUS, _DBUS_PATH, _DBUS, "AddMatch", "s", [rule])


async def _name_owner(bus: MessageBus, name: str) -> str | None:
    try:
        body = await _call(bus, _DBUS, _DBUS_PATH, _DBUS, "GetNameOwner", "s", [name])
    except DBusError:
        return None
    return str(body[0])


async def resolve_session_path(bus: MessageBus, session_id: str | None, pid: int) -> str:
    """The logind session object path (see :func:`choose_session`)."""
    path, _ = await choose_session(bus, session_id, pid)
    return path


CHOSEN_BY = {
    "GetSessionByPID": "the session this process runs in",
    "GetSession": "logind's choice for this user, as this process is in no session",
    "only": "the only session there is",
}


async def choose_session(bus: MessageBus, session_id: str | None, pid: int) -> tuple[str, str]:
    """The logind session object path, and how it was chosen (a key of CHOSEN_BY, or
    "given").

    The given id or path if any; else the session of ``pid``; else logind's "auto" (the
    caller's session or its user's display session); else the only session there is, which
    is what a system service on a single-user appliance (a desk phone) needs.
    """
    if session_id is not None and session_id.startswith("/"):
        return session_id, "given"
    attempts: list[tuple[str, str, list[Any]]] = (
        [("GetSession", "s", [session_id])]
        if session_id is not None
        else [("GetSessionByPID", "u", [pid]), ("GetSession", "s", ["auto"])]
    )
    failures = []
    for member, signature, body in attempts:
        try:
            reply = await _call(
                bus, LOGIND_NAME, MANAGER_PATH, MANAGER_INTERFACE, member, signature, body
            )
        except DBusError as exc:
            failures.append(f"{member}({body[0]!r}): {exc.type}: {exc.text}")
            continue
        return str(reply[0]), "given" if session_id is not None else member
    if session_id is None:
        try:
            sessions = (
                await _call(bus, LOGIND_NAME, MANAGER_PATH, MANAGER_INTERFACE, "ListSessions")
            )[0]
        except DBusError as exc:
            failures.append(f"ListSessions: {exc.type}: {exc.text}")
        else:
            if len(sessions) == 1:
                _log.info("logind_only_session_used", session=sessions[0][0])
                return str(sessions[0][4]), "only"
            ids = ", ".join(str(s[0]) for s in sessions) or "none"
            failures.append(f"{len(sessions)} sessions ({ids}); set the session id to choose")
    raise LockBackendError("logind has no session for us: " + "; ".join(failures))


async def _session_property(bus: MessageBus, session_path: str, name: str) -> Any:
    """A property of a logind session (raises DBusError if it cannot be read)."""
    body = await _call(
        bus,
        LOGIND_NAME,
        session_path,
        PROPERTIES_INTERFACE,
        "Get",
        "ss",
        [SESSION_INTERFACE, name],
    )
    return body[0].value if body else None


async def _session_id(bus: MessageBus, session_path: str) -> str:
    """The session's short id ("2"), or its path if logind does not say."""
    try:
        value = await _session_property(bus, session_path, "Id")
    except DBusError:
        return session_path
    return str(value) if isinstance(value, str) and value else session_path


async def _read_locked_hint(bus: MessageBus, session_path: str) -> bool | None:
    try:
        return bool(await _session_property(bus, session_path, "LockedHint"))
    except DBusError as exc:
        _log.warning("locked_hint_unreadable", session=session_path, error=str(exc))
        return None


def _locked_hint_change(msg: Message) -> bool | None:
    """The new LockedHint from a PropertiesChanged of the session, or None if it is not there."""
    if msg.member != "PropertiesChanged" or msg.interface != PROPERTIES_INTERFACE:
        return None
    if len(msg.body) < 2 or msg.body[0] != SESSION_INTERFACE:
        return None
    changed = msg.body[1]
    if not isinstance(changed, dict) or "LockedHint" not in changed:
        return None
    return bool(changed["LockedHint"].value)


class _OwnerTracker:
    """Unique names currently owning well-known names, kept up to date by NameOwnerChanged."""

    def __init__(self) -> None:
        self.owners: dict[str, str | None] = {}

    async def follow(self, bus: MessageBus, name: str) -> None:
        await _add_match(
            bus,
            f"type='signal',sender='{_DBUS}',interface='{_DBUS}',"
            f"member='NameOwnerChanged',arg0='{name}'",
        )
        self.owners[name] = await _name_owner(bus, name)

    def handle(self, msg: Message) -> bool:
        """Update from a NameOwnerChanged signal; True if the message was one."""
        if msg.interface != _DBUS or msg.member != "NameOwnerChanged" or msg.sender != _DBUS:
            return False
        name, _old, new = msg.body
        if name in self.owners:
            self.owners[name] = new or None
            _log.debug("lock_service_owner_changed", name=name, owner=new or None)
        return True


class _EventStream:
    """An async iterator over the watcher's queue; unlike an async generator, a cancelled
    ``__anext__`` (a timeout) does not end it. It ends at stop or when the system bus is lost."""

    def __init__(self, queue: asyncio.Queue[LockEvent | None]) -> None:
        self._queue = queue

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> LockEvent:
        event = await self._queue.get()
        if event is None:
            self._queue.put_nowait(None)  # let other iterators finish too
            raise StopAsyncIteration
        return event


class LogindLockWatcher:
    """Watches this session's screen lock on Linux (see the module docstring).

    ``async with LogindLockWatcher(config) as watcher: async for event in watcher.events():``.
    The first event, if the state could be read, has ``initial=True``.
    """

    def __init__(
        self,
        config: LockBusConfig,
        *,
        request_grace: float | None = 2.0,
        pid: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._merger = LockStateMerger(request_grace)
        self._pid = os.getpid() if pid is None else pid
        self._clock = clock
        self._queue: asyncio.Queue[LockEvent | None] = asyncio.Queue()
        self._system: MessageBus | None = None
        self._session: MessageBus | None = None
        self._system_owners = _OwnerTracker()
        self._session_owners = _OwnerTracker()
        self._session_path = ""
        self._watching = ""
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._failure: LockBackendError | None = None
        self._bus_watches: list[asyncio.Task[None]] = []

    @property
    def locked(self) -> bool | None:
        return self._merger.locked

    @property
    def session_path(self) -> str:
        return self._session_path

    @property
    def watching(self) -> str:
        return self._watching

    @property
    def failure(self) -> LockBackendError | None:
        """Why the event stream ended early (the system bus was lost), or None."""
        return self._failure

    @property
    def watching_screensaver(self) -> bool:
        return self._session is not None

    async def start(self) -> None:
        system = await _connect(self._config.system_bus_address, BusType.SYSTEM, "system")
        try:
            self._session_path, how = await choose_session(
                system, self._config.session_id, self._pid
            )
            source = self._config.session_source or "the configured session"
            why = source if how == "given" else CHOSEN_BY[how]
            self._watching = f"session {await _session_id(system, self._session_path)} ({why})"
            if how in ("GetSession", "only"):
                # Not chosen by the user or the session itself (a systemd user unit has no
                # XDG_SESSION_ID): say so rather than pick silently.
                _log.warning(
                    "lock_session_guessed",
                    watching=self._watching,
                    fix="set XDG_SESSION_ID or [lock] session in client.toml",
                )
            system.add_message_handler(self._on_system_message)
            await self._system_owners.follow(system, LOGIND_NAME)
            base = f"type='signal',sender='{LOGIND_NAME}',path='{self._session_path}'"
            await _add_match(system, f"{base},interface='{SESSION_INTERFACE}'")
            await _add_match(
                system,
                f"{base},interface='{PROPERTIES_INTERFACE}',member='PropertiesChanged',"
                f"arg0='{SESSION_INTERFACE}'",
            )
        except BaseException:
            system.disconnect()
            raise
        self._system = system
        self._bus_watches.append(asyncio.create_task(self._watch_bus(system, "system")))
        hint = await _read_locked_hint(system, self._session_path)
        screensaver_active = await self._start_screensaver_watch()
        log = _log.bind(session=self._session_path)
        log.info(
            "lock_watch_started",
            locked_hint=hint,
            screensaver_active=screensaver_active,
            screensaver=self.watching_screensaver,
        )
        if self._merger.locked is None:
            if hint or screensaver_active:
                self._emit(self._merger.initial(True, LockSource.INITIAL, self._clock()))
            elif hint is not None or screensaver_active is not None:
                self._emit(self._merger.initial(False, LockSource.INITIAL, self._clock()))

    async def _start_screensaver_watch(self) -> bool | None:
        """Watch the screensavers if a session bus is configured; their combined active state."""
        address = self._config.session_bus_address
        if address is None:
            _log.info("screensaver_watch_skipped", reason="no session bus address")
            return None
        try:
            session = await _connect(address, BusType.SESSION, "session")
        except LockBackendError as exc:
            _log.warning("screensaver_watch_unavailable", error=str(exc))
            return None
        session.add_message_handler(self._on_session_message)
        active: bool | None = None
        try:
            for name in SCREENSAVERS:
                await self._session_owners.follow(session, name)
                await _add_match(
                    session, f"type='signal',interface='{name}',member='ActiveChanged'"
                )
                if self._session_owners.owners.get(name) is None:
                    continue
                try:
                    body = await _call(session, name, _SCREENSAVER_PATHS[name], name, "GetActive")
                except DBusError as exc:
                    _log.info("screensaver_state_unreadable", name=name, error=str(exc))
                    continue
                active = bool(active) or bool(body[0])
        except DBusError as exc:
            _log.warning("screensaver_watch_unavailable", error=str(exc))
            session.disconnect()
            return None
        self._session = session
        self._bus_watches.append(asyncio.create_task(self._watch_bus(session, "session")))
        return active

    async def _watch_bus(self, bus: MessageBus, which: str) -> None:
        """Losing the system bus ends the event stream (see :attr:`failure`); losing the
        session bus only ends screensaver watching."""
        error: Exception | None = None
        try:
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        except Exception as exc:
            error = exc
        if self._stopped:
            return
        if which == "session":
            _log.warning("screensaver_watch_lost", error=repr(error))
            self._session = None
            return
        _log.error("lock_watch_bus_lost", error=repr(error))
        self._failure = LockBackendError(f"lost the system bus: {error or 'disconnected'}")
        self._system = None
        self._queue.put_nowait(None)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._bus_watches:
            task.cancel()
        await asyncio.gather(*self._bus_watches, return_exceptions=True)
        for bus in (self._system, self._session):
            if bus is not None:
                bus.disconnect()
        self._system = self._session = None
        self._queue.put_nowait(None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def events(self) -> AsyncIterator[LockEvent]:
        """Lock and unlock events until :meth:`stop`; safe to wrap in ``asyncio.wait_for``.

        The stream also ends if the system bus connection is lost; :attr:`failure` then says
        so, and a new watcher must be started.
        """
        return _EventStream(self._queue)

    # Message handling (runs on the event loop, synchronously) ----------------
    def _on_system_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or self._system_owners.handle(msg):
            return
        if msg.path != self._session_path:
            return
        if msg.sender != self._system_owners.owners.get(LOGIND_NAME):
            _log.warning("lock_signal_ignored", reason="not from logind", sender=msg.sender)
            return
        now = self._clock()
        if msg.interface == SESSION_INTERFACE and msg.member in ("Lock", "Unlock"):
            locked = msg.member == "Lock"
            _log.info("lock_requested", locked=locked, session=self._session_path)
            self._merger.requested(locked, now)
        else:
            hint = _locked_hint_change(msg)
            if hint is None:
                return
            self._emit(self._merger.confirmed(hint, LockSource.LOGIND_LOCKED_HINT, now))
        self._schedule()

    def _on_session_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or self._session_owners.handle(msg):
            return
        source = SCREENSAVERS.get(msg.interface or "")
        if source is None or msg.member != "ActiveChanged" or msg.signature != "b":
            return
        if msg.sender != self._session_owners.owners.get(msg.interface or ""):
            _log.warning("lock_signal_ignored", reason="not from screensaver", sender=msg.sender)
            return
        self._emit(self._merger.confirmed(bool(msg.body[0]), source, self._clock()))
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._merger.deadline()
        if deadline is not None and not self._stopped:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._emit(self._merger.tick(self._clock()))
        self._schedule()

    def _emit(self, event: LockEvent | None) -> None:
        if event is None or self._stopped:
            return
        _log.info(
            "screen_lock_changed", locked=event.locked, source=event.source, initial=event.initial
        )
        self._queue.put_nowait(event)


class LogindSessionLocker:
    """Locks and unlocks this device's logind session; ``LockedHint`` tells if it took effect.

    A long-running daemon keeps one: if the system bus connection was lost (dbus or logind
    restarted), the next call connects again.
    """

    def __init__(
        self, config: LockBusConfig, *, confirm_timeout: float = 2.0, pid: int | None = None
    ) -> None:
        self._config = config
        self._confirm_timeout = confirm_timeout
        self._pid = os.getpid() if pid is None else pid
        self._bus: MessageBus | None = None
        self._session_path = ""
        self._hint: bool | None = None
        self._hint_changed = asyncio.Event()
        self._started = False

    @property
    def session_path(self) -> str:
        return self._session_path

    async def start(self) -> None:
        self._started = True
        bus = await _connect(self._config.system_bus_address, BusType.SYSTEM, "system")
        try:
            self._session_path = await resolve_session_path(bus, self._config.session_id, self._pid)
            bus.add_message_handler(self._on_message)
            await _add_match(
                bus,
                f"type='signal',sender='{LOGIND_NAME}',path='{self._session_path}',"
                f"interface='{PROPERTIES_INTERFACE}',member='PropertiesChanged',"
                f"arg0='{SESSION_INTERFACE}'",
            )
        except BaseException:
            bus.disconnect()
            raise
        self._bus = bus
        self._hint = await _read_locked_hint(bus, self._session_path)
        _log.info("session_locker_started", session=self._session_path, locked_hint=self._hint)

    async def stop(self) -> None:
        self._started = False
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def lock(self) -> LockOutcome:
        return await self._request(True)

    async def unlock(self) -> LockOutcome:
        return await self._request(False)

    async def is_locked(self) -> bool | None:
        """logind's LockedHint for the session, read now (None if it cannot be read)."""
        self._hint = await _read_locked_hint(await self._require_bus(), self._session_path)
        return self._hint

    async def _request(self, locked: bool) -> LockOutcome:
        bus = await self._require_bus()
        member = "Lock" if locked else "Unlock"
        try:
            await _call(bus, LOGIND_NAME, self._session_path, SESSION_INTERFACE, member)
        except DBusError as exc:
            raise LockBackendError(
                f"logind refused {member} on {self._session_path}: {exc.type}: {exc.text}"
            ) from exc
        confirmed = await self._wait_for_hint(locked)
        if not confirmed and await self.is_locked() == locked:
            confirmed = True
        _log.info("session_lock_requested", locked=locked, confirmed=confirmed)
        return LockOutcome(locked=locked, confirmed=confirmed)

    async def _wait_for_hint(self, locked: bool) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._confirm_timeout
        while self._hint != locked:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._hint_changed.clear()
            try:
                await asyncio.wait_for(self._hint_changed.wait(), remaining)
            except TimeoutError:
                return self._hint == locked
        return True

    async def _require_bus(self) -> MessageBus:
        if not self._started:
            raise LockBackendError("the session locker is not started")
        if self._bus is None or not self._bus.connected:
            _log.warning("session_locker_reconnecting", session=self._session_path or None)
            if self._bus is not None:
                self._bus.disconnect()
                self._bus = None
            await self.start()
        assert self._bus is not None
        return self._bus

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or msg.path != self._session_path:
            return
        hint = _locked_hint_change(msg)
        if hint is not None:
            self._hint = hint
            self._hint_changed.set()
