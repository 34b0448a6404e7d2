"""EID resolution: which device beaconed this 8-byte EID, in O(1) per sighting.

The index holds every device's EIDs for the current rotation window and its
neighbours (clock skew, late reports), keyed by EID. It is rebuilt when the
earliest of those windows ends or when the directory changes; a rebuild reuses the
EIDs of every device whose key, rotation exponent and current window are unchanged,
so an administrator's edit costs AES work only for the devices it touched. Pure: the
time is an argument, and the caller decides when to rebuild.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from relay.model import Device
from relay.protocol.eid import eids_around, seconds_until_rotation, time_counter, window_start


@dataclass(frozen=True, slots=True)
class _DeviceEids:
    identity_key: bytes
    rotation_exponent: int
    window: int  # the current window's start when computed
    eids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class EidIndex:
    by_eid: dict[bytes, str]  # EID -> device id
    valid_until: float  # rebuild at or after this time
    built_for_version: int
    per_device: dict[str, _DeviceEids] = field(default_factory=dict)

    def resolve(self, eid: bytes) -> str | None:
        return self.by_eid.get(eid)

    def stale(self, now: float, directory_version: int) -> bool:
        return now >= self.valid_until or directory_version != self.built_for_version


def build_index(
    devices: Iterable[Device],
    now: float,
    directory_version: int,
    neighbours: int = 1,
    previous: EidIndex | None = None,
) -> EidIndex:
    """Precompute the accepted EIDs of ``devices`` at ``now`` (reusing ``previous``'s)."""
    by_eid: dict[bytes, str] = {}
    per_device: dict[str, _DeviceEids] = {}
    old = previous.per_device if previous is not None else {}
    valid_until = math.inf
    counter = time_counter(now)
    for device in devices:
        k = device.rotation_exponent
        window = window_start(counter, k)
        cached = old.get(device.id)
        if (
            cached is None
            or cached.window != window
            or cached.identity_key != device.identity_key
            or cached.rotation_exponent != k
        ):
            eids = tuple(w.eid for w in eids_around(device.identity_key, now, k, neighbours))
            cached = _DeviceEids(device.identity_key, k, window, eids)
        per_device[device.id] = cached
        for eid in cached.eids:
            # Two devices sharing an EID is a 2**-64 accident; the first keeps it.
            by_eid.setdefault(eid, device.id)
        valid_until = min(valid_until, now + seconds_until_rotation(now, k))
    if math.isinf(valid_until):
        valid_until = now + 60.0
    return EidIndex(by_eid, valid_until, directory_version, per_device)
