"""BLE advertising behind one small interface, one backend per platform.

``create_advertiser()`` picks the backend as every piece of ``hw`` does
(:mod:`hw.backends`, the bleak way): by platform (Linux → BlueZ over D-Bus, macOS →
CoreBluetooth, Windows → WinRT), unless ``backend=`` or the
``BTOGETHER_ADVERTISER_BACKEND`` environment variable says otherwise. Only BlueZ is
implemented; the others are documented seams that raise :class:`AdvertiserUnavailable`
with reason ``NOT_SUPPORTED``.

The payload is raw bytes per company ID: this package knows nothing of our frame.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hw.backends import NoBackendForPlatform, UnknownBackend, choose_backend

BACKEND_ENV = "BTOGETHER_ADVERTISER_BACKEND"


class Backend(enum.StrEnum):
    BLUEZ = "bluez"
    CORE_BLUETOOTH = "corebluetooth"
    WINRT = "winrt"


class UnavailableReason(enum.StrEnum):
    NO_SYSTEM_BUS = "no-system-bus"
    NO_BLUEZ = "no-bluez"
    NO_ADAPTER = "no-adapter"
    POWERED_OFF = "powered-off"
    NOT_SUPPORTED = "not-supported"


class AdvertiserError(RuntimeError):
    """Advertising failed; the message says why in words a user can act on."""


class AdvertiserUnavailable(AdvertiserError):
    """There is nothing to advertise with here (no stack, no adapter, adapter off…)."""

    def __init__(self, reason: UnavailableReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AdvertPayload:
    """What to put on the air: manufacturer data per company ID, and an optional name.

    ``discoverable`` adds the LE General Discoverable flag, without which scanners that
    set no filter (``bluetoothctl scan on``, a phone's Bluetooth settings) never list
    the advert: bluetoothd reports only discoverable adverts to them.
    """

    manufacturer_data: Mapping[int, bytes]
    local_name: str | None = None
    connectable: bool = False
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    discoverable: bool = False


class Advertiser(Protocol):
    """Start, replace and stop one advertisement."""

    async def start(self, payload: AdvertPayload) -> None: ...

    async def replace(self, payload: AdvertPayload) -> None: ...

    async def stop(self) -> None: ...


FOR_SYSTEM = {"Linux": Backend.BLUEZ, "Darwin": Backend.CORE_BLUETOOTH, "Windows": Backend.WINRT}


def default_backend(chosen: Backend | str | None = None) -> Backend:
    """The backend for this platform, or the one ``BTOGETHER_ADVERTISER_BACKEND`` names."""
    try:
        return choose_backend(
            Backend, FOR_SYSTEM, what="advertising", env_var=BACKEND_ENV, chosen=chosen
        )
    except (UnknownBackend, NoBackendForPlatform) as exc:
        raise AdvertiserUnavailable(UnavailableReason.NOT_SUPPORTED, str(exc)) from None


def create_advertiser(
    backend: Backend | str | None = None,
    *,
    bus_address: str | None = None,
    adapter: str | None = None,
) -> Advertiser:
    """An advertiser for ``backend`` (default: this platform's).

    ``bus_address`` and ``adapter`` (e.g. ``"hci0"``) only mean something to BlueZ;
    without them it uses the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` if set) and the
    first powered adapter.
    """
    chosen = default_backend(backend)
    if chosen is Backend.BLUEZ:
        from hw.advertiser.bluez import BlueZAdvertiser

        return BlueZAdvertiser(bus_address=bus_address, adapter=adapter)
    if chosen is Backend.CORE_BLUETOOTH:
        from hw.advertiser.corebluetooth import CoreBluetoothAdvertiser

        return CoreBluetoothAdvertiser()
    from hw.advertiser.winrt import WinRTAdvertiser

    return WinRTAdvertiser()
