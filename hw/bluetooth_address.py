"""The Bluetooth adapter's own address (its MAC), read from BlueZ over D-Bus with dbus-fast.

A device identifies itself by this address when it is provisioned. BlueZ is found on
``DBUS_SYSTEM_BUS_ADDRESS`` (the system bus by default), so the simulated air answers
in tests exactly as bluetoothd does on a real device.
"""

from __future__ import annotations

import os

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"


class AdapterAddressError(RuntimeError):
    """No adapter address can be read; the message says why."""


async def adapter_address(adapter: str | None = None, bus_address: str | None = None) -> str:
    """The ``Address`` of adapter ``adapter`` (e.g. ``hci0``), else of the first adapter."""
    address = bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    try:
        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    except (OSError, ValueError) as exc:
        raise AdapterAddressError(f"cannot reach the system bus: {exc}") from exc
    try:
        reply = await bus.call(
            Message(
                destination=BLUEZ,
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
    finally:
        bus.disconnect()
    if reply is None or reply.message_type == MessageType.ERROR:
        why = reply.error_name if reply is not None else "no reply"
        raise AdapterAddressError(f"BlueZ is not running on the system bus ({why})")
    objects: dict[str, dict[str, dict[str, object]]] = reply.body[0]
    for path in sorted(objects):
        props = objects[path].get(ADAPTER)
        if props is None or (adapter is not None and path.rsplit("/", 1)[-1] != adapter):
            continue
        value = props.get("Address")
        text = getattr(value, "value", value)
        if isinstance(text, str) and text:
            return text
    which = f"adapter {adapter}" if adapter else "a Bluetooth adapter"
    raise AdapterAddressError(f"BlueZ has no {which}")
