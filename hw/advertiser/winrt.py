"""Windows advertising: not supported yet — the seam a WinRT backend fills.

How to fill it: ``Windows.Devices.Bluetooth.Advertisement.BluetoothLEAdvertisementPublisher``
(via the ``winrt-Windows.Devices.Bluetooth.Advertisement`` package), adding one
``BluetoothLEManufacturerData`` per company ID; replacing the payload means stopping
the publisher and starting a new one, as with BlueZ.
"""

from __future__ import annotations

from hw.advertiser.unsupported import UnsupportedAdvertiser

_MESSAGE = (
    "advertising on Windows (WinRT) is not supported yet; "
    "run the beacon on Linux with BlueZ, or against the simulated air"
)


class WinRTAdvertiser(UnsupportedAdvertiser):
    """Raises a clear 'not supported yet' on use."""

    def __init__(self) -> None:
        super().__init__(_MESSAGE)
