"""Act as a desktop towards the stand-ins (or a real logind): lock and unlock a session.

A real desktop locks in two steps: logind's ``Session.Lock()`` asks the screen locker to lock,
then the locker reports it with ``SetLockedHint(true)``. Unlocking after the password is only
``SetLockedHint(false)``. A desktop that only has a screensaver calls ``SetActive`` on it.
"""

from __future__ import annotations

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from hw.standin.logind import LOGIND_NAME, MANAGER_INTERFACE, MANAGER_PATH, SESSION_INTERFACE
from hw.standin.screensaver import ScreenSaverFlavour


class DesktopActionError(RuntimeError):
    """The bus refused a desktop action; the message says which call and why."""


async def _call(bus: MessageBus, message: Message) -> list[object]:
    reply = await bus.call(message)
    if reply is None or reply.message_type == MessageType.ERROR:
        detail = "" if reply is None else f"{reply.error_name}: {reply.body}"
        raise DesktopActionError(f"{message.member} on {message.path} failed: {detail}")
    return list(reply.body)


async def _session_path(bus: MessageBus, session_id: str) -> str:
    body = await _call(
        bus,
        Message(
            destination=LOGIND_NAME,
            path=MANAGER_PATH,
            interface=MANAGER_INTERFACE,
            member="GetSession",
            signature="s",
            body=[session_id],
        ),
    )
    return str(body[0])


async def desktop_lock(
    system_bus_address: str, session_id: str = "auto", *, set_hint: bool = True
) -> None:
    """Lock the session as a desktop does: ``Lock()``, then ``SetLockedHint(true)``."""
    await _session_calls(
        system_bus_address,
        session_id,
        [("Lock", None)] + ([("SetLockedHint", True)] if set_hint else []),
    )


async def desktop_unlock(
    system_bus_address: str, session_id: str = "auto", *, set_hint: bool = True
) -> None:
    """Unlock as a desktop does once the password was typed: ``SetLockedHint(false)``.

    With ``set_hint=False`` it sends logind's ``Unlock()`` request instead.
    """
    calls: list[tuple[str, bool | None]] = (
        [("SetLockedHint", False)] if set_hint else [("Unlock", None)]
    )
    await _session_calls(system_bus_address, session_id, calls)


async def _session_calls(
    address: str, session_id: str, calls: list[tuple[str, bool | None]]
) -> None:
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        path = await _session_path(bus, session_id)
        for member, argument in calls:
            await _call(
                bus,
                Message(
                    destination=LOGIND_NAME,
                    path=path,
                    interface=SESSION_INTERFACE,
                    member=member,
                    signature="" if argument is None else "b",
                    body=[] if argument is None else [argument],
                ),
            )
    finally:
        bus.disconnect()


async def screensaver_set_active(
    session_bus_address: str,
    active: bool,
    flavour: ScreenSaverFlavour = ScreenSaverFlavour.FREEDESKTOP,
) -> None:
    """Switch a screensaver on or off (its ``SetActive``), as a hint-less desktop would."""
    bus = await MessageBus(bus_address=session_bus_address, bus_type=BusType.SESSION).connect()
    try:
        await _call(
            bus,
            Message(
                destination=flavour.bus_name,
                path=flavour.object_path,
                interface=flavour.bus_name,
                member="SetActive",
                signature="b",
                body=[active],
            ),
        )
    finally:
        bus.disconnect()
