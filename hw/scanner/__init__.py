"""BLE scanning for adverts of one company ID, behind one small interface.

``create_scanner()`` picks the backend as every piece of ``hw`` does (:mod:`hw.backends`,
the bleak way): by platform, unless ``backend=`` or ``BTOGETHER_SCANNER_BACKEND`` says
otherwise: ``bluez`` (Linux: bleak
plus BlueZ's device-removed signals; active scanning that asks BlueZ for every advert,
or passive scanning with an advertisement monitor when asked for and BlueZ offers one)
or ``bleak`` (macOS, Windows: plain bleak, active scanning).
Events are raw: manufacturer data bytes, RSSI, time — decoding is the caller's job.
Whether a device that is still there keeps producing events is the scanner's
``reports_every_advert``: when false (BlueZ's passive scanning reports a still device
once), only :class:`AdvertLost` says it is gone.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from hw.backends import NoBackendForPlatform, UnknownBackend, choose_backend

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
    """``auto`` is active scanning: the only mode that hears every advert on BlueZ."""

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
    """What to listen for and how.

    ``lost_after_s`` only matters to passive scanning on BlueZ, where BlueZ itself says
    when a device is gone: not heard (above ``min_rssi``) for that many whole seconds
    (1–300, the advertisement monitor's RSSILowTimeout).
    """

    company_id: int
    min_rssi: int | None = None
    mode: ScanMode = ScanMode.AUTO
    adapter: str | None = None
    lost_after_s: float = 10.0


class AdvertScanner(Protocol):
    """Start and stop a scan; events go to the callback given at creation."""

    @property
    def mode_in_use(self) -> ScanMode | None: ...

    @property
    def reports_every_advert(self) -> bool:
        """True: a device still in range keeps producing events (silence means gone)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ScannerBackend(enum.StrEnum):
    BLUEZ = "bluez"
    BLEAK = "bleak"


FOR_SYSTEM = {
    "Linux": ScannerBackend.BLUEZ,
    "Darwin": ScannerBackend.BLEAK,
    "Windows": ScannerBackend.BLEAK,
}


def default_backend(chosen: ScannerBackend | str | None = None) -> ScannerBackend:
    """The backend for this platform, or the one ``BTOGETHER_SCANNER_BACKEND`` names."""
    try:
        return choose_backend(
            ScannerBackend, FOR_SYSTEM, what="scanning", env_var=BACKEND_ENV, chosen=chosen
        )
    except (UnknownBackend, NoBackendForPlatform) as exc:
        raise ScannerUnavailable("not-supported", str(exc)) from None


def create_scanner(
    on_event: Callable[[ScanEvent], None],
    options: ScanOptions,
    clock: Clock | None = None,
    backend: ScannerBackend | str | None = None,
) -> AdvertScanner:
    """A scanner that calls ``on_event`` for each advert carrying ``options.company_id``."""
    from hw.scanner.bleak_backend import BleakAdvertScanner

    chosen = default_backend(backend)
    return BleakAdvertScanner(
        on_event,
        options,
        clock or SystemClock(),
        watch_bluez_removals=chosen is ScannerBackend.BLUEZ,
    )
