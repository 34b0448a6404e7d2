"""Ephemeral identifiers (EIDs): the rotating 8-byte name a device beacons.

The scheme is Eddystone-EID's, unchanged, so that anyone can check it against the
published computation:

1. temporary key = AES-128(identity key, 11×00 ‖ FF ‖ 00 00 ‖ counter[31:16])
2. EID = first 8 bytes of AES-128(temporary key, 11×00 ‖ K ‖ counter with its low K bits cleared)

``counter`` is a 32-bit count of seconds.  We use Unix time modulo 2**32 so that the
relay and every beacon agree without exchanging a per-beacon epoch (the relay issues
keys and keeps clocks; NTP-level skew is absorbed by also accepting the neighbouring
windows).  ``K`` (the rotation exponent, 0..15) makes the EID change every 2**K seconds.
Every device with the same ``K`` therefore rotates at the same instant; the relay does
not recompute them all at that instant but ahead of time (see :mod:`relay.domain.resolver`).

Default K = 10 (1024 s, about 17 minutes): long enough that the relay recomputes a
device's EIDs only every quarter hour and that a laptop's sighting is not invalidated
mid-meeting-join, short enough that an advert captured in a corridor is worthless by
the next meeting slot and that a device cannot be followed around for longer than a
BLE random address would let it be (Apple and Android rotate their addresses on a
similar ~15 minute cadence).

Everything here is pure: time comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

IDENTITY_KEY_LEN = 16
EID_LEN = 8
MIN_ROTATION_EXPONENT = 0
MAX_ROTATION_EXPONENT = 15
DEFAULT_ROTATION_EXPONENT = 10
_COUNTER_MASK = 0xFFFFFFFF


def _aes128_ecb(key: bytes, blocks: bytes) -> bytes:
    """AES-128 of independent 16-byte blocks (the spec encrypts single blocks; ECB over
    several is the same computation done once per block with one key set-up)."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - see above
    return encryptor.update(blocks) + encryptor.finalize()


def check_rotation_exponent(k: int) -> int:
    """Return ``k`` if it is a valid rotation exponent, else raise ValueError."""
    if not MIN_ROTATION_EXPONENT <= k <= MAX_ROTATION_EXPONENT:
        raise ValueError(
            f"rotation exponent must be between {MIN_ROTATION_EXPONENT} and "
            f"{MAX_ROTATION_EXPONENT}, got {k}"
        )
    return k


def parse_identity_key(text: str) -> bytes:
    """Parse a 32-hex-digit identity key, with a message that says what is wrong."""
    cleaned = text.strip().replace(":", "").replace("-", "")
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError("identity key must be 32 hexadecimal digits") from None
    if len(key) != IDENTITY_KEY_LEN:
        raise ValueError(
            f"identity key must be 32 hexadecimal digits (16 bytes), got {len(key)} bytes"
        )
    return key


def time_counter(unix_time: float) -> int:
    """The 32-bit seconds counter for a wall-clock time."""
    return int(unix_time) & _COUNTER_MASK


def window_start(counter: int, k: int) -> int:
    """The counter value at which the window holding ``counter`` begins."""
    return (counter & _COUNTER_MASK) & ~((1 << k) - 1) & _COUNTER_MASK


def _temporary_key_input(counter: int) -> bytes:
    return bytes(11) + b"\xff" + b"\x00\x00" + ((counter >> 16) & 0xFFFF).to_bytes(2, "big")


def _eid_input(window: int, k: int) -> bytes:
    return bytes(11) + bytes([k]) + window.to_bytes(4, "big")


def compute_eid(identity_key: bytes, counter: int, k: int) -> bytes:
    """The EID a device with ``identity_key`` beacons at ``counter`` with rotation ``k``."""
    if len(identity_key) != IDENTITY_KEY_LEN:
        raise ValueError("identity key must be 16 bytes")
    check_rotation_exponent(k)
    counter &= _COUNTER_MASK
    temporary_key = _aes128_ecb(identity_key, _temporary_key_input(counter))
    return _aes128_ecb(temporary_key, _eid_input(window_start(counter, k), k))[:EID_LEN]


def eids_for_windows(identity_key: bytes, k: int, windows: Sequence[int]) -> list[bytes]:
    """One device's EIDs for several window starts, as :func:`compute_eid` gives them.

    The cost of AES here is setting up a key, not encrypting a block, so this sets up
    the identity key once per 2**16-second epoch (the temporary key changes only
    then) and the temporary key once for all of that epoch's windows.
    """
    if len(identity_key) != IDENTITY_KEY_LEN:
        raise ValueError("identity key must be 16 bytes")
    check_rotation_exponent(k)
    out: list[bytes] = [b""] * len(windows)
    by_epoch: dict[int, list[int]] = {}
    for position, window in enumerate(windows):
        by_epoch.setdefault((window & _COUNTER_MASK) >> 16, []).append(position)
    for epoch, positions in by_epoch.items():
        temporary_key = _aes128_ecb(identity_key, _temporary_key_input(epoch << 16))
        blocks = b"".join(
            _eid_input(window_start(windows[p] & _COUNTER_MASK, k), k) for p in positions
        )
        encrypted = _aes128_ecb(temporary_key, blocks)
        for n, position in enumerate(positions):
            out[position] = encrypted[16 * n : 16 * n + EID_LEN]
    return out


def eids_of_keys(identity_keys: bytes, k: int, windows: Sequence[int]) -> list[bytes]:
    """The EIDs of many devices sharing ``k``, for each window start in ``windows``.

    ``identity_keys`` holds the 16-byte keys end to end; the answer holds, per window,
    the 8-byte EIDs end to end in the same order. Flat bytes in and out, so that a
    batch crosses to a worker process cheaply (this is what the relay's worker runs).
    """
    if len(identity_keys) % IDENTITY_KEY_LEN:
        raise ValueError("identity keys must be 16 bytes each")
    out = [bytearray() for _ in windows]
    for start in range(0, len(identity_keys), IDENTITY_KEY_LEN):
        key = identity_keys[start : start + IDENTITY_KEY_LEN]
        for blob, eid in zip(out, eids_for_windows(key, k, windows), strict=True):
            blob += eid
    return [bytes(blob) for blob in out]


def eid_at(identity_key: bytes, unix_time: float, k: int) -> bytes:
    """The EID current at a wall-clock time."""
    return compute_eid(identity_key, time_counter(unix_time), k)


def seconds_until_rotation(unix_time: float, k: int) -> float:
    """How long the EID current at ``unix_time`` stays current."""
    period = 1 << k
    return period - (unix_time % period)


@dataclass(frozen=True, slots=True)
class WindowEid:
    """One EID and the window of counter values for which it is the valid one."""

    eid: bytes
    window_start: int
    window_end: int  # exclusive


def eids_around(
    identity_key: bytes, unix_time: float, k: int, neighbours: int = 1
) -> list[WindowEid]:
    """The EIDs a resolver should accept at ``unix_time``.

    The current window plus ``neighbours`` windows on each side, so a beacon whose
    clock is up to ``neighbours × 2**K`` seconds off, or a sighting reported just
    after a rotation, still resolves.
    """
    period = 1 << k
    current = window_start(time_counter(unix_time), k)
    offsets = range(-neighbours, neighbours + 1)
    starts = [(current + offset * period) & _COUNTER_MASK for offset in offsets]
    eids = eids_for_windows(identity_key, k, starts)
    return [WindowEid(e, start, start + period) for e, start in zip(eids, starts, strict=True)]
