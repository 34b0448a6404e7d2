"""A screensaver stand-in over dbus-fast: org.freedesktop.ScreenSaver or org.gnome.ScreenSaver.

Both flavours share one shape (``GetActive``, ``SetActive``, ``GetActiveTime``, ``Lock`` and the
``ActiveChanged(b)`` signal); only the bus name, object path and interface name differ. It stands
in for a desktop whose lock screen is reported through the screensaver rather than logind.
"""

# No ``from __future__ import annotations``: dbus-fast reads these annotations at runtime
# and takes the string "None" for a D-Bus type.
import time
from collections.abc import Iterable
from enum import StrEnum

import structlog
from dbus_fast import BusType
from dbus_fast.annotations import DBusBool, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_method, dbus_signal

from hw.standin.bus_service import BusNameOwner

_log = structlog.get_logger(__name__)


class ScreenSaverFlavour(StrEnum):
    FREEDESKTOP = "freedesktop"
    GNOME = "gnome"

    @property
    def bus_name(self) -> str:
        return f"org.{self.value}.ScreenSaver"

    @property
    def object_path(self) -> str:
        return f"/org/{self.value}/ScreenSaver"


class ScreenSaverInterface(ServiceInterface):
    """The screensaver's D-Bus interface; :meth:`set_active` is the in-process switch."""

    def __init__(self, flavour: ScreenSaverFlavour) -> None:
        super().__init__(flavour.bus_name)
        self.flavour = flavour
        self.active = False
        self._since = 0.0

    @dbus_method(name="GetActive")
    def get_active(self) -> DBusBool:
        return self.active

    @dbus_method(name="SetActive")
    def set_active_method(self, active: DBusBool) -> DBusBool:
        self.set_active(active)
        return True

    @dbus_method(name="GetActiveTime")
    def get_active_time(self) -> DBusUInt32:
        return int(time.monotonic() - self._since) if self.active else 0

    @dbus_method(name="Lock")
    def lock_method(self) -> None:
        self.set_active(True)

    @dbus_signal(name="ActiveChanged")
    def active_changed(self, active: bool) -> DBusBool:
        return active

    def set_active(self, active: bool) -> None:
        """Activate or deactivate the screensaver; ``ActiveChanged`` only on a change."""
        if active == self.active:
            return
        self.active = active
        self._since = time.monotonic()
        _log.info("screensaver_standin_active", flavour=self.flavour.value, active=active)
        self.active_changed(active)


class ScreenSaverStandIn(BusNameOwner):
    """Owns one screensaver name on a session bus; use it as an async context manager."""

    def __init__(
        self, bus_address: str, flavour: ScreenSaverFlavour = ScreenSaverFlavour.FREEDESKTOP
    ) -> None:
        super().__init__(bus_address, BusType.SESSION)
        self.interface = ScreenSaverInterface(flavour)

    @property
    def flavour(self) -> ScreenSaverFlavour:
        return self.interface.flavour

    @property
    def bus_name(self) -> str:
        return self.flavour.bus_name

    def exports(self) -> Iterable[tuple[str, ServiceInterface]]:
        return [(self.flavour.object_path, self.interface)]

    def set_active(self, active: bool) -> None:
        self.interface.set_active(active)
