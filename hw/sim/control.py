"""Talking to a running air from outside: move a host, list hosts (org.btogether.Air1)."""

from __future__ import annotations

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from hw.sim.bluez import AIR_INTERFACE, AIR_NAME, AIR_PATH


class AirControlError(RuntimeError):
    """The air could not be reached or refused the request."""


async def _call(
    bus_address: str | None, member: str, signature: str, body: list[object]
) -> Message:
    try:
        bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    except (OSError, ValueError) as exc:
        where = bus_address or "the system bus"
        raise AirControlError(f"cannot connect to {where}: {exc}") from None
    try:
        reply = await bus.call(
            Message(
                destination=AIR_NAME,
                path=AIR_PATH,
                interface=AIR_INTERFACE,
                member=member,
                signature=signature,
                body=body,
            )
        )
    finally:
        bus.disconnect()
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        if reply.error_name == "org.freedesktop.DBus.Error.ServiceUnknown":
            raise AirControlError("no simulated air on this bus (is `btogether air` running?)")
        detail = reply.body[0] if reply.body else reply.error_name
        raise AirControlError(str(detail))
    return reply


async def move_host(bus_address: str | None, name: str, x: float, y: float) -> None:
    """Move host ``name`` to (x, y) metres, through any host's bus of the air."""
    await _call(bus_address, "MoveHost", "sdd", [name, float(x), float(y)])


async def list_hosts(bus_address: str | None) -> list[tuple[str, float, float]]:
    reply = await _call(bus_address, "ListHosts", "", [])
    return [(str(n), float(x), float(y)) for n, x, y in reply.body[0]]
