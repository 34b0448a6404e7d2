"""Scanning with bleak, plus BlueZ's own view of when a device is gone.

bleak reports adverts but never that a device went away; on Linux BlueZ removes a
device object when it has not been heard for a while (``InterfacesRemoved``), so the
``bluez`` flavour listens for that on its own D-Bus connection and reports
:class:`~hw.scanner.AdvertLost`.  Passive scanning needs an advertisement monitor with
an or-pattern (our company ID, as the manufacturer data AD starts with it); when BlueZ
has none (no ``--experimental``), ``auto`` falls back to active scanning.
"""

from __future__ import annotations

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

    @property
    def mode_in_use(self) -> ScanMode | None:
        return self._mode

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
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.disconnect()

    # ---- bleak -------------------------------------------------------------------

    async def _start_bleak(self) -> None:
        wanted = self._options.mode
        # bleak's monitor has no RSSI threshold, so an RSSI filter means active scanning.
        try_passive = self._bluez and (
            wanted is ScanMode.PASSIVE
            or (wanted is ScanMode.AUTO and self._options.min_rssi is None)
        )
        if try_passive:
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
                self._mode = ScanMode.PASSIVE
                return
            except BleakError as exc:  # only "no monitor support" gets here; _run maps the rest
                if wanted is ScanMode.PASSIVE:
                    raise ScannerUnavailable("no-passive-scanning", str(exc)) from None
                _log.info("passive_scan_unavailable", reason=str(exc))
        active: BlueZScannerArgs = {"filters": {"Transport": "le", "DuplicateData": False}}
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
