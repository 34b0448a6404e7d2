"""macOS advertising: not supported yet — the seam a CoreBluetooth backend fills.

How to fill it: a ``CBPeripheralManager`` (via pyobjc-framework-CoreBluetooth) whose
``startAdvertising_`` gets the payload.  Note that macOS does not let applications
set manufacturer data in adverts (only a local name and service UUIDs), so the frame
would travel as service data of a 16-bit UUID instead; the scanner side (bleak)
already works on macOS.
"""

from __future__ import annotations

from hw.advertiser import AdvertiserUnavailable, AdvertPayload, UnavailableReason

_MESSAGE = (
    "advertising on macOS (CoreBluetooth) is not supported yet; "
    "run the beacon on Linux with BlueZ, or against the simulated air"
)


class CoreBluetoothAdvertiser:
    """Raises a clear 'not supported yet' on use."""

    async def start(self, payload: AdvertPayload) -> None:
        raise AdvertiserUnavailable(UnavailableReason.NOT_SUPPORTED, _MESSAGE)

    async def replace(self, payload: AdvertPayload) -> None:
        raise AdvertiserUnavailable(UnavailableReason.NOT_SUPPORTED, _MESSAGE)

    async def stop(self) -> None:
        return None
