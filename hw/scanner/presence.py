"""BlueZ's verdict on who is in range, for passive scanning: an advertisement monitor of ours.

In passive scanning bluetoothd signals a still device once (RSSI only after an 8 dB
move, data only when it changes), and a device it already knew when the scan started
not at all.  Its advertisement monitor API is made for presence: a monitor with RSSI
thresholds gets ``DeviceFound`` once a device has been heard above
``RSSIHighThreshold`` for ``RSSIHighTimeout`` seconds and ``DeviceLost`` once it has
not been heard above ``RSSILowThreshold`` for ``RSSILowTimeout`` seconds (BlueZ 5.66
``src/adv_monitor.c`` adv_monitor_filter_rssi, ``doc/advertisement-monitor-api.txt``;
offloaded to the controller where it can).  :class:`PresenceMonitor` is such a
monitor on our company ID; bleak's own passive monitor has no thresholds.

It is exported *before* ``RegisterMonitor``, below the registered root, so bluetoothd
finds it in the root's ``GetManagedObjects`` (dbus-fast answers that with the objects
below a path).
"""

# No ``from __future__ import annotations``: dbus-fast reads these annotations at runtime.
import os
from collections.abc import Callable
from typing import Annotated

import structlog
from dbus_fast import Message, MessageType, PropertyAccess
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusInt16, DBusObjectPath, DBusSignature, DBusStr, DBusUInt16
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

MONITOR_INTERFACE = "org.bluez.AdvertisementMonitor1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MANUFACTURER_AD = 0xFF
FOUND_AFTER_S = 1  # RSSIHighTimeout: the shortest BlueZ accepts
MIN_LOST_AFTER_S, MAX_LOST_AFTER_S = 1, 300  # RSSILowTimeout's range

_log = structlog.get_logger(__name__)


class PresenceMonitor(ServiceInterface):
    """``org.bluez.AdvertisementMonitor1``: adverts of one company ID, found and lost."""

    def __init__(
        self,
        company_id: int,
        *,
        lost_after_s: int,
        min_rssi: int | None,
        on_found: Callable[[str], None],
        on_lost: Callable[[str], None],
    ) -> None:
        super().__init__(MONITOR_INTERFACE)
        self._pattern = [[0, MANUFACTURER_AD, company_id.to_bytes(2, "little")]]
        self._lost_after_s = max(MIN_LOST_AFTER_S, min(MAX_LOST_AFTER_S, int(lost_after_s)))
        self._threshold = -127 if min_rssi is None else min_rssi
        self._on_found = on_found
        self._on_lost = on_lost
        self.active = False

    @dbus_method(name="Release")
    def release(self) -> None:
        self.active = False
        _log.warning("presence_monitor_released")

    @dbus_method(name="Activate")
    def activate(self) -> None:
        self.active = True

    @dbus_method(name="DeviceFound")
    def device_found(self, device: DBusObjectPath) -> None:
        self._on_found(device)

    @dbus_method(name="DeviceLost")
    def device_lost(self, device: DBusObjectPath) -> None:
        self._on_lost(device)

    @dbus_property(access=PropertyAccess.READ, name="Type")
    def type_property(self) -> DBusStr:
        return "or_patterns"

    @dbus_property(access=PropertyAccess.READ, name="Patterns")
    def patterns_property(self) -> Annotated[list[list[object]], DBusSignature("a(yyay)")]:
        return self._pattern

    @dbus_property(access=PropertyAccess.READ, name="RSSIHighThreshold")
    def high_threshold(self) -> DBusInt16:
        return self._threshold

    @dbus_property(access=PropertyAccess.READ, name="RSSIHighTimeout")
    def high_timeout(self) -> DBusUInt16:
        return FOUND_AFTER_S

    @dbus_property(access=PropertyAccess.READ, name="RSSILowThreshold")
    def low_threshold(self) -> DBusInt16:
        return self._threshold

    @dbus_property(access=PropertyAccess.READ, name="RSSILowTimeout")
    def low_timeout(self) -> DBusUInt16:
        return self._lost_after_s


class PresenceRegistration:
    """A :class:`PresenceMonitor` exported and registered on one adapter, until closed."""

    def __init__(self, bus: MessageBus, adapter_path: str, monitor: PresenceMonitor) -> None:
        self._bus = bus
        self._adapter_path = adapter_path
        self._monitor = monitor
        self.root = f"/org/btogether/presence{os.getpid()}_{id(self):x}"
        self.path = f"{self.root}/monitor0"

    async def register(self) -> str | None:
        """Export and register; None on success, else BlueZ's error name."""
        self._bus.export(self.path, self._monitor)
        reply = await self._manager("RegisterMonitor")
        if reply is None or reply.message_type == MessageType.ERROR:
            self._bus.unexport(self.path, self._monitor)
            return reply.error_name if reply is not None else "no reply"
        return None

    async def close(self) -> None:
        if not self._bus.connected:
            return
        self._bus.unexport(self.path, self._monitor)
        await self._manager("UnregisterMonitor")

    async def _manager(self, member: str) -> Message | None:
        return await self._bus.call(
            Message(
                destination="org.bluez",
                path=self._adapter_path,
                interface=MONITOR_MANAGER,
                member=member,
                signature="o",
                body=[self.root],
            )
        )
