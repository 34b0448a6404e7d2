"""A notification-daemon stand-in over dbus-fast: ``org.freedesktop.Notifications``.

pystray's GTK backends call ``CloseNotification`` when they stop and block when nobody owns
the name, so a tray under Xvfb needs one. It records what it was asked to show.
"""

# No ``from __future__ import annotations``: dbus-fast reads these annotations at runtime
# and takes the string "None" for a D-Bus type.
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from dbus_fast import BusType
from dbus_fast.annotations import DBusInt32, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_method

from hw.standin.bus_service import BusNameOwner

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"


@dataclass(frozen=True)
class Notification:
    notification_id: int
    app_name: str
    summary: str
    body: str


class NotificationsInterface(ServiceInterface):
    def __init__(self) -> None:
        super().__init__(NOTIFICATIONS_NAME)
        self.shown: list[Notification] = []
        self.closed: list[int] = []
        self._next_id = 1

    @dbus_method(name="Notify")
    def notify(
        self,
        app_name: DBusStr,
        replaces_id: DBusUInt32,
        app_icon: DBusStr,
        summary: DBusStr,
        body: DBusStr,
        actions: Annotated[list[str], DBusSignature("as")],
        hints: Annotated[dict[str, Any], DBusSignature("a{sv}")],
        expire_timeout: DBusInt32,
    ) -> DBusUInt32:
        notification_id = replaces_id or self._next_id
        self._next_id = max(self._next_id, notification_id) + 1
        self.shown.append(Notification(notification_id, app_name, summary, body))
        return notification_id

    @dbus_method(name="CloseNotification")
    def close_notification(self, notification_id: DBusUInt32) -> None:
        self.closed.append(notification_id)

    @dbus_method(name="GetCapabilities")
    def get_capabilities(self) -> Annotated[list[str], DBusSignature("as")]:
        return ["body"]

    @dbus_method(name="GetServerInformation")
    def get_server_information(self) -> Annotated[list[str], DBusSignature("ssss")]:
        return ["btogether-standin", "btogether", "0", "1.2"]


class NotificationsStandIn(BusNameOwner):
    """Owns ``org.freedesktop.Notifications`` on a session bus."""

    bus_name = NOTIFICATIONS_NAME

    def __init__(self, bus_address: str) -> None:
        super().__init__(bus_address, BusType.SESSION)
        self.interface = NotificationsInterface()

    def exports(self) -> Iterable[tuple[str, ServiceInterface]]:
        return [(NOTIFICATIONS_PATH, self.interface)]
