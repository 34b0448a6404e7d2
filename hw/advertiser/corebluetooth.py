"""macOS advertising: not supported yet — the seam a CoreBluetooth backend fills.

How to fill it: a ``CBPeripheralManager`` (via pyobjc-framework-CoreBluetooth) whose
``startAdvertising_`` gets the payload.  Note that macOS does not let applications
set manufacturer data in adverts (only a local name and service UUIDs), so the frame
would travel as service data of a 16-bit UUID instead; the scanner side (bleak)
already works on macOS.
"""

from __future__ import annotations

from hw.advertiser.unsupported import UnsupportedAdvertiser

_MESSAGE = (
    "advertising on macOS (CoreBluetooth) is not supported yet; "
    "run the beacon on Linux with BlueZ, or against the simulated air"
)


class CoreBluetoothAdvertiser(UnsupportedAdvertiser):
    """Raises a clear 'not supported yet' on use."""

    def __init__(self) -> None:
        super().__init__(_MESSAGE)
