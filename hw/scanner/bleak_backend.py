"""Scanning with bleak, plus BlueZ's own view of when a device is gone.

bleak reports adverts but never that a device went away; on Linux BlueZ removes a
device object when it has not been heard for its TemporaryTimeout (30 s by default,
``InterfacesRemoved``), so the ``bluez`` flavour listens for that on its own D-Bus
connection and reports :class:`~hw.scanner.AdvertLost`.

What bluetoothd signals decides what we hear (BlueZ 5.66, ``src/adapter.c``
btd_adapter_update_found_device, ``src/device.c``): with a discovery filter set it
signals the RSSI of every report, and with ``DuplicateData`` the manufacturer data of
every report too; without a filter, and for passive scanning with an advertisement
monitor, it signals RSSI only when it moved by 8 dB and data only when it changed, so
a still beacon goes quiet.  Active scanning (``auto``, the default) therefore asks for
``{"Transport": "le", "DuplicateData": True}`` and hears every advert; passive
scanning (``passive``, only where bluetoothd runs with ``-E``) hears a device when it
appears, moves by 8 dB or changes its data, and knows it gone only when BlueZ removes
it (:attr:`BleakAdvertScanner.reports_every_advert` is False).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from hw.scanner import (
    AdvertLost,
    Clock,
    RawAdvert,
    ScanEvent,
    ScanMode,
    ScannerError,
    ScannerUnavailable,
    ScanOptions,
)
from hw.scanner.presence import MONITOR_MANAGER, PresenceMonitor, PresenceRegistration

_log = structlog.get_logger(__name__)
DEVICE = "org.bluez.Device1"


def _address_from_path(path: str) -> str:
    return path.rsplit("/", 1)[-1].removeprefix("dev_").replace("_", ":")


class BleakAdvertScanner:
    """bleak's BleakScanner filtered to one company ID."""

    def __init__(
        self,
        on_event: Callable[[ScanEvent], None],
        options: ScanOptions,
        clock: Clock,
        *,
        watch_bluez_removals: bool,
    ) -> None:
        self._on_event = on_event
        self._options = options
        self._clock = clock
        self._bluez = watch_bluez_removals
        self._scanner: BleakScanner | None = None
        self._watcher: MessageBus | None = None
        self._paths: dict[str, str] = {}  # BlueZ object path -> address reported
        self._mode: ScanMode | None = None
        self._presence: PresenceRegistration | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def mode_in_use(self) -> ScanMode | None:
        return self._mode

    @property
    def reports_every_advert(self) -> bool:
        """Whether silence means not heard: false for BlueZ's passive scanning."""
        return not (self._bluez and self._mode is ScanMode.PASSIVE)

    async def __aenter__(self) -> BleakAdvertScanner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._bluez:
            await self._watch_removals()
        try:
            await self._start_bleak()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            with contextlib.suppress(Exception):
                await scanner.stop()
        presence, self._presence = self._presence, None
        if presence is not None:
            with contextlib.suppress(Exception):
                await presence.close()
        for task in list(self._tasks):
            task.cancel()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.disconnect()

    # ---- bleak -------------------------------------------------------------------

    async def _start_bleak(self) -> None:
        wanted = self._options.mode
        if wanted is ScanMode.PASSIVE and self._bluez:
            pattern = OrPattern(
                0,
                AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA,
                self._options.company_id.to_bytes(2, "little"),
            )
            args: BlueZScannerArgs = {"or_patterns": [pattern]}
            if self._options.adapter:
                args["adapter"] = self._options.adapter
            try:
                await self._run(BleakScanner(self._detected, scanning_mode="passive", bluez=args))
            except BleakError as exc:  # only "no monitor support" gets here; _run maps the rest
                raise ScannerUnavailable(
                    "no-passive-scanning",
                    f"{exc} (bluetoothd offers passive scanning only when started with -E; "
                    "scan actively instead: --mode auto)",
                ) from None
            self._mode = ScanMode.PASSIVE
            await self._watch_presence()
            return
        # A filter makes bluetoothd signal every report's RSSI; DuplicateData its data too.
        active: BlueZScannerArgs = {"filters": {"Transport": "le", "DuplicateData": True}}
        if self._options.min_rssi is not None:
            active["filters"]["RSSI"] = self._options.min_rssi
        if self._options.adapter:
            active["adapter"] = self._options.adapter
        await self._run(BleakScanner(self._detected, scanning_mode="active", bluez=active))
        self._mode = ScanMode.ACTIVE

    async def _run(self, scanner: BleakScanner) -> None:
        try:
            await scanner.start()
        except BleakBluetoothNotAvailableError as exc:
            raise ScannerUnavailable(
                exc.reason.name.lower().replace("_", "-") if exc.reason else "unavailable",
                f"Bluetooth is not available: {exc.args[0] if exc.args else exc}",
            ) from None
        except BleakDBusError as exc:
            if exc.dbus_error == "org.freedesktop.DBus.Error.ServiceUnknown":
                raise _no_bluez() from None
            if exc.dbus_error == "org.bluez.Error.NotReady":
                raise ScannerUnavailable(
                    "powered-off", "Bluetooth adapter is not ready (powered off?)"
                ) from None
            raise ScannerError(f"BlueZ refused to scan: {exc}") from None
        except (OSError, ValueError) as exc:
            raise ScannerUnavailable(
                "no-system-bus", f"cannot reach the D-Bus system bus ({exc}); is dbus running?"
            ) from None
        self._scanner = scanner

    def _detected(self, device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.manufacturer_data
        if self._options.company_id not in data:
            return
        details: Any = device.details
        props = details.get("props") if isinstance(details, dict) else None
        if isinstance(props, dict) and "RSSI" not in props:
            # bleak calls back on any Device1 change, also when BlueZ invalidates the RSSI
            # (discovery_cleanup) or a client sets Trusted: not a report, nothing heard.
            return
        if self._bluez and isinstance(details, dict) and isinstance(details.get("path"), str):
            self._paths[details["path"]] = device.address
        self._on_event(
            RawAdvert(
                address=device.address,
                manufacturer_data=dict(data),
                rssi=adv.rssi,
                tx_power=adv.tx_power,
                local_name=adv.local_name,
                monotonic=self._clock.monotonic(),
                wall=self._clock.wall(),
            )
        )

    # ---- BlueZ's found/lost verdicts (passive scanning) --------------------------------

    async def _watch_presence(self) -> None:
        assert self._watcher is not None
        adapter = await self._monitor_adapter(self._watcher)
        monitor = PresenceMonitor(
            self._options.company_id,
            lost_after_s=round(self._options.lost_after_s),
            min_rssi=self._options.min_rssi,
            on_found=self._found,
            on_lost=self._lost,
        )
        registration = PresenceRegistration(self._watcher, adapter, monitor)
        error = await registration.register()
        if error is not None:
            raise ScannerError(f"BlueZ refused our advertisement monitor: {error}")
        self._presence = registration

    async def _monitor_adapter(self, bus: MessageBus) -> str:
        """The adapter bleak scans on: the one asked for, else the first with monitors."""
        if self._options.adapter:
            return f"/org/bluez/{self._options.adapter}"
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
        if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
            for path in sorted(reply.body[0]):
                if MONITOR_MANAGER in reply.body[0][path]:
                    return str(path)
        raise ScannerUnavailable("no-passive-scanning", "BlueZ lists no advertisement monitor")

    def _found(self, path: str) -> None:
        """DeviceFound: report the device as BlueZ knows it now (it may not signal again)."""
        task = asyncio.get_running_loop().create_task(self._report_current(path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_current(self, path: str) -> None:
        watcher = self._watcher
        if watcher is None:
            return
        reply = await watcher.call(
            Message(
                destination="org.bluez",
                path=path,
                interface="org.freedesktop.DBus.Properties",
                member="GetAll",
                signature="s",
                body=[DEVICE],
            )
        )
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            return
        props = {k: v.value for k, v in reply.body[0].items()}
        data = {int(k): bytes(v.value) for k, v in props.get("ManufacturerData", {}).items()}
        if self._options.company_id not in data or "RSSI" not in props:
            return
        self._paths[path] = str(props["Address"])
        self._on_event(
            RawAdvert(
                address=str(props["Address"]),
                manufacturer_data=data,
                rssi=int(props["RSSI"]),
                tx_power=props.get("TxPower"),
                local_name=props.get("Name"),
                monotonic=self._clock.monotonic(),
                wall=self._clock.wall(),
            )
        )

    def _lost(self, path: str) -> None:
        """DeviceLost: not heard above the threshold for ``lost_after_s``."""
        address = self._paths.pop(path, None)
        if address is not None:
            self._on_event(AdvertLost(address, self._clock.monotonic(), self._clock.wall()))

    # ---- BlueZ device removals -----------------------------------------------------

    async def _watch_removals(self) -> None:
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except Exception as exc:  # any failure to reach the bus has the same remedy
            raise ScannerUnavailable(
                "no-system-bus",
                f"cannot reach the D-Bus system bus ({exc or type(exc).__name__}); "
                "is dbus running? (or point DBUS_SYSTEM_BUS_ADDRESS at a simulated host)",
            ) from None
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="NameHasOwner",
                signature="s",
                body=["org.bluez"],
            )
        )
        if reply is None or reply.message_type != MessageType.METHOD_RETURN or not reply.body[0]:
            bus.disconnect()
            raise _no_bluez()
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[
                    "type='signal',interface='org.freedesktop.DBus.ObjectManager',"
                    "member='InterfacesRemoved',arg0path='/org/bluez/'"
                ],
            )
        )
        bus.add_message_handler(self._on_removed)
        self._watcher = bus

    def _on_removed(self, msg: Message) -> bool:
        if msg.message_type != MessageType.SIGNAL or msg.member != "InterfacesRemoved":
            return False
        path, interfaces = msg.body
        if DEVICE in interfaces:
            address = self._paths.pop(path, None)
            if address is not None:
                self._on_event(AdvertLost(address, self._clock.monotonic(), self._clock.wall()))
        return False


def _no_bluez() -> ScannerUnavailable:
    return ScannerUnavailable(
        "no-bluez",
        "BlueZ is not running: nothing owns org.bluez on the system bus "
        "(start bluetoothd, e.g. systemctl start bluetooth)",
    )
