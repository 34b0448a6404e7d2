"""D-Bus plumbing shared by the parts of the simulated bluetoothd.

BlueZ's well-known names, interfaces and object paths, the error a method call is
answered with (:class:`BluezError`), and the few kinds of message every part sends:
calls to the bus daemon, calls to a client that expect no reply (how gdbus calls
``Release``, ``Activate``, ``DeviceFound``… without a reply callback) and
``PropertiesChanged``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbus_fast import Message, MessageFlag, Variant
from dbus_fast.aio import MessageBus

BLUEZ_VERSION = "5.66"  # whose rules the air follows
BLUEZ_NAME = "org.bluez"
ROOT_PATH = "/org/bluez"
ADAPTER_PATH = "/org/bluez/hci0"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADV = "org.bluez.LEAdvertisement1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR = "org.bluez.AdvertisementMonitor1"
GATT_MANAGER = "org.bluez.GattManager1"
AGENT_MANAGER = "org.bluez.AgentManager1"
PROFILE_MANAGER = "org.bluez.ProfileManager1"
PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
DBUS_REPLY_TIMEOUT_S = 25.0  # libdbus's default, which gdbus uses (-1)


class BluezError(Exception):
    """Answer the method call with this D-Bus error name and text (src/error.c)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


def does_not_exist() -> BluezError:
    return BluezError("org.bluez.Error.DoesNotExist", "Does Not Exist")


def already_exists() -> BluezError:
    return BluezError("org.bluez.Error.AlreadyExists", "Already Exists")


def invalid_arguments() -> BluezError:
    return BluezError("org.bluez.Error.InvalidArguments", "Invalid arguments in method call")


async def call_bus(bus: MessageBus, member: str, signature: str, body: list[Any]) -> Message:
    """A call to the bus daemon itself (AddMatch, RemoveMatch…)."""
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member=member,
            signature=signature,
            body=body,
        )
    )
    assert reply is not None
    return reply


def notify(
    bus: MessageBus, owner: str, path: str, interface: str, member: str, *device: str
) -> None:
    """g_dbus_proxy_method_call without a reply callback: no reply expected."""
    bus.send(
        Message(
            destination=owner,
            path=path,
            interface=interface,
            member=member,
            signature="o" if device else "",
            body=list(device),
            flags=MessageFlag.NO_REPLY_EXPECTED,
        )
    )


def emit_changed(
    bus: MessageBus,
    path: str,
    interface: str,
    changed: Mapping[str, Variant],
    invalidated: list[str] | None = None,
) -> None:
    """One PropertiesChanged, as gdbus batches an interface's changes into one."""
    bus.send(
        Message.new_signal(
            path,
            PROPERTIES,
            "PropertiesChanged",
            "sa{sv}as",
            [interface, dict(changed), invalidated or []],
        )
    )
