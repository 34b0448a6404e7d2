"""The btogether advert frame: what a beacon puts in manufacturer-specific data.

Layout of the manufacturer data value (after the 2-byte company ID, which BlueZ and
bleak carry as the dictionary key):

    offset size  field
    0      1     version (currently 1)
    1      1     flags: low nibble = rotation exponent K, high nibble reserved (sent 0, ignored)
    2      1     calibrated power at 1 m, signed dBm
    3      8     EID

11 bytes, so the whole advert (flags AD 3 + manufacturer AD 2+2+11) leaves room for
a short local name inside the 31-byte legacy limit.

Over-the-air bytes are untrusted: :func:`decode_frame` never raises, it returns
``None`` (and logs at debug) for anything that is not exactly a frame we understand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from relay.protocol.eid import EID_LEN, MAX_ROTATION_EXPONENT

TEST_COMPANY_ID = 0xFFFF  # reserved by the Bluetooth SIG for testing
DEFAULT_COMPANY_ID = TEST_COMPANY_ID
FRAME_VERSION = 1
FRAME_LEN = 3 + EID_LEN
MIN_TX_POWER = -127
MAX_TX_POWER = 20

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded advert: who (EID), how loud at 1 m, and how often it rotates."""

    eid: bytes
    tx_power: int
    rotation_exponent: int
    version: int = FRAME_VERSION

    def __post_init__(self) -> None:
        if len(self.eid) != EID_LEN:
            raise ValueError(f"EID must be {EID_LEN} bytes")
        if not MIN_TX_POWER <= self.tx_power <= MAX_TX_POWER:
            raise ValueError(f"tx power must be between {MIN_TX_POWER} and {MAX_TX_POWER} dBm")
        if not 0 <= self.rotation_exponent <= MAX_ROTATION_EXPONENT:
            raise ValueError("rotation exponent must be between 0 and 15")


def encode_frame(frame: Frame) -> bytes:
    """The manufacturer data value for ``frame``."""
    return (
        bytes([frame.version, frame.rotation_exponent & 0x0F])
        + frame.tx_power.to_bytes(1, "big", signed=True)
        + frame.eid
    )


def decode_frame(data: Any) -> Frame | None:
    """Decode a manufacturer data value; ``None`` for anything malformed. Never raises."""
    if not isinstance(data, bytes | bytearray | memoryview):
        _log.debug("frame_rejected", reason="not bytes", type=type(data).__name__)
        return None
    raw = bytes(data)
    if len(raw) != FRAME_LEN:
        _log.debug("frame_rejected", reason="length", length=len(raw))
        return None
    version = raw[0]
    if version != FRAME_VERSION:
        _log.debug("frame_rejected", reason="version", version=version)
        return None
    tx_power = int.from_bytes(raw[2:3], "big", signed=True)
    if not MIN_TX_POWER <= tx_power <= MAX_TX_POWER:
        _log.debug("frame_rejected", reason="tx_power", tx_power=tx_power)
        return None
    return Frame(eid=raw[3:], tx_power=tx_power, rotation_exponent=raw[1] & 0x0F, version=version)


def decode_manufacturer_data(
    manufacturer_data: Mapping[Any, Any], company_id: int = DEFAULT_COMPANY_ID
) -> Frame | None:
    """Find and decode our frame in a company-ID → bytes mapping. Never raises."""
    try:
        value = manufacturer_data.get(company_id)
    except Exception:  # a hostile mapping-like object must not take the scanner down
        _log.debug("frame_rejected", reason="bad manufacturer data mapping")
        return None
    if value is None:
        return None
    return decode_frame(value)


def company_id_arg(text: str) -> int:
    """A Bluetooth SIG company ID as typed on a command line (``0xFFFF`` or ``65535``)."""
    import argparse

    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"company ID {text!r} is not a number") from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError("company ID must be between 0 and 0xFFFF")
    return value
