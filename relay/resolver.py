"""EID resolution: which device beaconed this 8-byte EID, in O(1) per sighting.

The index holds every device's EIDs for the current rotation window and its
neighbours (clock skew, late reports), keyed by EID. It is rebuilt when the
earliest of those windows ends or when the directory changes. Pure: the time is an
argument, and the caller decides when to rebuild.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from relay.model import Device
from relay.protocol.eid import eids_around, seconds_until_rotation


@dataclass(frozen=True, slots=True)
class EidIndex:
    by_eid: dict[bytes, str]  # EID -> device id
    valid_until: float  # rebuild at or after this time
    built_for_version: int

    def resolve(self, eid: bytes) -> str | None:
        return self.by_eid.get(eid)

    def stale(self, now: float, directory_version: int) -> bool:
        return now >= self.valid_until or directory_version != self.built_for_version


def build_index(
    devices: Iterable[Device], now: float, directory_version: int, neighbours: int = 1
) -> EidIndex:
    """Precompute the accepted EIDs of ``devices`` at ``now``."""
    by_eid: dict[bytes, str] = {}
    valid_until = math.inf
    for device in devices:
        for window in eids_around(device.identity_key, now, device.rotation_exponent, neighbours):
            # Two devices sharing an EID is a 2**-64 accident; the first keeps it.
            by_eid.setdefault(window.eid, device.id)
        valid_until = min(valid_until, now + seconds_until_rotation(now, device.rotation_exponent))
    if math.isinf(valid_until):
        valid_until = now + 60.0
    return EidIndex(by_eid, valid_until, directory_version)
