"""BLE scanning for adverts of one company ID, behind one small interface.

``create_scanner()`` picks the backend by platform the way bleak does, unless
``backend=`` or ``BTOGETHER_SCANNER_BACKEND`` says otherwise: ``bluez`` (Linux: bleak
plus BlueZ's device-removed signals, passive scanning with an advertisement monitor
where BlueZ offers one) or ``bleak`` (macOS, Windows: plain bleak, active scanning).
Events are raw: manufacturer data bytes, RSSI, time — decoding is the caller's job.
"""

from __future__ import annotations

import enum
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

BACKEND_ENV = "BTOGETHER_SCANNER_BACKEND"


@dataclass(frozen=True, slots=True)
class RawAdvert:
    """One advert heard: who, what (manufacturer data per company ID), how loud, when."""

    address: str
    manufacturer_data: Mapping[int, bytes]
    rssi: int
    tx_power: int | None
    local_name: str | None
    monotonic: float
    wall: float


@dataclass(frozen=True, slots=True)
class AdvertLost:
    """The OS stack forgot a device it had reported (it stopped being heard)."""

    address: str
    monotonic: float
    wall: float


ScanEvent = RawAdvert | AdvertLost


class Clock(Protocol):
    """Where scan events get their timestamps from."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ScanMode(enum.StrEnum):
    AUTO = "auto"
    ACTIVE = "active"
    PASSIVE = "passive"


class ScannerError(RuntimeError):
    """Scanning failed; the message says why in words a user can act on."""


class ScannerUnavailable(ScannerError):
    """Nothing to scan with (no system bus, no BlueZ, no adapter, adapter off…)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What to listen for and how."""

    company_id: int
    min_rssi: int | None = None
    mode: ScanMode = ScanMode.AUTO
    adapter: str | None = None


class AdvertScanner(Protocol):
    """Start and stop a scan; events go to the callback given at creation."""

    @property
    def mode_in_use(self) -> ScanMode | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def default_backend() -> str:
    forced = os.environ.get(BACKEND_ENV)
    if forced:
        if forced not in ("bluez", "bleak"):
            raise ScannerUnavailable(
                "not-supported", f"{BACKEND_ENV}={forced!r} is not a backend (bluez, bleak)"
            )
        return forced
    return "bluez" if platform.system() == "Linux" else "bleak"


def create_scanner(
    on_event: Callable[[ScanEvent], None],
    options: ScanOptions,
    clock: Clock | None = None,
    backend: str | None = None,
) -> AdvertScanner:
    """A scanner that calls ``on_event`` for each advert carrying ``options.company_id``."""
    from hw.scanner.bleak_backend import BleakAdvertScanner

    chosen = backend or default_backend()
    return BleakAdvertScanner(
        on_event, options, clock or SystemClock(), watch_bluez_removals=chosen == "bluez"
    )
